package sfu

import (
	"testing"
	"time"

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
// The publisher's numbers start past 32768 (half of all streams do), where a signed
// comparison with the initial state used to lose track.
func TestDownTrackSwitch(t *testing.T) {
	tr, plis := testTrack(t, nil, "h", "l")
	local, err := webrtc.NewTrackLocalStaticRTP(tr.codec.RTPCodecCapability, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	d := newDownTrack(tr, local, "h")
	key, inter := []byte{0x10, 0x00}, []byte{0x10, 0x01}
	type step struct {
		rid     string
		seq     uint16
		ts      uint32
		payload []byte
		written bool
		outSeq  uint16
	}
	const ms = int64(time.Millisecond)
	run := func(name string, steps []step, at int64) {
		t.Helper()
		for i, s := range steps {
			p := &rtp.Packet{Header: rtp.Header{SequenceNumber: s.seq, Timestamp: s.ts}, Payload: s.payload}
			if err := p.SetExtension(4, []byte("1")); err != nil {
				t.Fatal(err)
			}
			got := d.write(s.rid, p, at+int64(i)*10*ms)
			if got != s.written || (got && d.out.SequenceNumber != s.outSeq) {
				t.Fatalf("%s step %d: written %v seq %d; want %v seq %d", name, i, got, d.out.SequenceNumber, s.written, s.outSeq)
			}
			if got && (d.out.Extension || len(d.out.Extensions) > 0) {
				t.Fatalf("%s step %d: the publisher's header extensions were forwarded", name, i)
			}
		}
	}
	run("start", []step{
		{"h", 40000, 9000, inter, false, 0}, // no keyframe yet
		{"l", 70, 100, key, false, 0},       // not the layer followed
		{"h", 40001, 9900, key, true, 40001},
		{"h", 40002, 10800, inter, true, 40002},
	}, 0)
	d.pin("l")
	if len(*plis) != 1 || (*plis)[0] != 101 {
		t.Fatalf("keyframe requests %v, want one for layer l (SSRC 101)", *plis)
	}
	lastTS := d.out.Timestamp
	run("switch", []step{
		{"l", 71, 190, inter, false, 0}, // l is wanted, but not at an interframe
		{"h", 40003, 11700, inter, true, 40003},
		{"l", 72, 280, key, true, 40004}, // the switch: numbering goes on
		{"h", 40004, 12600, inter, false, 0},
		{"l", 73, 370, inter, true, 40005},
	}, 100*ms)
	// The switch came 10 ms after the last h packet: 900 ticks at 90 kHz, then l's own 90.
	if want := lastTS + 900 + 900 + 90; d.out.Timestamp != want {
		t.Errorf("timestamp after the switch %d, want %d", d.out.Timestamp, want)
	}
}

// TestPinWinsOverFollow: an automatic move computed before a pin does not undo it.
func TestPinWinsOverFollow(t *testing.T) {
	tr, _ := testTrack(t, map[string]uint64{"h": 2_000_000, "l": 100_000}, "h", "l")
	local, _ := webrtc.NewTrackLocalStaticRTP(tr.codec.RTPCodecCapability, "v", "s")
	d := newDownTrack(tr, local, "")
	d.estimate.Store(300_000)
	d.pin("h")
	d.follow()
	if c := d.want.Load(); c.rid != "h" || c.auto {
		t.Fatalf("after a pin to h and an automatic move: %+v", *c)
	}
	d.pin("")
	d.follow()
	if c := d.want.Load(); c.rid != "l" || !c.auto {
		t.Fatalf("back to automatic with a 300 kbit/s estimate: %+v, want l", *c)
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
