package sfu

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
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
	d := newDownTrack(tr, local, requested, nil)
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
// read into. The stuck one's queue fills, and what does not fit is dropped and counted.
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
	// The stuck writer holds one packet in its write, its queue the next queueLen.
	if drops, want := tr.meters.drops.Get(), uint64(sent-queueLen-1); drops != want {
		t.Errorf("%d drops counted, want %d", drops, want)
	}
	if got, want := tr.meters.packets.Get(), uint64(2*sent+queueLen+1); got != want {
		t.Errorf("%d forwarded packets counted, want %d", got, want)
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
	tr.downs.Store(&downs) // no writers: the loop below drains the queues
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
