package server

import (
	"bytes"
	"io"
	"maps"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ferry-rtc/ferry/cluster"
	"github.com/ferry-rtc/ferry/internal/dtlsgate"
	"github.com/ferry-rtc/ferry/internal/procs"
	"github.com/ferry-rtc/ferry/internal/promhelp"
	"github.com/ferry-rtc/ferry/sfu"
	"github.com/ferry-rtc/ferry/turnserver"
	"github.com/ferry-rtc/ferry/turnserver/offload"
)

// metricsHelp is the HELP text of every ferry_* family: the server's own and those of
// TURN and the SFU.
var metricsHelp = sync.OnceValue(func() map[string]string {
	help := map[string]string{
		"ferry_build_info":           "Always 1; the version label is the running version.",
		"ferry_relay_ports_in_use":   "Ports of the relay pool in use (relays and the SFU's ICE socket).",
		"ferry_relay_ports_free":     "Ports of the relay pool free.",
		"ferry_draining":             "1 while the server drains (no new allocations or SFU sessions), else 0.",
		"ferry_config_reloads_total": "Config reloads, by result.",
	}
	maps.Copy(help, turnserver.MetricsHelp())
	maps.Copy(help, offload.MetricsHelp())
	maps.Copy(help, dtlsgate.MetricsHelp())
	maps.Copy(help, procs.MetricsHelp())
	maps.Copy(help, sfu.MetricsHelp())
	maps.Copy(help, cluster.MetricsHelp())
	maps.Copy(help, cluster.UserMetricsHelp())
	return help
})

// writeMetrics writes /metrics: Ferry's metrics with their HELP texts, then the Go
// runtime's and the process's, open file descriptors included (each allocation holds at
// least one).
func (s *Server) writeMetrics(w io.Writer) {
	var own bytes.Buffer
	s.metrics.WritePrometheus(&own)
	_ = promhelp.Fill(w, own.Bytes(), metricsHelp())
	metrics.WriteProcessMetrics(w)
	metrics.WriteFDMetrics(w)
}
