package conf

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("24h",
// "90s") in TOML. A bare integer is rejected rather than read as
// nanoseconds, which is never what someone writing a TTL means.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a Go duration such as \"24h\", \"90m\" or \"30s\"", text)
	}
	d.Duration = v
	return nil
}

// MarshalText writes d as a Go duration string, e.g. "24h0m0s".
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}
