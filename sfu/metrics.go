package sfu

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
)

// meters are the SFU's counters; the gauges (rooms, publishers, subscribers, tracks) are
// read from the SFU's state when scraped.
type meters struct {
	packets, bytes   *metrics.Counter
	drops            *metrics.Counter
	framesDropped    *metrics.Counter
	probes           map[probeOutcome]*metrics.Counter // read-only once made
	retransmissions  map[bool]*metrics.Counter         // sent, or not (past maxResends, or a full queue)
	nacks            *metrics.Counter
	feedback         [feedbackKinds]*metrics.Counter
	rtcpMalformed    *metrics.Counter
	keyframeRequests *metrics.Counter
	layerSwitches    *metrics.Counter
	refused          map[string]*metrics.Counter // by refusalReasons; read-only once made
	connectTimeouts  *metrics.Counter
	mux              muxCounters
}

// muxCounters count what the ICE socket loses: datagrams relays handed over that its queue
// had no room for, and batches whose write failed; and how its bursts went out (UDP GSO).
type muxCounters struct {
	handoffDropped, writeErrors *metrics.Counter
	gso                         udpbatch.GSOStats
}

func newMeters(set *metrics.Set, s *SFU) *meters {
	for name, f := range map[string]func() float64{
		"ferry_sfu_rooms":       func() float64 { return float64(s.count().rooms) },
		"ferry_sfu_publishers":  func() float64 { return float64(s.count().publishers) },
		"ferry_sfu_subscribers": func() float64 { return float64(s.count().subscribers) },
		"ferry_sfu_tracks":      func() float64 { return float64(s.count().tracks) },
	} {
		set.NewGauge(name, f)
	}
	refused := map[string]*metrics.Counter{}
	for _, reason := range refusalReasons {
		refused[reason] = set.NewCounter(`ferry_sfu_refused_total{reason="` + reason + `"}`)
	}
	return &meters{
		packets:       set.NewCounter("ferry_sfu_forwarded_packets_total"),
		bytes:         set.NewCounter("ferry_sfu_forwarded_bytes_total"),
		drops:         set.NewCounter("ferry_sfu_dropped_packets_total"),
		framesDropped: set.NewCounter("ferry_sfu_dropped_frames_total"),
		probes: map[probeOutcome]*metrics.Counter{
			probeSucceeded: set.NewCounter(`ferry_sfu_probes_total{result="success"}`),
			probeFailed:    set.NewCounter(`ferry_sfu_probes_total{result="failure"}`),
		},
		retransmissions: map[bool]*metrics.Counter{
			true:  set.NewCounter(`ferry_sfu_retransmissions_total{result="sent"}`),
			false: set.NewCounter(`ferry_sfu_retransmissions_total{result="dropped"}`),
		},
		nacks: set.NewCounter("ferry_sfu_nacks_total"),
		feedback: [feedbackKinds]*metrics.Counter{
			feedbackTCC:  set.NewCounter(`ferry_sfu_bandwidth_feedback_total{kind="transport-cc"}`),
			feedbackREMB: set.NewCounter(`ferry_sfu_bandwidth_feedback_total{kind="remb"}`),
		},
		rtcpMalformed:    set.NewCounter("ferry_sfu_rtcp_malformed_total"),
		keyframeRequests: set.NewCounter("ferry_sfu_keyframe_requests_total"),
		layerSwitches:    set.NewCounter("ferry_sfu_layer_switches_total"),
		refused:          refused,
		connectTimeouts:  set.NewCounter("ferry_sfu_connect_timeouts_total"),
		mux: muxCounters{
			handoffDropped: set.NewCounter("ferry_sfu_handoff_dropped_total"),
			writeErrors:    set.NewCounter("ferry_sfu_write_errors_total"),
			gso: udpbatch.GSOStats{
				Sends:     set.NewCounter("ferry_sfu_gso_sends_total"),
				Segments:  set.NewCounter("ferry_sfu_gso_segments_total"),
				Fallbacks: set.NewCounter("ferry_sfu_gso_fallbacks_total"),
			},
		},
	}
}

// forwarded counts one packet of size bytes queued for n subscribers.
func (m *meters) forwarded(n, size int) {
	if n > 0 {
		m.packets.Add(n)
		m.bytes.Add(n * size)
	}
}

// dropped counts one packet that n subscribers did not get (their queue was full, or its
// frame was dropped), frames of them as the first packet of a frame dropped.
func (m *meters) dropped(n, frames int) {
	if n > 0 {
		m.drops.Add(n)
	}
	if frames > 0 {
		m.framesDropped.Add(frames)
	}
}

// MetricsHelp returns the HELP text of each of the SFU's metric families.
func MetricsHelp() map[string]string {
	return map[string]string{
		"ferry_sfu_rooms":                    "SFU rooms with a stream or an event feed.",
		"ferry_sfu_publishers":               "Live WHIP sessions.",
		"ferry_sfu_subscribers":              "Live WHEP sessions.",
		"ferry_sfu_tracks":                   "Tracks the publishers send.",
		"ferry_sfu_forwarded_packets_total":  "RTP packets queued for subscribers, one per subscriber.",
		"ferry_sfu_forwarded_bytes_total":    "Bytes of the RTP packets queued for subscribers, per subscriber.",
		"ferry_sfu_dropped_packets_total":    "RTP packets not sent to a slow subscriber, one per subscriber: its queue was full, or their video frame was dropped whole.",
		"ferry_sfu_dropped_frames_total":     "Video frames dropped whole for slow subscribers, one per subscriber (the frame its congested queue would not take, or one before the keyframe it waits for).",
		"ferry_sfu_probes_total":             "Bandwidth probes (padding toward a subscriber to see if a better simulcast layer fits), by result.",
		"ferry_sfu_retransmissions_total":    "RTP packets sent to subscribers again (NACK), or not: a packet is sent again at most 3 times, and not while the subscriber's queue is full.",
		"ferry_sfu_nacks_total":              "NACKs received from subscribers.",
		"ferry_sfu_bandwidth_feedback_total": "Bandwidth feedback packets from subscribers, each acted on once, by kind (transport-cc, remb).",
		"ferry_sfu_rtcp_malformed_total":     "RTCP packets from subscribers dropped because they could not be read (truncated or malformed), with what followed them in their compound packet.",
		"ferry_sfu_keyframe_requests_total":  "Keyframe requests (PLI) sent to publishers.",
		"ferry_sfu_layer_switches_total":     "Simulcast layer changes of subscribers.",
		"ferry_sfu_refused_total":            "WHIP and WHEP sessions and event feeds refused (429) by a limit, by limit.",
		"ferry_sfu_connect_timeouts_total":   "Sessions ended because their connection was not up within sfu.connect_timeout.",
		"ferry_sfu_handoff_dropped_total":    "Datagrams TURN relays handed to the SFU in process that its full queue dropped.",
		"ferry_sfu_write_errors_total":       "Batches of packets to subscribers whose write to the ICE socket failed.",
		"ferry_sfu_gso_sends_total":          "UDP GSO datagrams the ICE socket sent: each a run of equal-size packets to one subscriber that the kernel splits.",
		"ferry_sfu_gso_segments_total":       "Packets to subscribers sent inside UDP GSO datagrams.",
		"ferry_sfu_gso_fallbacks_total":      "Runs of packets to one subscriber sent one by one because the kernel lacks or refused UDP GSO on the ICE socket.",
	}
}
