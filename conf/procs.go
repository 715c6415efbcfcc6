package conf

import (
	"fmt"
	"strconv"
)

// Procs is [server] procs: "auto" (ProcsAuto: Ferry runs with one P while lightly loaded and
// all of them once busy) or a whole number of Ps, 1 or more, set once at start.
type Procs int

// ProcsAuto is "auto".
const ProcsAuto Procs = 0

// UnmarshalTOML takes the string "auto" or an integer of 1 or more.
func (p *Procs) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		if v == "auto" {
			*p = ProcsAuto
			return nil
		}
		return fmt.Errorf("%q: want \"auto\" or a whole number of 1 or more, e.g. 2", v)
	case int64:
		if v < 1 || int64(int(v)) != v {
			return fmt.Errorf("%d: want \"auto\" or a whole number of 1 or more", v)
		}
		*p = Procs(v)
		return nil
	}
	return fmt.Errorf("expected \"auto\" or an integer, found %s", tomlType(v))
}

// MarshalTOML writes p as it is read: "auto", or the number.
func (p Procs) MarshalTOML() ([]byte, error) {
	if p == ProcsAuto {
		return []byte(`"auto"`), nil
	}
	return strconv.AppendInt(nil, int64(p), 10), nil
}
