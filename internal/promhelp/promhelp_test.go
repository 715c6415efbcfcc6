package promhelp

import (
	"bytes"
	"testing"
)

func TestFill(t *testing.T) {
	src := "# HELP a_total\n# TYPE a_total counter\na_total 1\n" +
		"# HELP b\n# TYPE b gauge\nb{x=\"# HELP b\"} 2\n" +
		"# HELP c has its own\nc 3\n" +
		"# HELP unknown\nunknown 4\n"
	help := map[string]string{"a_total": "As counted.", "b": `Back\slash and` + "\nline feed.", "c": "not used"}
	want := "# HELP a_total As counted.\n# TYPE a_total counter\na_total 1\n" +
		"# HELP b Back\\\\slash and\\nline feed.\n# TYPE b gauge\nb{x=\"# HELP b\"} 2\n" +
		"# HELP c has its own\nc 3\n" +
		"# HELP unknown\nunknown 4\n"
	var out bytes.Buffer
	if err := Fill(&out, []byte(src), help); err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Errorf("Fill:\n%s\nwant:\n%s", out.String(), want)
	}
}
