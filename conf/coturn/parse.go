// Package coturn translates a coturn turnserver.conf into a Ferry config: the listeners,
// relay addresses and ports, realm, credentials (static users as HA1 keys, TURN REST
// secrets), quotas, peer rules, lifetimes and the Prometheus endpoint, and lists every
// option it could not translate with its line. `ferry config import` runs it.
package coturn

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Option is one option line of a turnserver.conf.
type Option struct {
	Line  int    // 1-based
	Name  string // the long option name, as written
	Value string // "" when the line has none
}

// maxLine is the longest line turnserver reads whole (its fgets buffer is 1024 bytes).
const maxLine = 1023

// Parse splits a turnserver.conf into options the way turnserver reads it: blanks before a
// line are skipped, a line starting with # is a comment, the name ends at the first space,
// tab or '=', any run of those separates it from the value, and a value in double quotes
// loses them (and blanks after the closing one). Nothing comes after a value: a # there is
// part of it, as in turnserver. Lines longer than turnserver reads are an error.
func Parse(data []byte) ([]Option, error) {
	var opts []Option
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r\n")
		if len(line) > maxLine {
			return nil, fmt.Errorf("line %d: %d characters: turnserver reads at most %d of a line", n, len(line), maxLine)
		}
		line = strings.TrimLeft(line, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		name, value := line, ""
		if i := strings.IndexAny(line, " \t="); i >= 0 {
			name, value = line[:i], strings.TrimLeft(line[i:], " \t=")
		}
		if strings.HasPrefix(value, `"`) {
			value = strings.TrimRight(value[1:], " \t")
			value = strings.TrimSuffix(value, `"`)
		}
		opts = append(opts, Option{Line: n, Name: name, Value: value})
	}
	return opts, sc.Err()
}

// boolValue reads a boolean option's value as turnserver does: none means true.
func boolValue(v string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "1", "yes", "y", "true", "t", "on":
		return true, true
	case "0", "no", "n", "false", "f", "off":
		return false, true
	}
	return false, false
}
