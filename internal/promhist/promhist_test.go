package promhist

import (
	"strings"
	"testing"
)

func TestWritePrometheus(t *testing.T) {
	h := New("x_seconds", 1, 10)
	for _, v := range []float64{0.5, 1, 2, 10, 11, 100} {
		h.Observe(v)
	}
	var b strings.Builder
	h.WritePrometheus(&b)
	want := `x_seconds_bucket{le="1"} 2
x_seconds_bucket{le="10"} 4
x_seconds_bucket{le="+Inf"} 6
x_seconds_sum 124.5
x_seconds_count 6
`
	if got := b.String(); !strings.HasSuffix(got, want) {
		t.Errorf("got\n%s\nwant suffix\n%s", got, want)
	}
}
