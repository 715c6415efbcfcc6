package dtlsgate

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// Meters are Events counted in metrics: the HelloVerifyRequests sent, the ClientHellos the
// caps refused, the handshakes in progress and how they ended, and the datagrams dropped.
type Meters struct {
	helloVerify *metrics.Counter
	refused     [Refusals]*metrics.Counter
	ended       [Results]*metrics.Counter
	dropped     [Drops]*metrics.Counter
	inProgress  *metrics.Gauge
}

var (
	refusalLabels = [Refusals]string{"total", "per_ip"}
	resultLabels  = [Results]string{"ok", "failed", "timeout", "cookie_timeout"}
	dropLabels    = [Drops]string{"unknown_source", "queue_full", "oversize"}
)

// NewMeters makes the metrics of every listener's gate in set.
func NewMeters(set *metrics.Set) *Meters {
	m := &Meters{
		helloVerify: set.NewCounter("ferry_dtls_hello_verify_total"),
		inProgress:  set.NewGauge("ferry_dtls_handshakes_in_progress", nil),
	}
	for r, label := range refusalLabels {
		m.refused[r] = set.NewCounter(fmt.Sprintf("ferry_dtls_handshakes_refused_total{reason=%q}", label))
	}
	for r, label := range resultLabels {
		m.ended[r] = set.NewCounter(fmt.Sprintf("ferry_dtls_handshakes_total{result=%q}", label))
	}
	for d, label := range dropLabels {
		m.dropped[d] = set.NewCounter(fmt.Sprintf("ferry_dtls_dropped_total{reason=%q}", label))
	}
	return m
}

func (m *Meters) HelloVerify()      { m.helloVerify.Inc() }
func (m *Meters) Refused(r Refusal) { m.refused[r].Inc() }
func (m *Meters) HandshakeStarted() { m.inProgress.Inc() }
func (m *Meters) Dropped(d Drop)    { m.dropped[d].Inc() }

func (m *Meters) HandshakeEnded(r Result) {
	m.inProgress.Dec()
	m.ended[r].Inc()
}

// MetricsHelp returns the HELP text of each metric family of Meters.
func MetricsHelp() map[string]string {
	return map[string]string{
		"ferry_dtls_hello_verify_total":       "DTLS HelloVerifyRequests sent.",
		"ferry_dtls_handshakes_in_progress":   "DTLS handshakes in progress.",
		"ferry_dtls_handshakes_refused_total": "DTLS ClientHellos dropped by limits.dtls_handshakes (total) or limits.dtls_handshakes_per_ip (per_ip).",
		"ferry_dtls_handshakes_total":         "DTLS handshakes ended, by result.",
		"ferry_dtls_dropped_total":            "DTLS datagrams dropped, by reason.",
	}
}
