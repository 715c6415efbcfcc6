// Package promhist is a fixed-bucket histogram in the Prometheus exposition format (le
// buckets, _sum, _count). VictoriaMetrics/metrics' own Histogram exposes vmrange buckets,
// which Prometheus' histogram_quantile cannot read.
package promhist

import (
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Histogram counts observations into cumulative buckets with fixed upper bounds.
type Histogram struct {
	name   string
	bounds []float64 // ascending upper bounds; +Inf is implied

	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; the last one is +Inf
	sum    float64
}

// New returns a histogram named name (no labels) with the given ascending upper bounds.
func New(name string, bounds ...float64) *Histogram {
	return &Histogram{name: name, bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

// Observe records one value.
func (h *Histogram) Observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.mu.Unlock()
}

// WritePrometheus writes the histogram in the text exposition format; register it with
// metrics.Set.RegisterMetricsWriter.
func (h *Histogram) WritePrometheus(w io.Writer) {
	h.mu.Lock()
	counts := append([]uint64(nil), h.counts...)
	sum := h.sum
	h.mu.Unlock()

	metrics.WriteMetadataIfNeeded(w, h.name, "histogram")
	var total uint64
	for i, c := range counts {
		total += c
		le := "+Inf"
		if i < len(h.bounds) {
			le = strconv.FormatFloat(h.bounds[i], 'g', -1, 64)
		}
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", h.name, le, total)
	}
	fmt.Fprintf(w, "%s_sum %s\n", h.name, strconv.FormatFloat(sum, 'g', -1, 64))
	fmt.Fprintf(w, "%s_count %d\n", h.name, total)
}
