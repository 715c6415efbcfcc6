package conf

import (
	"strconv"
	"strings"
)

// indexLines maps the dotted keys written in a TOML document to the line
// (1-based) where each is written. The TOML decoder keeps key positions to
// itself, so this small scanner recovers them for error messages.
//
// Table headers are indexed too: "[relay]" as "relay", the n-th
// "[[listen]]" (from 0) as "listen[n]", and the keys under it as
// "listen[n].addr". A key written as a dotted key ("relay.min_port = 1")
// is indexed under its full path. Keys inside inline tables and values
// spanning several lines (arrays, multi-line strings) are not indexed:
// only the line where their value starts. The document is assumed to be
// valid TOML; on anything else the index is merely incomplete.
func indexLines(data []byte) map[string]int {
	idx := make(map[string]int)
	record := func(key string, line int) {
		if _, ok := idx[key]; !ok {
			idx[key] = line
		}
	}
	var (
		table  string         // current table path, "" at the top level
		counts map[string]int // [[array]] tables seen so far, by resolved path
		val    valueScanner   // a value that continues on the next lines
	)
	counts = make(map[string]int)
	for i, text := range strings.Split(string(data), "\n") {
		line := i + 1
		text = strings.TrimSuffix(text, "\r")
		if val.open() {
			val.scan(text)
			continue
		}
		t := strings.TrimLeft(text, " \t")
		switch {
		case t == "" || t[0] == '#':
		case strings.HasPrefix(t, "[["):
			parts, rest := parseKey(t[2:])
			if parts == nil || !strings.HasPrefix(rest, "]]") {
				continue
			}
			path := resolve(parts, counts)
			table = path + "[" + strconv.Itoa(counts[path]) + "]"
			counts[path]++
			record(table, line)
		case t[0] == '[':
			parts, rest := parseKey(t[1:])
			if parts == nil || !strings.HasPrefix(rest, "]") {
				continue
			}
			table = resolve(parts, counts)
			record(table, line)
		default:
			parts, rest := parseKey(t)
			if parts == nil || !strings.HasPrefix(rest, "=") {
				continue
			}
			key := strings.Join(parts, ".")
			if table != "" {
				key = table + "." + key
			}
			record(key, line)
			val.scan(rest[1:])
		}
	}
	return idx
}

// resolve joins the parts of a table header into a path, giving each prefix
// that names an array of tables the index of its latest element: after two
// [[a]] tables, [a.b] is "a[1].b".
func resolve(parts []string, counts map[string]int) string {
	var path string
	for i, p := range parts {
		if i > 0 {
			path += "."
		}
		path += p
		if n := counts[path]; n > 0 && i < len(parts)-1 {
			path += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return path
}

// parseKey reads a possibly dotted, possibly quoted TOML key at the start of
// s. It returns the key's parts and the rest of s after the key and the
// blanks following it, or nil parts if s does not start with a key.
func parseKey(s string) (parts []string, rest string) {
	for {
		s = strings.TrimLeft(s, " \t")
		var part string
		switch {
		case s == "":
			return nil, ""
		case s[0] == '"':
			end := closingQuote(s, '"', true)
			if end < 0 {
				return nil, ""
			}
			unq, err := strconv.Unquote(s[:end+1])
			if err != nil {
				unq = s[1:end] // TOML escapes Go lacks; near enough for an index
			}
			part, s = unq, s[end+1:]
		case s[0] == '\'':
			end := closingQuote(s, '\'', false)
			if end < 0 {
				return nil, ""
			}
			part, s = s[1:end], s[end+1:]
		default:
			n := 0
			for n < len(s) && isBareKeyChar(s[n]) {
				n++
			}
			if n == 0 {
				return nil, ""
			}
			part, s = s[:n], s[n:]
		}
		parts = append(parts, part)
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, ".") {
			return parts, s
		}
		s = s[1:]
	}
}

// closingQuote returns the index of the quote closing the one at s[0], or
// -1. In basic strings (escapes true) a backslash escapes the next byte.
func closingQuote(s string, quote byte, escapes bool) int {
	for i := 1; i < len(s); i++ {
		switch {
		case escapes && s[i] == '\\':
			i++
		case s[i] == quote:
			return i
		}
	}
	return -1
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// valueScanner follows a TOML value across lines, so that lines inside a
// multi-line array or string are not mistaken for keys or headers.
type valueScanner struct {
	depth int    // open [ and { brackets
	delim string // `"""` or `'''` while inside a multi-line string
}

func (v *valueScanner) open() bool { return v.depth > 0 || v.delim != "" }

// scan advances over one line (or the rest of one) of a value.
func (v *valueScanner) scan(s string) {
	for i := 0; i < len(s); i++ {
		if v.delim != "" {
			end := strings.Index(s[i:], v.delim)
			if end < 0 {
				return
			}
			i += end + len(v.delim) - 1
			v.delim = ""
			continue
		}
		switch c := s[i]; c {
		case '#':
			return
		case '"', '\'':
			if delim := strings.Repeat(string(c), 3); strings.HasPrefix(s[i:], delim) {
				v.delim = delim
				i += len(delim) - 1
				continue
			}
			end := closingQuote(s[i:], c, c == '"')
			if end < 0 {
				return
			}
			i += end
		case '[', '{':
			v.depth++
		case ']', '}':
			if v.depth > 0 {
				v.depth--
			}
		}
	}
}
