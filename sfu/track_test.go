package sfu

import (
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// testTrack is a VP8 track with the given layers and their bitrates; keyframe requests
// are recorded.
func testTrack(t testing.TB, rates map[string]uint64, rids ...string) (*track, *[]webrtc.SSRC) {
	t.Helper()
	var plis []webrtc.SSRC
	tr := &track{id: "v", kind: webrtc.RTPCodecTypeVideo,
		codec:      webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}},
		keyframeTo: func(ssrc webrtc.SSRC) { plis = append(plis, ssrc) },
		meters:     newMeters(metrics.NewSet(), &SFU{})}
	tr.downs.Store(&[]*downTrack{})
	for i, rid := range rids {
		l := &layer{rid: rid, ssrc: webrtc.SSRC(100 + i)}
		l.bitrate.Store(rates[rid])
		tr.layers = append(tr.layers, l)
	}
	return tr, &plis
}

func TestPick(t *testing.T) {
	tr, _ := testTrack(t, map[string]uint64{"h": 2_000_000, "m": 600_000, "l": 150_000}, "h", "m", "l")
	tests := []struct {
		requested string
		estimate  uint64
		want      string
	}{
		{"m", 0, "m"},
		{"x", 0, "h"}, // an unknown layer: the best
		{"", 0, "h"},  // no estimate yet: the best
		{"", 5_000_000, "h"},
		{"", 1_000_000, "m"},
		{"", 200_000, "l"},
		{"", 50_000, "l"}, // below every layer: the lowest
	}
	for _, tt := range tests {
		if got := tr.pick(tt.requested, tt.estimate); got != tt.want {
			t.Errorf("pick(%q, %d) = %q, want %q", tt.requested, tt.estimate, got, tt.want)
		}
	}
}

// TestDownTrackSwitch: a downTrack starts at a keyframe of its layer, switches only at a
// keyframe of the new one (which it asks for), and numbers its packets without a gap.
func TestDownTrackSwitch(t *testing.T) {
	tr, plis := testTrack(t, nil, "h", "l")
	local, err := webrtc.NewTrackLocalStaticRTP(tr.codec.RTPCodecCapability, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	d := newDownTrack(tr, local, "h")
	key, inter := []byte{0x10, 0x00}, []byte{0x10, 0x01}
	pkt := func(seq uint16, ts uint32, payload []byte) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts}, Payload: payload}
	}
	steps := []struct {
		rid     string
		p       *rtp.Packet
		written bool
		seq     uint16
	}{
		{"h", pkt(500, 9000, inter), false, 0}, // no keyframe yet
		{"l", pkt(70, 100, key), false, 0},     // not the layer followed
		{"h", pkt(501, 9090, key), true, 501},
		{"h", pkt(502, 9180, inter), true, 502},
	}
	for i, s := range steps {
		if got := d.write(s.rid, s.p); got != s.written || (got && d.out.SequenceNumber != s.seq) {
			t.Fatalf("step %d: written %v seq %d; want %v seq %d", i, got, d.out.SequenceNumber, s.written, s.seq)
		}
	}
	d.setTarget("l")
	if len(*plis) != 1 || (*plis)[0] != 101 {
		t.Fatalf("keyframe requests %v, want one for layer l (SSRC 101)", *plis)
	}
	switchSteps := []struct {
		rid     string
		p       *rtp.Packet
		written bool
		seq     uint16
	}{
		{"l", pkt(71, 190, inter), false, 0}, // l is wanted, but not at an interframe
		{"h", pkt(503, 9270, inter), true, 503},
		{"l", pkt(72, 280, key), true, 504}, // the switch: numbering goes on
		{"h", pkt(504, 9360, inter), false, 0},
		{"l", pkt(73, 370, inter), true, 505},
	}
	for i, s := range switchSteps {
		if got := d.write(s.rid, s.p); got != s.written || (got && d.out.SequenceNumber != s.seq) {
			t.Fatalf("switch step %d: written %v seq %d; want %v seq %d", i, got, d.out.SequenceNumber, s.written, s.seq)
		}
	}
	if d.out.Timestamp <= 9270 {
		t.Errorf("timestamp went back across the switch: %d", d.out.Timestamp)
	}
}

// BenchmarkForward is the per-packet path of the SFU: one publisher packet offered to ten
// subscribers.
func BenchmarkForward(b *testing.B) {
	tr, _ := testTrack(b, nil, "")
	for range 10 {
		local, err := webrtc.NewTrackLocalStaticRTP(tr.codec.RTPCodecCapability, "v", "s")
		if err != nil {
			b.Fatal(err)
		}
		tr.addDown(newDownTrack(tr, local, ""))
	}
	l := tr.layers[0]
	p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1}, Payload: append([]byte{0x10, 0x00}, make([]byte, 1000)...)}
	b.ReportAllocs()
	for b.Loop() {
		p.SequenceNumber++
		tr.forward(l, p, 1012)
	}
}
