package offload

import (
	"fmt"
	"io"

	"github.com/VictoriaMetrics/metrics"
)

// RegisterMetrics adds the ferry_offload_* families to set, for o (nil: the kernel fast
// path is off, and they say so).
func RegisterMetrics(set *metrics.Set, o *Offload) {
	set.RegisterMetricsWriter(func(w io.Writer) {
		var st Stats
		active, ifaces, channels := 0, 0, 0
		var mapErrors uint64
		var skipped [skipKinds]uint64
		if o != nil && !o.closed.Load() {
			active, ifaces, channels = 1, len(o.names), o.Channels()
			st = o.Stats()
		}
		if o != nil {
			mapErrors = o.mapErrors.Load()
			for i := range skipped {
				skipped[i] = o.skipped[i].Load()
			}
		}
		metrics.WriteMetadataIfNeeded(w, "ferry_offload_active", "gauge")
		fmt.Fprintf(w, "ferry_offload_active %d\n", active)
		metrics.WriteMetadataIfNeeded(w, "ferry_offload_interfaces", "gauge")
		fmt.Fprintf(w, "ferry_offload_interfaces %d\n", ifaces)
		metrics.WriteMetadataIfNeeded(w, "ferry_offload_channels", "gauge")
		fmt.Fprintf(w, "ferry_offload_channels %d\n", channels)
		metrics.WriteMetadataIfNeeded(w, "ferry_offload_packets_total", "counter")
		fmt.Fprintf(w, "ferry_offload_packets_total{direction=\"client_to_peer\"} %d\n", st.ToPeerPackets)
		fmt.Fprintf(w, "ferry_offload_packets_total{direction=\"peer_to_client\"} %d\n", st.FromPeerPackets)
		metrics.WriteMetadataIfNeeded(w, "ferry_offload_bytes_total", "counter")
		fmt.Fprintf(w, "ferry_offload_bytes_total{direction=\"client_to_peer\"} %d\n", st.ToPeerBytes)
		fmt.Fprintf(w, "ferry_offload_bytes_total{direction=\"peer_to_client\"} %d\n", st.FromPeerBytes)
		metrics.WriteMetadataIfNeeded(w, "ferry_offload_passed_total", "counter")
		for i, label := range passLabels {
			fmt.Fprintf(w, "ferry_offload_passed_total{reason=%q} %d\n", label, st.Passed[i])
		}
		metrics.WriteMetadataIfNeeded(w, "ferry_offload_skipped_total", "counter")
		for i, label := range skipLabels {
			fmt.Fprintf(w, "ferry_offload_skipped_total{reason=%q} %d\n", label, skipped[i])
		}
		metrics.WriteMetadataIfNeeded(w, "ferry_offload_map_errors_total", "counter")
		fmt.Fprintf(w, "ferry_offload_map_errors_total %d\n", mapErrors)
	})
}

// MetricsHelp returns the HELP text of each ferry_offload_* family.
func MetricsHelp() map[string]string {
	return map[string]string{
		"ferry_offload_active":           "1 while the kernel fast path (eBPF, [relay] offload) relays ChannelData, else 0 (off, or not possible here: the start-up log says why).",
		"ferry_offload_interfaces":       "Interfaces the kernel fast path is attached to.",
		"ferry_offload_channels":         "Channel bindings the kernel relays.",
		"ferry_offload_packets_total":    "Packets the kernel relayed, by direction (also counted in ferry_relay_packets_total).",
		"ferry_offload_bytes_total":      "Payload bytes the kernel relayed, by direction (also counted in ferry_relay_bytes_total).",
		"ferry_offload_passed_total":     "Packets to a listener or a channel's relay port that the kernel left to user space, by reason (stun, unbound, expired, malformed, mtu).",
		"ferry_offload_skipped_total":    "Channel bindings left to user space, by reason (route: peer or client not reached through an attached interface, e.g. local; ipv6).",
		"ferry_offload_map_errors_total": "Channel bindings that could not be written into the kernel's maps (left to user space).",
	}
}
