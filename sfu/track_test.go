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
		l.rate.bitrate.Store(rates[rid])
		tr.layers = append(tr.layers, l)
	}
	return tr, &plis
}

// TestPick: a pin wins; without an estimate the best layer; with one, the best layer whose
// bitrate fits: within 90% of the budget for the layer a subscriber is on and those below,
// within 80% for a better one (so an estimate just above a layer's bitrate does not bounce
// the subscriber up and down); a layer that sends nothing is passed over.
func TestPick(t *testing.T) {
	tr, _ := testTrack(t, map[string]uint64{"h": 2_000_000, "m": 600_000, "l": 150_000}, "h", "m", "l")
	tests := []struct {
		requested string
		budget    uint64
		current   string
		want      string
	}{
		{"m", 0, "", "m"},
		{"x", 0, "", "h"}, // an unknown layer: the best
		{"", 0, "l", "h"}, // no estimate yet: the best
		{"", 5_000_000, "h", "h"},
		{"", 1_000_000, "h", "m"},
		{"", 200_000, "h", "l"},
		{"", 50_000, "m", "l"},       // below every layer: the lowest
		{"", 2_300_000, "h", "h"},    // 2M is within 90% of 2.3M: h stays
		{"", 2_300_000, "m", "m"},    // but not within 80%: m does not move up
		{"", 2_500_000, "m", "h"},    // 2M is 80% of 2.5M
		{"", 700_000, "m", "m"},      // 600k within 90% of 700k
		{"", 700_000, "l", "l"},      // not within 80%
		{"", 1_000_000, "", "m"},     // no layer yet: 90%
		{"", 5_000_000, "gone", "h"}, // a layer the track lost: 90%
	}
	for _, tt := range tests {
		if got := tr.pick(tt.requested, tt.budget, tt.current); got != tt.want {
			t.Errorf("pick(%q, %d, on %q) = %q, want %q", tt.requested, tt.budget, tt.current, got, tt.want)
		}
	}
	tr.layers[0].rate.bitrate.Store(0) // h paused
	if got := tr.pick("", 0, "h"); got != "m" {
		t.Errorf("with h sending nothing and no estimate: %q, want m", got)
	}
	if got := tr.pick("", 100_000_000, "m"); got != "m" {
		t.Errorf("with h sending nothing and a large estimate: %q, want m", got)
	}
	if rid, bps, ok := tr.nextUp("l"); !ok || rid != "m" || bps != 600_000 {
		t.Errorf("nextUp(l) = %q, %d, %v; want m", rid, bps, ok)
	}
	if _, _, ok := tr.nextUp("m"); ok {
		t.Errorf("nextUp(m) found a layer above m, but h sends nothing")
	}
	for _, l := range tr.layers {
		l.rate.bitrate.Store(0)
	}
	if got := tr.pick("", 1_000_000, "l"); got != "h" {
		t.Errorf("no layer measured yet: %q, want the best", got)
	}
}

// TestDownTrackSwitch: a downTrack starts at a keyframe of its layer, switches only at a
// keyframe of the new one (which it asks for), and numbers its packets without a gap.
// The publisher's numbers start past 32768 (half of all streams do), where a signed
// comparison with the initial state used to lose track.
func TestDownTrackSwitch(t *testing.T) {
	tr, plis := testTrack(t, nil, "h", "l")
	d, sink := testDownTrack(t, tr, "h")
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
			p := newPacket()
			p.Header = rtp.Header{SequenceNumber: s.seq, Timestamp: s.ts}
			p.Payload = s.payload
			p.hold(1) // the queue's
			if err := p.SetExtension(4, []byte("1")); err != nil {
				t.Fatal(err)
			}
			got := d.offer(s.rid, p, at+int64(i)*10*ms) == accepted
			if got {
				q := <-d.queue // the writer's part, here on the test's goroutine
				d.send(q)
			}
			p.releaseN(2) // the queue's hold, used or not, and the test's
			last := sink.last()
			if got != s.written || (got && last.SequenceNumber != s.outSeq) {
				t.Fatalf("%s step %d: written %v seq %d; want %v seq %d", name, i, got, last.SequenceNumber, s.written, s.outSeq)
			}
			if got && (last.Extension || len(last.Extensions) > 0) {
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
	lastTS := sink.last().Timestamp
	run("switch", []step{
		{"l", 71, 190, inter, false, 0}, // l is wanted, but not at an interframe
		{"h", 40003, 11700, inter, true, 40003},
		{"l", 72, 280, key, true, 40004}, // the switch: numbering goes on
		{"h", 40004, 12600, inter, false, 0},
		{"l", 73, 370, inter, true, 40005},
	}, 100*ms)
	// The switch came 10 ms after the last h packet: 900 ticks at 90 kHz, then l's own 90.
	if want := lastTS + 900 + 900 + 90; sink.last().Timestamp != want {
		t.Errorf("timestamp after the switch %d, want %d", sink.last().Timestamp, want)
	}
}

// TestDownTrackFullQueue: a keyframe that a full queue drops does not switch the
// subscriber; the next one does.
func TestDownTrackFullQueue(t *testing.T) {
	tr, _ := testTrack(t, nil, "")
	d, _ := testDownTrack(t, tr, "")
	for range queueLen {
		d.queue <- queued{pkt: newPacket()}
	}
	key := newPacket()
	key.Payload = []byte{0x10, 0x00}
	key.hold(1) // the queue's, given back below when it is dropped
	if v := d.offer("", key, 0); v != dropped {
		t.Fatalf("a keyframe offered to a full queue: verdict %d, want dropped", v)
	}
	for range queueLen {
		(<-d.queue).pkt.release()
	}
	key.SequenceNumber = 7 // the queue still holds it
	if v := d.offer("", key, 0); v != accepted || !d.started {
		t.Fatalf("the next keyframe: verdict %d, started %v; want accepted and started", v, d.started)
	}
	(<-d.queue).pkt.release()
	if refs := key.refs.Load(); refs != 1 {
		t.Errorf("the keyframe is held %d times, want once (by the test)", refs)
	}
	key.release()
}

// TestPinWinsOverFollow: an automatic move computed before a pin does not undo it.
func TestPinWinsOverFollow(t *testing.T) {
	tr, _ := testTrack(t, map[string]uint64{"h": 2_000_000, "l": 100_000}, "h", "l")
	local, _ := webrtc.NewTrackLocalStaticRTP(tr.codec.RTPCodecCapability, "v", "s")
	bw := newBWE(tr.meters)
	bw.share.Store(300_000)
	d := newDownTrack(tr, local, "", nil, bw)
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

// TestKeyframeAskedUntilItComes: a subscriber takes nothing before its connection is up
// (a keyframe written then is lost); then it asks for a keyframe to start at, and again,
// at most once per keyframeInterval, for as long as the publisher sends only interframes
// (a request can be lost, or fall in the interval of another subscriber's that the
// publisher already answered), and stops asking once it started.
func TestKeyframeAskedUntilItComes(t *testing.T) {
	tr, plis := testTrack(t, nil, "")
	d, _ := testDownTrack(t, tr, "")
	d.live.Store(false)
	tr.addDown(d)
	t.Cleanup(func() { tr.removeDown(d) })
	l := tr.layers[0]
	seq := uint16(1)
	send := func(key bool) {
		t.Helper()
		publish(tr, rawPacket(t, seq, key))
		seq++
	}
	send(true)
	if d.started || len(*plis) != 0 {
		t.Fatalf("before the connection is up: started %v, %d keyframe requests; want neither", d.started, len(*plis))
	}
	d.goLive()
	send(false)
	if len(*plis) != 1 {
		t.Fatalf("live, then an interframe: %d keyframe requests, want 1 (then throttled)", len(*plis))
	}
	l.lastPLI.Add(-int64(keyframeInterval)) // the interval passes with no keyframe
	send(false)
	if len(*plis) != 2 {
		t.Fatalf("an interval later, still no keyframe: %d keyframe requests, want 2", len(*plis))
	}
	send(true)
	waitUntil(t, "the keyframe written", func() bool { return d.sent.bytes.Load() > 0 })
	l.lastPLI.Add(-int64(keyframeInterval))
	send(false)
	if len(*plis) != 2 {
		t.Errorf("after the keyframe: %d keyframe requests, want still 2", len(*plis))
	}
}

// TestKeyframePacing: keyframe requests go out at most once per keyframeInterval per
// layer; one asked for within the interval is not lost but sent when it has passed (on the
// layer's next packet), and asked again until a keyframe of the layer arrives.
func TestKeyframePacing(t *testing.T) {
	tr, plis := testTrack(t, nil, "h", "l")
	h, l := tr.layers[0], tr.layers[1]
	tr.keyframe("h")
	tr.keyframe("h")
	tr.keyframe("l")
	if want := []webrtc.SSRC{h.ssrc, l.ssrc}; len(*plis) != 2 || (*plis)[0] != want[0] || (*plis)[1] != want[1] {
		t.Fatalf("requests %v, want one per layer: %v", *plis, want)
	}
	inter, key := rawPacket(t, 1, false), rawPacket(t, 2, true)
	send := func(l *layer, raw []byte) {
		p := newPacket()
		tr.receive(l, p, copy(p.buf[:], raw))
	}
	send(h, inter)
	if len(*plis) != 2 {
		t.Fatalf("a request went out within the interval: %v", *plis)
	}
	passed := func(l *layer) { l.lastPLI.Add(-int64(keyframeInterval)) }
	passed(h)
	send(h, inter) // no keyframe came: asked again
	if len(*plis) != 3 || (*plis)[2] != h.ssrc {
		t.Fatalf("requests %v, want a third for h once the interval passed", *plis)
	}
	send(h, key)
	passed(h)
	send(h, inter)
	if len(*plis) != 3 || h.wantKey.Load() {
		t.Fatalf("requests %v after h's keyframe came, want no more", *plis)
	}
	if !l.wantKey.Load() {
		t.Fatalf("l's keyframe has not come, but it is not wanted any more")
	}
	tr.keyframe("h") // a new request after the interval: at once
	if len(*plis) != 4 {
		t.Fatalf("requests %v, want a fourth at once", *plis)
	}
	if n := tr.meters.keyframeRequests.Get(); n != 4 {
		t.Errorf("%d keyframe requests counted, want 4", n)
	}
}
