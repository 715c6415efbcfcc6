package conf

import (
	"fmt"
	"strconv"
	"strings"
)

// Error is a configuration error positioned in the config file. Every error
// of Parse and Load other than a failure to read the file is an *Error, and
// so is every error of Errorf.
type Error struct {
	File string // name the config was parsed from; "(default)" for the embedded default
	Line int    // 1-based line of Key in File; 0 when the key is not written there
	Col  int    // 1-based column; set for TOML syntax errors only
	Key  string // dotted key such as "relay.min_port" or "listen[1].addr"; "" for syntax errors
	Err  error  // what is wrong
}

// Error formats e as "FILE:LINE: KEY: message", leaving out what is unknown:
// "FILE: KEY: message" for a key not written in the file (a default value),
// "FILE:LINE:COL: toml: message" for a syntax error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Col > 0 {
			b.WriteString(":" + strconv.Itoa(e.Col))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error, so that a %w given to Errorf stays
// visible to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error positioned at key: "FILE:LINE: KEY: message", or
// "FILE: KEY: message" when the key is not written in the file (e.g. it kept
// its default value). Keys are dotted paths such as "relay.min_port",
// "auth.secrets", and "listen[1].addr" for the second [[listen]] table;
// format and args are as for fmt.Errorf, %w included.
//
// A key inside an array element that is not written itself takes the line
// of the nearest enclosing element or array that is: "listen[1].cert" on a
// tls listener without cert points at that listener's [[listen]] line, and
// "relay.deny_peers[2]" at the deny_peers line.
//
// Errorf works on any Config, including one built by hand (its File and
// lines are then unknown and left out).
func (c *Config) Errorf(key string, format string, args ...any) error {
	return &Error{File: c.File(), Line: c.line(key), Key: key, Err: fmt.Errorf(format, args...)}
}

// line returns the line on which key is written, or 0. See Errorf for the
// fallback inside array elements.
func (c *Config) line(key string) int {
	if c == nil {
		return 0
	}
	for {
		if n, ok := c.lines[key]; ok {
			return n
		}
		// Only keys inside an array element fall back: elsewhere a missing
		// key is a default value, and its table's line would mislead.
		if !strings.Contains(key, "[") {
			return 0
		}
		key = key[:max(strings.LastIndexByte(key, '.'), strings.LastIndexByte(key, '['))]
	}
}
