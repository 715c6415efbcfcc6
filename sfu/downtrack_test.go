package sfu

import (
	"encoding/binary"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sink stands in for a subscriber's connection under its local track (interceptors, SRTP,
// socket): it counts and keeps what is written; while gate is open, writes wait for it
// to close, as a stuck socket would make them.
type sink struct {
	gate    chan struct{}
	written atomic.Int64
	mu      sync.Mutex
	header  rtp.Header // the last one written
	payload *byte      // where the last payload written lies
	seqs    []uint16
	keep    bool // keep every sequence number
}

func (s *sink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	s.header, s.payload = *h, &payload[0]
	if s.keep {
		s.seqs = append(s.seqs, h.SequenceNumber)
	}
	s.mu.Unlock()
	s.written.Add(1)
	return 0, nil
}

func (s *sink) Write(b []byte) (int, error) { return len(b), nil }

func (s *sink) last() rtp.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.header
}

func (s *sink) lastPayload() *byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.payload
}

// sinkBinding is what pion hands a local track when a subscriber's connection binds it.
type sinkBinding struct {
	sink  *sink
	codec webrtc.RTPCodecParameters
}

func (b sinkBinding) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{b.codec}
}
func (sinkBinding) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (sinkBinding) SSRC() webrtc.SSRC                                      { return 1234 }
func (sinkBinding) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (sinkBinding) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (b sinkBinding) WriteStream() webrtc.TrackLocalWriter                 { return b.sink }
func (sinkBinding) ID() string                                             { return "sink" }
func (sinkBinding) RTCPReader() interceptor.RTCPReader                     { return nil }

// testDownTrack is a subscriber of tr on layer requested whose local track writes to a
// sink.
func testDownTrack(t testing.TB, tr *track, requested string) (*downTrack, *sink) {
	t.Helper()
	local, err := webrtc.NewTrackLocalStaticRTP(tr.codec.RTPCodecCapability, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	if _, err := local.Bind(sinkBinding{sink: s, codec: webrtc.RTPCodecParameters{
		RTPCodecCapability: tr.codec.RTPCodecCapability, PayloadType: 96}}); err != nil {
		t.Fatal(err)
	}
	d := newDownTrack(tr, local, requested, nil, nil)
	d.live.Store(true)
	return d, s
}

// publish is one packet of a publisher's read loop: the raw packet read into a pooled
// buffer, then handed to the track. It returns the packet, for a test to check that it
// goes back to the pool.
func publish(tr *track, raw []byte) *packet {
	p := newPacket()
	n := copy(p.buf[:], raw)
	tr.receive(tr.layers[0], p, n)
	return p
}

// rtpHeaderSize is the header of rawPacket's packets: no CSRC, no extension.
const rtpHeaderSize = 12

// rawPacket is a marshalled VP8 packet of about the size a 2 Mbit/s stream sends.
func rawPacket(t testing.TB, seq uint16, key bool) []byte {
	t.Helper()
	frame := byte(0x01)
	if key {
		frame = 0x00
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 100},
		Payload: append([]byte{0x10, frame}, make([]byte, 1100)...)}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// waitUntil polls cond for up to five seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStuckSubscriber: a subscriber whose writes never return does not hold up the
// publisher's read loop or the other subscribers: they get every packet, in order, and
// not a copy: the payload written is the one in the buffer the publisher's packet was
// read into. The stuck one's queue fills, and it loses whole frames, counted.
// When the subscribers leave, their writers end and every packet goes back to the pool.
func TestStuckSubscriber(t *testing.T) {
	tr, _ := testTrack(t, nil, "")
	stuck, stuckSink := testDownTrack(t, tr, "")
	stuckSink.gate = make(chan struct{})
	var healthy []*sink
	downs := []*downTrack{stuck}
	for range 2 {
		d, s := testDownTrack(t, tr, "")
		s.keep = true
		healthy = append(healthy, s)
		downs = append(downs, d)
	}
	for _, d := range downs {
		tr.addDown(d)
	}

	const sent = queueLen + 100
	var pkts []*packet
	for i := range sent {
		p := publish(tr, rawPacket(t, uint16(60000+i), i == 0))
		pkts = append(pkts, p)
		for _, s := range healthy {
			waitUntil(t, "a healthy subscriber to get packet "+strconv.Itoa(i), func() bool { return s.written.Load() == int64(i+1) })
			if s.lastPayload() != &p.buf[rtpHeaderSize] {
				t.Fatalf("packet %d: the payload written is a copy", i)
			}
		}
	}
	for _, s := range healthy {
		for i, seq := range s.seqs {
			if seq != uint16(60000+i) {
				t.Fatalf("a healthy subscriber's packet %d has seq %d, want %d", i, seq, 60000+i)
			}
		}
	}
	// The stuck writer holds one packet in its write, its queue the next congestedLen; then
	// its queue is congested: each packet here is a frame of its own, dropped whole, and
	// the first one dropped asks for the keyframe the rest wait for.
	if drops, want := tr.meters.drops.Get(), uint64(sent-congestedLen-1); drops != want {
		t.Errorf("%d drops counted, want %d", drops, want)
	}
	if frames, want := tr.meters.framesDropped.Get(), uint64(sent-congestedLen-1); frames != want {
		t.Errorf("%d dropped frames counted, want %d", frames, want)
	}
	if got, want := tr.meters.packets.Get(), uint64(2*sent+congestedLen+1); got != want {
		t.Errorf("%d forwarded packets counted, want %d", got, want)
	}
	if n := tr.meters.keyframeRequests.Get(); n != 1 {
		t.Errorf("%d keyframe requests, want 1", n)
	}

	for _, d := range downs {
		tr.removeDown(d)
	}
	close(stuckSink.gate) // the stuck connection closes: its write returns
	waitUntil(t, "the writers to end", func() bool { return writers() == 0 })
	if n := stuckSink.written.Load(); n != 1 {
		t.Errorf("the stuck subscriber wrote %d packets after it left, want only the one it was stuck on", n-1)
	}
	for i, p := range pkts { // the pool may have handed one packet out again and again
		if refs := p.refs.Load(); refs != 0 {
			t.Fatalf("packet %d is still held %d times", i, refs)
		}
	}
}

// TestNACKFromHistory: a subscriber's NACK is answered by its writer from the packets
// the subscribers share: the packet sent again is the publisher's buffer, not a copy, with
// the subscriber's own numbers. A sequence number the history does not hold is not sent,
// and once the subscriber leaves every packet the history held goes back to the pool.
func TestNACKFromHistory(t *testing.T) {
	tr, _ := testTrack(t, nil, "")
	d, s := testDownTrack(t, tr, "")
	s.keep = true
	other, _ := testDownTrack(t, tr, "")
	tr.addDown(d)
	tr.addDown(other)
	var pkts []*packet
	for i := range 5 {
		pkts = append(pkts, publish(tr, rawPacket(t, uint16(100+i), i == 0)))
	}
	waitUntil(t, "the packets to be sent", func() bool { return s.written.Load() == 5 })

	d.nacked(&rtcp.TransportLayerNack{MediaSSRC: 1234, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{101, 103, 900, 1124})})
	waitUntil(t, "the NACKed packets to be sent again", func() bool { return s.written.Load() == 7 })
	s.mu.Lock()
	seqs := slices.Clone(s.seqs)
	s.mu.Unlock()
	if want := []uint16{100, 101, 102, 103, 104, 101, 103}; !slices.Equal(seqs, want) {
		t.Fatalf("sent %v, want %v", seqs, want)
	}
	if s.lastPayload() != &pkts[3].buf[rtpHeaderSize] {
		t.Error("the packet sent again is a copy")
	}
	if n := tr.meters.retransmissions[false].Get(); n != 0 {
		t.Errorf("%d NACKed packets dropped", n)
	}

	tr.removeDown(d)
	tr.removeDown(other)
	waitUntil(t, "the writers to end", func() bool { return writers() == 0 })
	if n := s.written.Load(); n != 7 {
		t.Errorf("%d packets sent, want 7: packets 900 and 1124 were never sent", n)
	}
	for i, p := range pkts {
		if refs := p.refs.Load(); refs != 0 {
			t.Fatalf("packet %d is still held %d times", i, refs)
		}
	}
}

// TestNACKQueueFull: a NACK's resends fill the subscriber's queue no further than
// congestedLen (past it, decide would cut the next frame); the sequence numbers left over
// are each counted as not sent again, in every pair of the NACK.
func TestNACKQueueFull(t *testing.T) {
	tr, _ := testTrack(t, nil, "")
	d, _ := testDownTrack(t, tr, "") // no writer: nothing leaves the queue
	seqs := make([]uint16, queueLen+40)
	for i := range seqs {
		seqs[i] = uint16(i)
	}
	d.nacked(&rtcp.TransportLayerNack{MediaSSRC: 1234, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)})
	if n, dropped := len(d.queue), tr.meters.retransmissions[false].Get(); n != congestedLen || dropped != uint64(len(seqs)-congestedLen) {
		t.Fatalf("%d queued, %d counted as dropped; want %d and %d", n, dropped, congestedLen, len(seqs)-congestedLen)
	}
}

// writers counts the downTrack writer goroutines running.
func writers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "sfu.(*downTrack).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestDownTrackRemovedFirst: a subscriber that leaves before its downTrack is added
// starts no writer.
func TestDownTrackRemovedFirst(t *testing.T) {
	tr, _ := testTrack(t, nil, "")
	d, _ := testDownTrack(t, tr, "")
	tr.removeDown(d)
	tr.addDown(d)
	if n, w := len(*tr.downs.Load()), writers(); n != 0 || w != 0 {
		t.Fatalf("%d downTracks, %d writers: a removed downTrack was started", n, w)
	}
}

// benchTrack is a track with ten subscribers whose connections discard what they get.
func benchTrack(b *testing.B) (*track, []*downTrack) {
	tr, _ := testTrack(b, nil, "")
	var downs []*downTrack
	for range 10 {
		d, _ := testDownTrack(b, tr, "")
		downs = append(downs, d)
	}
	return tr, downs
}

// BenchmarkForward is the per-packet work of the SFU for one publisher packet and ten
// subscribers: the read loop's part (parse, queue for each subscriber) and the ten
// writers' part (renumber, pion's track write), all on one goroutine, so it measures the
// work and not the scheduling.
func BenchmarkForward(b *testing.B) {
	tr, downs := benchTrack(b)
	tr.downs.Store(&downs) // no writers: forwardLoop drains the queues
	forwardLoop(b, tr, downs)
}

// forwardLoop publishes a packet on tr per op and has each of downs send it, on this
// goroutine.
func forwardLoop(b *testing.B, tr *track, downs []*downTrack) {
	raw := rawPacket(b, 1, true)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		raw[2], raw[3] = byte(i>>8), byte(i)
		publish(tr, raw)
		for _, d := range downs {
			q := <-d.queue
			d.send(q)
			q.pkt.release()
		}
	}
}

// BenchmarkForwardWriters is the same with the ten writer goroutines running: the cost of
// handing packets over between goroutines. The publisher waits while a queue is more than
// half full, so nothing is dropped; drops/op says if something was anyway.
func BenchmarkForwardWriters(b *testing.B) {
	tr, downs := benchTrack(b)
	for _, d := range downs {
		tr.addDown(d)
	}
	raw := rawPacket(b, 1, true)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		raw[2], raw[3] = byte(i>>8), byte(i)
		publish(tr, raw)
		for _, d := range downs {
			for len(d.queue) > queueLen/2 {
				runtime.Gosched()
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(tr.meters.drops.Get())/float64(b.N), "drops/op")
	for _, d := range downs {
		tr.removeDown(d)
	}
}

// frames feeds a track's only layer with VP8 frames, a packet at a time, as its read loop
// would; the subscribers' queues are drained by the test, not by writers.
type frames struct {
	t   *testing.T
	tr  *track
	seq uint16
	ts  uint32
}

// frame publishes one frame of n packets: a keyframe, or an interframe that others refer
// to unless nonRef; the last packet has the marker bit.
func (f *frames) frame(n int, key, nonRef bool) {
	f.t.Helper()
	f.ts += 3000
	for i := range n {
		p := newPacket()
		desc := byte(0x00)
		if i == 0 {
			desc = 0x10 // S: the frame starts here
		}
		if nonRef {
			desc |= 0x20 // N: no frame refers to this one
		}
		kind := byte(0x01)
		if key {
			kind = 0x00
		}
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: f.seq, Timestamp: f.ts,
			SSRC: 100, Marker: i == n-1}, Payload: append([]byte{desc, kind}, make([]byte, 100)...)}
		raw, err := pkt.Marshal()
		if err != nil {
			f.t.Fatal(err)
		}
		f.tr.receive(f.tr.layers[0], p, copy(p.buf[:], raw))
		f.seq++
	}
}

// drain takes what d's queue holds, as its writer would, and returns the sequence numbers
// and the publisher's timestamps of the packets.
func drain(d *downTrack) (seqs []uint16, ts []uint32) {
	for len(d.queue) > 0 {
		q := <-d.queue
		seqs = append(seqs, q.seq)
		ts = append(ts, q.pkt.Timestamp)
		q.pkt.release()
	}
	return seqs, ts
}

// TestSlowSubscriberDropsFrames: a subscriber whose queue is congested loses whole frames,
// never part of one: the frame that finds the queue congested is dropped, and every frame
// after it up to a keyframe, which it asks for; a non-reference frame is dropped alone; a
// frame that overflows the queue midway is cut and the rest waits for a keyframe too. The
// packets that do go are numbered without a gap, so the subscriber asks for none of the
// dropped ones. Each drop is counted: packets, and frames. Audio loses single packets.
func TestSlowSubscriberDropsFrames(t *testing.T) {
	tr, plis := testTrack(t, nil, "")
	d, _ := testDownTrack(t, tr, "")
	tr.downs.Store(&[]*downTrack{d})
	f := &frames{t: t, tr: tr, seq: 65000} // the numbers wrap on the way
	var all []uint16
	take := func() []uint32 {
		seqs, ts := drain(d)
		all = append(all, seqs...)
		return ts
	}
	counts := func(wantPackets, wantFrames uint64) {
		t.Helper()
		if p, fr := tr.meters.drops.Get(), tr.meters.framesDropped.Get(); p != wantPackets || fr != wantFrames {
			t.Fatalf("%d packets and %d frames dropped, want %d and %d", p, fr, wantPackets, wantFrames)
		}
	}

	f.frame(3, true, false) // the first keyframe starts the subscriber
	if got := take(); len(got) != 3 {
		t.Fatalf("the first keyframe: %d packets queued, want 3", len(got))
	}
	for range congestedLen { // the writer stalls: the queue reaches congestedLen
		f.frame(1, false, false)
	}
	counts(0, 0)
	f.frame(3, false, false) // dropped whole, and a keyframe asked for
	counts(3, 1)
	if len(*plis) != 1 {
		t.Fatalf("%d keyframe requests, want 1", len(*plis))
	}
	take() // the writer catches up
	f.frame(2, false, false)
	f.frame(1, false, true)
	counts(6, 3) // interframes until the keyframe: they refer to the one lost
	f.frame(4, true, false)
	f.frame(2, false, false)
	if got := take(); len(got) != 6 || got[0] != got[3] || got[4] != got[5] || got[0] == got[4] {
		t.Fatalf("after the drop, the keyframe and the next frame: timestamps %v", got)
	}

	for range congestedLen {
		f.frame(1, false, false)
	}
	f.frame(2, false, true) // a non-reference frame: dropped alone, no keyframe asked for
	counts(8, 4)
	if len(*plis) != 1 {
		t.Fatalf("a non-reference frame dropped asked for a keyframe")
	}
	take()
	f.frame(2, false, false)
	if got := take(); len(got) != 2 {
		t.Fatalf("the frame after a non-reference one dropped: %d packets queued, want 2", len(got))
	}

	for range congestedLen - 1 { // one slot short of congested: the next frame starts
		f.frame(1, false, false)
	}
	f.frame(queueLen-congestedLen+1+4, false, false) // fills the queue, then 4 packets more
	counts(12, 5)
	if !tr.layers[0].wantKey.Load() {
		t.Fatalf("the cut frame asked for no keyframe") // paced: too soon after the last one to send it
	}
	take()
	f.frame(3, false, false)
	counts(15, 6)
	f.frame(1, true, false)
	if got := take(); len(got) != 1 {
		t.Fatalf("the keyframe after a cut frame: %d packets queued, want 1", len(got))
	}
	if tr.layers[0].wantKey.Load() {
		t.Errorf("a keyframe arrived, but one is still wanted")
	}
	for i := 1; i < len(all); i++ {
		if all[i] != all[i-1]+1 {
			t.Fatalf("the subscriber's sequence numbers jump from %d to %d (packet %d)", all[i-1], all[i], i)
		}
	}

	// Audio: a full queue loses the packet that does not fit, and only it.
	at, aplis := testTrack(t, nil, "")
	at.kind, at.codec.MimeType = webrtc.RTPCodecTypeAudio, webrtc.MimeTypeOpus
	a, _ := testDownTrack(t, at, "")
	at.downs.Store(&[]*downTrack{a})
	af := &frames{t: t, tr: at}
	for range queueLen + 2 {
		af.frame(1, false, false)
	}
	seqs, _ := drain(a)
	af.frame(1, false, false)
	more, _ := drain(a)
	if len(seqs) != queueLen || at.meters.drops.Get() != 2 || at.meters.framesDropped.Get() != 0 || len(*aplis) != 0 ||
		len(more) != 1 || more[0] != seqs[len(seqs)-1]+3 {
		t.Fatalf("audio: %d queued, %d dropped (%d frames), %d keyframe requests, then %v after %d",
			len(seqs), at.meters.drops.Get(), at.meters.framesDropped.Get(), len(*aplis), more, seqs[len(seqs)-1])
	}
}

// stampedSink is a subscriber's connection below its local track with transport-cc: the
// numbering writer of its estimate, then nothing.
type stampedSink struct{ w interceptor.RTPWriter }

func (s stampedSink) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	return s.w.Write(h, payload, nil)
}
func (s stampedSink) Write(b []byte) (int, error) { return len(b), nil }

type stampedBinding struct {
	sinkBinding
	w stampedSink
}

func (b stampedBinding) WriteStream() webrtc.TrackLocalWriter { return b.w }

// benchTWCC is a track with n subscribers, each with an estimate of its own that numbers and
// records every packet, as pion's interceptor chain calls it.
func benchTWCC(b *testing.B, n int) (*track, []*downTrack, []*bwe) {
	tr, _ := testTrack(b, nil, "")
	var downs []*downTrack
	var bws []*bwe
	for range n {
		bw := newBWE(tr.meters)
		w := (&twccStamper{b: bw}).BindLocalStream(&interceptor.StreamInfo{SSRC: 1234, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
			{URI: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", ID: 5}}},
			interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { return 0, nil }))
		local, err := webrtc.NewTrackLocalStaticRTP(tr.codec.RTPCodecCapability, "v", "s")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := local.Bind(stampedBinding{sinkBinding: sinkBinding{codec: webrtc.RTPCodecParameters{
			RTPCodecCapability: tr.codec.RTPCodecCapability, PayloadType: 96}}, w: stampedSink{w}}); err != nil {
			b.Fatal(err)
		}
		d := newDownTrack(tr, local, "", nil, bw)
		d.live.Store(true)
		downs = append(downs, d)
		bws = append(bws, bw)
	}
	tr.downs.Store(&downs)
	return tr, downs, bws
}

// BenchmarkForwardTWCC is BenchmarkForward with transport-cc: each of the ten subscribers'
// packets is numbered and recorded for its estimate on the way out.
func BenchmarkForwardTWCC(b *testing.B) {
	tr, downs, _ := benchTWCC(b, 10)
	forwardLoop(b, tr, downs)
}

// BenchmarkForwardParallel forwards on GOMAXPROCS tracks at once, each with ten subscribers
// with transport-cc, while feedback for them is parsed: what the per-packet paths of
// different publishers and subscribers share (nothing but the packet pool and the counters)
// shows as time per packet that grows with the goroutines.
func BenchmarkForwardParallel(b *testing.B) {
	raw := rawPacket(b, 1, true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		tr, downs, bws := benchTWCC(b, 10)
		own := append([]byte(nil), raw...)
		fb := tccRun(b, 10)
		for i := 0; pb.Next(); i++ {
			own[2], own[3] = byte(i>>8), byte(i)
			publish(tr, own)
			for _, d := range downs {
				q := <-d.queue
				d.send(q)
				q.pkt.release()
			}
			if i%10 == 9 { // feedback for the last ten packets, as a receiver sends it
				binary.BigEndian.PutUint16(fb[12:], uint16(i-9))                   // base sequence number
				fb[16], fb[17], fb[18] = byte(i/10>>16), byte(i/10>>8), byte(i/10) // reference time
				bws[i/10%len(bws)].onFeedback(fb)
			}
		}
	})
}

// tccRun is a transport-cc feedback packet reporting n packets from sequence number 0 each
// received 1 ms after the one before.
func tccRun(t testing.TB, n int) []byte {
	fb := &rtcp.TransportLayerCC{PacketStatusCount: uint16(n), PacketChunks: []rtcp.PacketStatusChunk{
		&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: uint16(n)}}}
	for range n {
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 1000})
	}
	return feedback(t, fb)
}
