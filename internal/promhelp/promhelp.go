// Package promhelp gives the families of a Prometheus text exposition their HELP texts.
// VictoriaMetrics/metrics writes "# HELP name" with no text; Prometheus accepts that, but an
// operator reading /metrics learns nothing from it and `promtool check metrics` flags it.
package promhelp

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// escape writes a HELP text as the text format wants it: backslash and line feed escaped.
var escape = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// Fill copies the exposition src to w, giving each "# HELP family" line that has no text
// the text help has for its family. Other lines, and families help does not know, are
// copied as they are.
func Fill(w io.Writer, src []byte, help map[string]string) error {
	bw := bufio.NewWriter(w)
	for len(src) > 0 {
		line, rest, _ := bytes.Cut(src, []byte("\n"))
		src = rest
		family, isHelp := bytes.CutPrefix(line, []byte("# HELP "))
		text, known := help[string(family)]
		if isHelp && known && bytes.IndexByte(family, ' ') < 0 {
			bw.WriteString("# HELP ")
			bw.Write(family)
			bw.WriteByte(' ')
			escape.WriteString(bw, text)
		} else {
			bw.Write(line)
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
