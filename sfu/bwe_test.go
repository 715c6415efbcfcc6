package sfu

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestSendHistory: each packet recorded is found by its sequence number with its size and
// send time, also when the microsecond clock of the ring has wrapped; one overwritten by a
// later packet, or too old, is not.
func TestSendHistory(t *testing.T) {
	var h sendHistory
	now := time.Now()
	// The ring's 37-bit clock wraps a second after the first packet.
	h.base = now.Add(-(histTimeMask*time.Microsecond - time.Second))
	sizes := map[uint16]int{}
	for i := range 100 {
		at := now.Add(time.Duration(i) * 20 * time.Millisecond)
		seq := h.record(1000+i, at, i == 3)
		if seq != uint16(i) {
			t.Fatalf("packet %d numbered %d", i, seq)
		}
		sizes[seq] = 1000 + i
	}
	lookupAt := now.Add(2 * time.Second).Sub(h.base)
	for seq, size := range sizes {
		sent, got, retx, ok := h.lookup(seq, lookupAt)
		want := now.Add(time.Duration(seq) * 20 * time.Millisecond).Sub(h.base).Truncate(time.Microsecond)
		if !ok || got != size || sent != want || retx != (seq == 3) {
			t.Fatalf("lookup(%d) = %v, %d, %v, %v; want %v, %d, %v", seq, sent, got, retx, ok, want, size, seq == 3)
		}
	}
	if _, _, _, ok := h.lookup(100, lookupAt); ok {
		t.Errorf("a packet never sent was found")
	}
	if _, _, _, ok := h.lookup(5, lookupAt+histMaxAge); ok {
		t.Errorf("a packet older than %v was found", histMaxAge)
	}
	for range histLen {
		h.record(3000, now, false)
	}
	if _, _, _, ok := h.lookup(7, now.Sub(h.base)); ok {
		t.Errorf("a packet overwritten %d packets later was found", histLen)
	}
	if _, size, _, ok := h.lookup(7+histLen, now.Sub(h.base)); !ok || size != histSizeMax {
		t.Errorf("the packet that overwrote it: %d, %v; want the size capped at %d", size, ok, histSizeMax)
	}
}

// feedback marshals a transport-cc packet, as it arrives from pion.
func feedback(t testing.TB, fb *rtcp.TransportLayerCC) []byte {
	t.Helper()
	n := 4 + 16 + 2*len(fb.PacketChunks) // header, fixed fields, chunks, then the deltas
	for _, d := range fb.RecvDeltas {
		n += int(d.Type) // small: 1 byte, large: 2
	}
	fb.Header = rtcp.Header{Padding: n%4 != 0, Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback,
		Length: uint16(fb.MarshalSize()/4 - 1)}
	raw, err := fb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// results parses p and returns a copy of its results (parse reuses its slice), failing the
// test if p is malformed.
func results(t *testing.T, b *bwe, p []byte, at time.Duration) []pktResult {
	t.Helper()
	res, ok := b.parse(p, at)
	if !ok {
		t.Fatalf("feedback % x reads as malformed", p)
	}
	return slices.Clone(res)
}

// TestParseFeedback: run-length and status-vector chunks give each packet's fate in sending
// order, the arrival times add up across feedback packets (their 24-bit reference time
// wrapping in between) and the sequence numbers wrap; packets reported before, or no longer
// in the history, give nothing.
func TestParseFeedback(t *testing.T) {
	b := newBWE(nil)
	now := time.Now()
	for i := range 65534 + 8 { // the last eight are 65534, 65535, 0, ..., 5
		b.hist.record(100+i%7, now, false)
	}
	ms := func(n int64) int64 { return n * 1000 }
	first := feedback(t, &rtcp.TransportLayerCC{
		BaseSequenceNumber: 65534, PacketStatusCount: 6, ReferenceTime: 0xFFFFFF,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.StatusVectorChunk{Type: rtcp.TypeTCCStatusVectorChunk,
			SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit,
			SymbolList: []uint16{rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketNotReceived,
				rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketReceivedLargeDelta,
				rtcp.TypeTCCPacketNotReceived, rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketNotReceived}}},
		RecvDeltas: []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: ms(1)},
			{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: ms(10)},
			{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: ms(-2)},
			{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: ms(5)}},
	})
	at := b.now()
	got := results(t, b, first, at)
	base := time.Duration(0xFFFFFF) * 64 * time.Millisecond
	want := []struct {
		received bool
		arrived  time.Duration
		size     int
	}{
		{true, base + time.Millisecond, 100 + 65534%7},
		{false, 0, 100 + 65535%7},
		{true, base + 11*time.Millisecond, 100 + 65536%7},
		{true, base + 9*time.Millisecond, 100 + 65537%7},
		{false, 0, 100 + 65538%7},
		{true, base + 14*time.Millisecond, 100 + 65539%7},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].received != w.received || got[i].arrived != w.arrived || got[i].size != w.size {
			t.Errorf("result %d: %+v, want %+v", i, got[i], w)
		}
	}
	if n := len(results(t, b, first, at)); n != 0 {
		t.Errorf("the same feedback again gave %d results", n)
	}
	// The next one: the reference time wraps to 1 (two steps of 64 ms on), one run of two.
	second := feedback(t, &rtcp.TransportLayerCC{
		BaseSequenceNumber: 4, PacketStatusCount: 2, ReferenceTime: 1, FbPktCount: 1,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{Type: rtcp.TypeTCCRunLengthChunk,
			PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 2}},
		RecvDeltas: []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: ms(3)},
			{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: ms(4)}},
	})
	got = results(t, b, second, at)
	wrapped := base + 2*64*time.Millisecond
	if len(got) != 2 || got[0].arrived != wrapped+3*time.Millisecond || got[1].arrived != wrapped+7*time.Millisecond {
		t.Errorf("after the reference time wrapped: %+v, want arrivals at %v and %v", got, wrapped+3*time.Millisecond,
			wrapped+7*time.Millisecond)
	}
	// A packet the history no longer holds is passed over.
	stale := feedback(t, &rtcp.TransportLayerCC{
		BaseSequenceNumber: 6, PacketStatusCount: 1, ReferenceTime: 2,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{Type: rtcp.TypeTCCRunLengthChunk,
			PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 1}},
		RecvDeltas: []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: ms(1)}},
	})
	if got := results(t, b, stale, at); len(got) != 0 {
		t.Errorf("a packet never sent gave %+v", got)
	}
}

// TestParseFeedbackOneBitVector: a status vector of one-bit symbols (not received, or
// received with a small delta) is read symbol by symbol, only as far as the packet count.
func TestParseFeedbackOneBitVector(t *testing.T) {
	b := newBWE(nil)
	now := time.Now()
	for range 20 {
		b.hist.record(100, now, false)
	}
	fb := feedback(t, &rtcp.TransportLayerCC{BaseSequenceNumber: 3, PacketStatusCount: 4,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.StatusVectorChunk{Type: rtcp.TypeTCCStatusVectorChunk,
			SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: []uint16{1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}},
		RecvDeltas: []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 2000},
			{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 500}}})
	got := results(t, b, fb, b.now())
	want := []bool{true, false, false, true}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].received != w {
			t.Errorf("packet %d received %v, want %v", 3+i, got[i].received, w)
		}
	}
	if d := got[3].arrived - got[0].arrived; d != 500*time.Microsecond {
		t.Errorf("the fourth packet arrived %v after the first, want 500µs", d)
	}
}

// TestParseFeedbackMalformed: a feedback packet cut anywhere, or whose chunks promise more
// packets than it holds, or more received packets than deltas follow, reads as malformed
// without a panic; what came before the fault is still taken.
func TestParseFeedbackMalformed(t *testing.T) {
	b := newBWE(nil)
	now := time.Now()
	for i := range 10 {
		b.hist.record(100+i, now, false)
	}
	full := feedback(t, &rtcp.TransportLayerCC{BaseSequenceNumber: 0, PacketStatusCount: 3,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedLargeDelta, RunLength: 3}},
		RecvDeltas: []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: 1000},
			{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: 2000}, {Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: 3000}}})
	at := b.now()
	for n := range len(full) {
		if _, ok := b.parse(full[:n], at); ok {
			t.Errorf("the first %d of %d bytes read as a whole feedback packet", n, len(full))
		}
	}
	// Cut in the second delta: the first packet's result is taken.
	b = newBWE(nil)
	for i := range 10 {
		b.hist.record(100+i, now, false)
	}
	res, ok := b.parse(full[:tccFixedLen+2+3], at)
	if ok || len(res) != 1 || !res[0].received {
		t.Errorf("cut in the second delta: %+v, %v; want the first packet's result and malformed", res, ok)
	}
	// Two status vectors promised (20 packets), one there.
	vector := slices.Clone(full[:tccFixedLen+2])
	vector[15] = 20
	vector[20], vector[21] = 0xFF, 0xFF
	if res, ok := b.parse(vector, at); ok || len(res) != 0 {
		t.Errorf("chunks past the end: %+v, %v; want nothing and malformed", res, ok)
	}
}

// capture is the rest of the interceptor chain below the stamper: it keeps the last header
// written (a copy: the stamper reuses its buffers), and counts the writes.
type capture struct {
	header rtp.Header
	writes int
}

func (c *capture) Write(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) {
	raw, err := h.Marshal()
	if err != nil {
		return 0, err
	}
	c.header = rtp.Header{}
	_, err = c.header.Unmarshal(raw)
	c.header.PaddingSize = h.PaddingSize // not in the header's bytes
	c.writes++
	return 0, err
}

// TestStampWriter: each packet leaves with the next transport-wide sequence number in the
// negotiated extension, beside the extensions it had, and is recorded with its size; the
// caller's header is as it was; a write allocates nothing.
func TestStampWriter(t *testing.T) {
	b := newBWE(newMeters(metrics.NewSet(), &SFU{}))
	st := &twccStamper{b: b}
	next := &capture{}
	w := st.BindLocalStream(&interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
		{URI: "urn:ietf:params:rtp-hdrext:sdes:mid", ID: 1}, {URI: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", ID: 5}}},
		next)
	if !b.active.Load() {
		t.Fatal("transport-cc negotiated, but the estimate is not active")
	}
	payload := make([]byte, 900)
	h := rtp.Header{Version: 2, SequenceNumber: 10}
	for i := range 3 {
		h.SequenceNumber = uint16(10 + i)
		if _, err := w.Write(&h, payload, nil); err != nil {
			t.Fatal(err)
		}
		if got := next.header.GetExtension(5); len(got) != 2 || int(got[0])<<8|int(got[1]) != i {
			t.Fatalf("packet %d carries transport-wide number %v", i, got)
		}
		if h.Extension || h.Extensions != nil {
			t.Fatalf("the caller's header was changed: %+v", h)
		}
		_, size, _, ok := b.hist.lookup(uint16(i), b.now())
		if want := 12 + 8 + 900; !ok || size != want {
			t.Fatalf("packet %d recorded with size %d (%v), want %d", i, size, ok, want)
		}
	}
	h.SequenceNumber = 13
	if err := h.SetExtension(1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(&h, payload, nil); err != nil {
		t.Fatal(err)
	}
	if string(next.header.GetExtension(1)) != "a" || len(next.header.GetExtension(5)) != 2 {
		t.Errorf("with an extension of its own, the packet left with %+v", next.header.Extensions)
	}
	if len(h.Extensions) != 1 {
		t.Errorf("the caller's extensions became %+v", h.Extensions)
	}
	// A retransmission (a number not newer than the newest) is numbered and recorded as one,
	// at most maxResends times.
	for i := range maxResends + 2 {
		before := next.writes
		if _, err := w.Write(&rtp.Header{Version: 2, SequenceNumber: 11}, payload, nil); err != nil {
			t.Fatal(err)
		}
		sent := next.writes > before
		if sent != (i < maxResends) {
			t.Fatalf("retransmission %d of a packet: sent %v", i+1, sent)
		}
		if sent {
			seq := binary.BigEndian.Uint16(next.header.GetExtension(5))
			if _, _, retx, _ := b.hist.lookup(seq, b.now()); !retx {
				t.Fatalf("retransmission %d recorded as a new packet", i+1)
			}
		}
	}
	if sent, dropped := b.meters.retransmissions[true].Get(), b.meters.retransmissions[false].Get(); sent != maxResends || dropped != 2 {
		t.Errorf("%d retransmissions sent and %d dropped counted, want %d and 2", sent, dropped, maxResends)
	}
	h = rtp.Header{Version: 2}
	w = st.BindLocalStream(&interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
		{URI: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", ID: 5}}},
		interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { return 0, nil }))
	if allocs := testing.AllocsPerRun(1000, func() { h.SequenceNumber++; _, _ = w.Write(&h, payload, nil) }); allocs != 0 {
		t.Errorf("a write allocates %.1f times", allocs)
	}
	// Without transport-cc, packets pass unnumbered.
	plain := newBWE(b.meters)
	w = (&twccStamper{b: plain}).BindLocalStream(&interceptor.StreamInfo{}, next)
	if _, err := w.Write(&rtp.Header{Version: 2}, payload, nil); err != nil || plain.active.Load() || next.header.Extension {
		t.Errorf("a stream without transport-cc is numbered")
	}
}

// TestStampWriterSharedHeader: two writers send one header at the same time, as pion's
// NACK responder does when the RTCP that carries a NACK reaches both of a subscriber's
// senders: the header is only read (go test -race fails a write to it), and each copy
// leaves numbered.
func TestStampWriterSharedHeader(t *testing.T) {
	b := newBWE(newMeters(metrics.NewSet(), &SFU{}))
	var numbered atomic.Int32
	w := (&twccStamper{b: b}).BindLocalStream(&interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
		{URI: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", ID: 5}}},
		interceptor.RTPWriterFunc(func(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) {
			if len(h.GetExtension(5)) == 2 {
				numbered.Add(1)
			}
			return 0, nil
		}))
	shared := &rtp.Header{Version: 2}
	const writes = 200
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range writes {
				shared := *shared // the sequence number differs; the extensions slice is shared
				shared.SequenceNumber = uint16(i)
				if _, err := w.Write(&shared, nil, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range writes {
			_, _ = w.Write(shared, nil, nil) // the very same header, as the responder's buffer holds it
		}
	})
	wg.Wait()
	if shared.Extension || len(shared.Extensions) != 0 {
		t.Errorf("the shared header was changed: %+v", *shared)
	}
	if numbered.Load() == 0 {
		t.Error("no write left numbered")
	}
}

// probeTrack is a subscriber's video track on layer m of a track whose layers send h 1.2
// Mbit/s, m 350 kbit/s and l 120 kbit/s, with an estimate of 510 kbit/s that feedback has
// just confirmed.
func probeTrack(t *testing.T) (*subscription, *downTrack, *track, *[]webrtc.SSRC) {
	tr, plis := testTrack(t, map[string]uint64{"h": 1_200_000, "m": 350_000, "l": 120_000}, "h", "m", "l")
	bw := newBWE(tr.meters)
	bw.active.Store(true)
	bw.est.rate = 510_000
	bw.lastFeedback = bw.now()
	d, _ := testDownTrack(t, tr, "")
	d.bw = bw
	d.want.Store(&choice{rid: "m", auto: true})
	d.sent.bitrate.Store(500_000) // padding included: the probe pads on top of m's 350k
	return &subscription{downs: []*downTrack{d}, bw: bw}, d, tr, plis
}

// TestAdjustProbes: a subscriber whose estimate fits m but not h stays on m, and starts a
// probe toward what h needs (its bitrate within fitUp, with probeHeadroom), in a first step
// of probeStep times its estimate: its writer pads after each frame, with sequence numbers
// that the next frame's continue; while a probe runs or soon after one failed, no other
// starts; once the estimate affords h, the subscriber moves there and asks h for a keyframe.
func TestAdjustProbes(t *testing.T) {
	sub, d, tr, plis := probeTrack(t)
	sub.adjust()
	if d.target() != "m" {
		t.Fatalf("with 510 kbit/s: layer %q, want m", d.target())
	}
	// h needs 1.2M/fitUp = 1.5M, with headroom 1.65M; a first step goes to 1.5 × 510k.
	target := probeStep * 510_000.0
	if rate, until := d.padRate.Load(), d.padUntil.Load(); until < time.Now().UnixNano() ||
		float64(rate) < target-350_000-1 || float64(rate) > target-350_000+1 {
		t.Fatalf("padding %d bit/s until %d, want %.0f for %v", rate, until, target-350_000, probeTime)
	}
	if !sub.bw.est.probe.active || sub.bw.est.probe.target != target {
		t.Fatalf("probe %+v, want one toward %.0f", sub.bw.est.probe, target)
	}

	// A frame of layer m: two packets, then the padding, then the next frame.
	d.current, d.started, d.lastSeq = "m", true, 99
	d.seqOffset = 0
	offer := func(seq uint16, ts uint32, marker bool) {
		p := newPacket()
		p.Header = rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: marker}
		p.Payload = []byte{0x10, 0x01}
		p.hold(1)
		if v := d.offer("m", p, time.Now().UnixNano()); v != accepted {
			t.Fatalf("packet %d: verdict %d", seq, v)
		}
		p.release()
	}
	offer(100, 3000, false)
	offer(101, 3000, true)
	offer(102, 6000, true)
	var seqs []uint16
	pads := 0
	for len(d.queue) > 0 {
		q := <-d.queue
		seqs = append(seqs, q.seq)
		if q.pkt == nil {
			pads++
			continue
		}
		q.pkt.release()
	}
	if pads == 0 {
		t.Fatalf("no padding after a frame during a probe")
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("sequence numbers with padding: %v", seqs)
		}
	}

	// No second probe while this one runs, nor right after it failed.
	sub.bw.est.probe.active = false
	sub.bw.nextProbe = sub.bw.now() + time.Second
	d.padUntil.Store(0)
	sub.adjust()
	if d.padUntil.Load() != 0 {
		t.Fatalf("a probe began before the next one was due")
	}

	// The estimate affords h: the subscriber moves, and h is asked for a keyframe.
	sub.bw.est.rate = 1_600_000
	sub.adjust()
	if d.target() != "h" {
		t.Fatalf("with 1.6 Mbit/s: layer %q, want h", d.target())
	}
	if len(*plis) != 1 || (*plis)[0] != tr.layers[0].ssrc {
		t.Fatalf("keyframe requests %v, want one for h", *plis)
	}
}

// TestAdjustFallbacks: without transport-cc feedback (or once it has stopped for
// twccStale) the REMB picks the layer, and no probe runs; without either, the subscriber
// gets the best layer; what audio sends is taken off the estimate before video gets its
// share.
func TestAdjustFallbacks(t *testing.T) {
	sub, d, _, _ := probeTrack(t)
	sub.bw.active.Store(false)
	sub.bw.lastFeedback = 0
	sub.bw.remb.Store(200_000)
	sub.adjust()
	if d.target() != "l" || d.padUntil.Load() != 0 {
		t.Fatalf("REMB of 200 kbit/s: layer %q, padding until %d; want l and no probe", d.target(), d.padUntil.Load())
	}
	sub.bw.remb.Store(0)
	sub.adjust()
	if d.target() != "h" {
		t.Fatalf("no estimate: layer %q, want h", d.target())
	}
	// Feedback that stopped twccStale ago gives way to the REMB.
	sub.bw.active.Store(true)
	sub.bw.lastFeedback = sub.bw.now() - twccStale - time.Millisecond
	sub.bw.remb.Store(200_000)
	if e := sub.bw.estimate(); e != 200_000 {
		t.Fatalf("with transport-cc feedback stopped: estimate %d, want the REMB's 200000", e)
	}
	sub.bw.lastFeedback = sub.bw.now()
	if e := sub.bw.estimate(); e != 510_000 {
		t.Fatalf("with transport-cc feedback flowing: estimate %d, want transport-cc's 510000", e)
	}
	sub.bw.active.Store(false)
	sub.bw.lastFeedback = 0
	sub.bw.remb.Store(0)

	// 450 kbit/s with 100 kbit/s of audio leaves 350 for video: m needs 350/0.9.
	audioTrack, _ := testTrack(t, nil, "")
	audioTrack.kind = webrtc.RTPCodecTypeAudio
	audio, _ := testDownTrack(t, audioTrack, "")
	audio.sent.bitrate.Store(100_000)
	sub.downs = append(sub.downs, audio)
	sub.bw.remb.Store(450_000)
	sub.adjust()
	if d.target() != "l" || sub.bw.share.Load() != 350_000 {
		t.Fatalf("450 kbit/s with 100 of audio: video share %d, layer %q; want 350000 and l", sub.bw.share.Load(), d.target())
	}
}

// TestSubscriberNegotiatesTransportCC: a subscriber's answer offers transport-cc feedback
// and the transport-wide sequence number extension, beside REMB; a publisher's API does too
// (its feedback goes the other way), which is what it was before.
func TestSubscriberNegotiatesTransportCC(t *testing.T) {
	client := func() *webrtc.PeerConnection {
		m := &webrtc.MediaEngine{}
		if err := m.RegisterDefaultCodecs(); err != nil {
			t.Fatal(err)
		}
		ir := &interceptor.Registry{}
		if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
			t.Fatal(err)
		}
		pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		return pc
	}
	viewer := client()
	if _, err := viewer.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := viewer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newBWE(newMeters(metrics.NewSet(), &SFU{}))
	api, err := newAPI(webrtc.SettingEngine{}, false, codecs, b)
	if err != nil {
		t.Fatal(err)
	}
	sfu, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sfu.Close() })
	if err := sfu.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	local, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sfu.AddTrack(local); err != nil {
		t.Fatal(err)
	}
	answer, err := sfu.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" transport-cc", " goog-remb", "transport-wide-cc-extensions-01"} {
		if !strings.Contains(answer.SDP, want) {
			t.Errorf("the answer has no %q:\n%s", want, answer.SDP)
		}
	}
}

// TestPaddingBelowResponder: a probe's padding packet goes out through the stream's
// numbering writer, under pion's NACK responder (so it is never sent again): with the
// stream's SSRC and payload type, padSize bytes of padding, a transport-wide number, and
// nothing written to the local track.
func TestPaddingBelowResponder(t *testing.T) {
	tr, _ := testTrack(t, nil, "")
	bw := newBWE(tr.meters)
	d, sink := testDownTrack(t, tr, "")
	d.bw = bw
	next := &capture{}
	(&twccStamper{b: bw}).BindLocalStream(&interceptor.StreamInfo{SSRC: 1234, PayloadType: 96,
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
			{URI: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", ID: 5}}}, next)
	d.ssrc = 1234
	d.sendPadding(queued{seq: 77, ts: 9000})
	h := next.header
	if next.writes != 1 || !h.Padding || h.PaddingSize != padSize || h.SequenceNumber != 77 || h.Timestamp != 9000 ||
		h.SSRC != 1234 || h.PayloadType != 96 || len(h.GetExtension(5)) != 2 {
		t.Fatalf("padding left as %+v (%d writes)", h, next.writes)
	}
	if n := sink.written.Load(); n != 0 {
		t.Errorf("padding went through the local track (%d writes): pion's NACK responder would keep it", n)
	}
	if got := d.sent.bytes.Load(); got != padBytes {
		t.Errorf("%d bytes of padding counted as sent, want %d", got, padBytes)
	}
	d.ssrc = 99 // a stream that is not numbered: no padding
	d.sendPadding(queued{seq: 78})
	if next.writes != 1 {
		t.Errorf("padding went out on a stream without transport-cc")
	}
}
