package sfu

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// bwe is the bandwidth estimate toward one subscriber: its connection's transport-wide
// congestion control (the SFU numbers every packet it sends, the subscriber reports their
// arrival, the estimator reads the path's queue from it), or, for a subscriber that did not
// negotiate transport-cc, the REMB it sends. It also runs the probes that find out whether a
// better layer fits (see estimator).
//
// The per-packet part is the history (written by the writers, read by the feedback); it
// takes no lock and allocates nothing. Feedback, a few times a second, takes mu.
type bwe struct {
	hist   sendHistory
	active atomic.Bool   // a track negotiated transport-cc
	share  atomic.Uint64 // what each video track may use, bits/s; 0: no limit known
	remb   atomic.Uint64 // the subscriber's last REMB, bits/s
	meters *meters
	// padders are the numbering writers of the subscriber's streams by SSRC, copied on
	// write (at a stream's binding): a probe's padding goes through them, apart from the
	// downTrack's history, so that a lost padding packet is never sent again.
	padders atomic.Pointer[map[uint32]*stampWriter]
	bindMu  sync.Mutex

	mu           sync.Mutex
	est          estimator
	results      []pktResult // scratch for one feedback
	ref          int64       // unwrapped reference time of the last feedback, 64 ms units
	refSet       bool
	highest      uint16 // the last sequence number feedback reported
	highestSet   bool
	lastFeedback time.Duration // since hist.base; 0: none yet
	nextProbe    time.Duration
	probeGap     time.Duration
	prober       *downTrack // pads while a probe runs
	decreasedAt  time.Duration
	climbing     bool // the last probe succeeded
}

// Probe pacing: the first probe may start probeFirstGap after the estimate last fell; each
// failure doubles the wait up to probeMaxGap; after a success the next step may follow
// probeNextGap later. A probe aims at probeHeadroom times the rate the next layer needs,
// but at most probeStep times what the estimate or the subscriber's media rate is now
// (probeStepUp right after a success): a probe that fails overloads the path a little, not
// by the whole gap between two layers, and once one succeeded the next ones climb faster.
// twccStale is how long without feedback before the REMB, if any, takes over again.
const (
	probeFirstGap = 2 * time.Second
	probeMaxGap   = 3 * time.Second
	probeNextGap  = 500 * time.Millisecond
	probeHeadroom = 1.1
	probeStep     = 1.5
	probeStepUp   = 2.0
	twccStale     = 2 * time.Second
)

func newBWE(m *meters) *bwe {
	b := &bwe{meters: m, probeGap: probeFirstGap}
	b.hist.base = time.Now()
	return b
}

// now is the time on the history's clock.
func (b *bwe) now() time.Duration { return time.Since(b.hist.base) }

// estimate is the subscriber's bandwidth in bits/s: transport-cc's while its feedback
// flows, else the last REMB; 0 when neither knows a limit.
func (b *bwe) estimate() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.estimateLocked(b.now())
}

func (b *bwe) estimateLocked(now time.Duration) uint64 {
	if b.lastFeedback > 0 && now-b.lastFeedback < twccStale {
		return b.est.estimate()
	}
	return b.remb.Load()
}

// onFeedback takes one transport-cc feedback packet, as it came; false if it is malformed
// (what could be read of it is taken).
func (b *bwe) onFeedback(p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	results, ok := b.parse(p, now)
	if len(results) == 0 {
		return ok
	}
	b.lastFeedback = now
	outcome := b.est.update(now, results)
	if b.est.decreased && b.est.lastDecrease != b.decreasedAt {
		b.decreasedAt = b.est.lastDecrease
		b.nextProbe = max(b.nextProbe, now+probeFirstGap)
	}
	if !b.est.probing(now) && b.prober != nil {
		b.prober.padUntil.Store(0)
		b.prober = nil
	}
	switch outcome {
	case probeSucceeded:
		b.meters.probes[probeSucceeded].Inc()
		b.probeGap = probeFirstGap
		b.nextProbe = now + probeNextGap
		b.climbing = true
	case probeFailed:
		b.meters.probes[probeFailed].Inc()
		b.climbing = false
		b.nextProbe = now + b.probeGap
		b.probeGap = min(2*b.probeGap, probeMaxGap)
	}
	return ok
}

// tryProbe starts a probe by d toward need bits/s in all (or a step toward it from base),
// d padding what media, sending at media bits/s, leaves to it, if the estimate is settled and
// no probe ran too recently.
func (b *bwe) tryProbe(d *downTrack, need, base, media float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.lastFeedback == 0 || now-b.lastFeedback > twccStale || b.est.rate <= 0 || b.est.probe.active ||
		now < b.nextProbe || b.est.use != usageNormal || b.est.loss >= lossLow {
		return false
	}
	step := probeStep
	if b.climbing {
		step = probeStepUp
	}
	target := min(need*probeHeadroom, step*base)
	padRate := target - media
	if padRate <= 0 {
		return false
	}
	b.est.startProbe(now, target)
	b.prober = d
	d.padRate.Store(uint64(padRate))
	d.padUntil.Store(time.Now().Add(probeTime).UnixNano())
	return true
}

// parse turns a feedback packet into results for the packets the history still holds and no
// earlier feedback reported, in sending order; false if the packet is malformed (the results
// are then those before the fault).
func (b *bwe) parse(p []byte, now time.Duration) ([]pktResult, bool) {
	fb, ok := readTCC(p)
	if !ok {
		return nil, false
	}
	ref := int64(fb.ref)
	if b.refSet {
		ref = b.ref + int64(int32(uint32(ref-b.ref)<<8)>>8) // the 24-bit difference, signed
	}
	b.ref, b.refSet = ref, true
	arrival := time.Duration(ref) * 64 * time.Millisecond
	res := b.results[:0]
	seq, left, deltas := fb.base, int(fb.count), fb.deltas
	status := func(sym uint16) {
		if left == 0 {
			return
		}
		left--
		s := seq
		seq++
		var r pktResult
		switch sym {
		case rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketReceivedLargeDelta:
			delta, n := tccDelta(deltas, sym)
			if n == 0 {
				left, ok = 0, false // fewer deltas than received packets
				return
			}
			deltas = deltas[n:]
			arrival += delta
			r.received, r.arrived = true, arrival
		case rtcp.TypeTCCPacketNotReceived:
		default:
			return // received without a time: tells nothing
		}
		if b.highestSet && int16(s-b.highest) <= 0 {
			return // reported already
		}
		sent, size, retx, found := b.hist.lookup(s, now)
		if !found {
			return
		}
		b.highest, b.highestSet = s, true
		r.sent, r.size, r.retx = sent, size, retx
		res = append(res, r)
	}
	for c := fb.chunks; len(c) >= 2; c = c[2:] {
		walkChunk(binary.BigEndian.Uint16(c), left, status)
	}
	b.results = res
	return res, ok
}

// tccFeedback is a transport-cc feedback packet (draft-holmer-rmcat-transport-wide-cc-
// extensions-01, section 3.1) read in place: pion's TransportLayerCC.Unmarshal allocates a
// value for each chunk and each packet's arrival.
type tccFeedback struct {
	base, count uint16 // the first packet's transport-wide sequence number, the packets reported
	ref         uint32 // reference time, 64 ms units, 24 bits
	chunks      []byte // the packet status chunks, 2 bytes each
	deltas      []byte // the receive deltas (and any padding after them)
}

// tccFixedLen is the feedback header, the SSRCs and the fixed fields before the chunks.
const tccFixedLen = 20

// readTCC finds the parts of feedback packet p; false if its chunks do not fit in it.
func readTCC(p []byte) (tccFeedback, bool) {
	if len(p) < tccFixedLen {
		return tccFeedback{}, false
	}
	fb := tccFeedback{base: binary.BigEndian.Uint16(p[12:]), count: binary.BigEndian.Uint16(p[14:]),
		ref: uint32(p[16])<<16 | uint32(p[17])<<8 | uint32(p[18])}
	end := tccFixedLen
	for left := int(fb.count); left > 0; end += 2 {
		if end+2 > len(p) {
			return tccFeedback{}, false
		}
		left -= min(chunkLen(binary.BigEndian.Uint16(p[end:])), left)
	}
	fb.chunks, fb.deltas = p[tccFixedLen:end], p[end:]
	return fb, true
}

// A packet status chunk is a run (its top bit 0: a 2-bit symbol, a 13-bit length) or a
// status vector (top bit 1; the next bit says 14 one-bit symbols, not received or received
// with a small delta, or 7 two-bit ones).
const (
	chunkVector = 1 << 15
	chunkTwoBit = 1 << 14
)

// chunkLen is the number of packets chunk c reports.
func chunkLen(c uint16) int {
	switch {
	case c&chunkVector == 0:
		return int(c & 0x1FFF)
	case c&chunkTwoBit == 0:
		return 14
	default:
		return 7
	}
}

// walkChunk calls status with each of the first (at most) left symbols of chunk c.
func walkChunk(c uint16, left int, status func(sym uint16)) {
	switch {
	case c&chunkVector == 0:
		for range min(int(c&0x1FFF), left) {
			status(c >> 13 & 3)
		}
	case c&chunkTwoBit == 0:
		for i := range min(14, left) {
			status(c >> (13 - i) & 1)
		}
	default:
		for i := range min(7, left) {
			status(c >> (12 - 2*i) & 3)
		}
	}
}

// tccDelta reads the receive delta of a packet with symbol sym from the front of b: a small
// one is an unsigned byte, a large one a signed 16-bit number, both in 250 µs units. n is the
// bytes it took, 0 if b is too short.
func tccDelta(b []byte, sym uint16) (delta time.Duration, n int) {
	const unit = 250 * time.Microsecond
	if sym == rtcp.TypeTCCPacketReceivedSmallDelta {
		if len(b) < 1 {
			return 0, 0
		}
		return time.Duration(b[0]) * unit, 1
	}
	if len(b) < 2 {
		return 0, 0
	}
	return time.Duration(int16(binary.BigEndian.Uint16(b))) * unit, 2
}

// sendHistory records each packet sent to one subscriber: its transport-wide sequence
// number, size and send time, in a ring of atomic words, so that the writers of the
// subscriber's tracks (retransmissions too) record without a lock and the feedback
// reads without one.
type sendHistory struct {
	base  time.Time
	next  atomic.Uint32
	slots [histLen]atomic.Uint64
}

// A slot holds the sequence number (16 bits), whether the packet was a retransmission (1
// bit), the size (11 bits, capped) and the send time in microseconds since base (36 bits: it
// wraps after 19 hours, and is read back relative to now). histLen packets is several
// seconds of a video call; feedback comes within a second.
const (
	histLen      = 4096
	histTimeBits = 36
	histTimeMask = 1<<histTimeBits - 1
	histSizeMax  = 1<<11 - 1
	histRetx     = 1 << (histTimeBits + 11)
	histMaxAge   = 5 * time.Second
)

// record numbers a packet of size bytes sent at now, a retransmission or not, and returns its
// sequence number.
func (h *sendHistory) record(size int, now time.Time, retx bool) uint16 {
	seq := uint16(h.next.Add(1) - 1)
	us := uint64(now.Sub(h.base) / time.Microsecond)
	v := uint64(seq)<<48 | uint64(min(size, histSizeMax))<<histTimeBits | us&histTimeMask
	if retx {
		v |= histRetx
	}
	h.slots[seq%histLen].Store(v)
	return seq
}

// lookup returns the send time (since base) and size of packet seq, and whether it was a
// retransmission, if the ring still holds it; now is the time of the lookup.
func (h *sendHistory) lookup(seq uint16, now time.Duration) (time.Duration, int, bool, bool) {
	v := h.slots[seq%histLen].Load()
	if v == 0 || uint16(v>>48) != seq {
		return 0, 0, false, false
	}
	age := time.Duration((uint64(now/time.Microsecond)-v)&histTimeMask) * time.Microsecond
	if age > histMaxAge {
		return 0, 0, false, false
	}
	return now - age, int(v >> histTimeBits & histSizeMax), v&histRetx != 0, true
}

// twccFactory makes, for one subscriber's connection, the interceptor that numbers its
// packets. It is the innermost interceptor: retransmissions (downTrack.resend) pass
// it too, get numbers of their own, and are capped there (maxResends).
type twccFactory struct{ b *bwe }

func (f twccFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &twccStamper{b: f.b}, nil
}

type twccStamper struct {
	interceptor.NoOp
	b *bwe
}

// BindLocalStream numbers the stream's packets if it negotiated transport-cc, and caps its
// retransmissions either way.
func (s *twccStamper) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	w := &stampWriter{next: writer, b: s.b, ssrc: uint32(info.SSRC), pt: info.PayloadType}
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
			w.id = uint8(e.ID)
			s.b.addPadder(w)
			s.b.active.Store(true)
		}
	}
	return w
}

// addPadder makes w the writer of padding for its SSRC.
func (b *bwe) addPadder(w *stampWriter) {
	b.bindMu.Lock()
	defer b.bindMu.Unlock()
	m := map[uint32]*stampWriter{w.ssrc: w}
	if old := b.padders.Load(); old != nil {
		for k, v := range *old {
			if k != w.ssrc {
				m[k] = v
			}
		}
	}
	b.padders.Store(&m)
}

// padder is the writer of padding for the stream ssrc; nil if it is not numbered.
func (b *bwe) padder(ssrc uint32) *stampWriter {
	if b == nil {
		return nil
	}
	m := b.padders.Load()
	if m == nil {
		return nil
	}
	return (*m)[ssrc]
}

type stampWriter struct {
	next interceptor.RTPWriter
	id   uint8 // of the transport-cc extension; 0: not negotiated, packets are not numbered
	b    *bwe
	ssrc uint32 // the stream's, and its payload type, for padding
	pt   uint8
	// highest is the newest RTP sequence number written, with bit 16 set once there is
	// one: a packet not newer is a retransmission (a downTrack's resend, or a late packet
	// of the publisher's). resends counts the retransmissions of each of the last
	// resendSlots sequence numbers (seq<<16 | count).
	highest atomic.Uint32
	resends [resendSlots]atomic.Uint32
}

// A packet is sent again at most maxResends times: a receiver that keeps asking for one
// (pion's asks every 100 ms until it arrives, and drops one older than its SRTP replay
// window of 64 packets when it does) would otherwise be sent it over and over.
const (
	maxResends  = 3
	resendSlots = 1024
)

// retransmission reports whether a packet numbered seq was sent before (or is older than one
// that was), noting it as the newest if not.
func (w *stampWriter) retransmission(seq uint16) bool {
	for {
		v := w.highest.Load()
		if v != 0 && int16(seq-uint16(v)) <= 0 {
			return true
		}
		if w.highest.CompareAndSwap(v, 1<<16|uint32(seq)) {
			return false
		}
	}
}

// resend counts a retransmission of seq; false once it was sent again maxResends times.
func (w *stampWriter) resend(seq uint16) bool {
	slot := &w.resends[int(seq)%resendSlots]
	for {
		v := slot.Load()
		n := uint32(1)
		if uint16(v>>16) == seq {
			n = v&0xFFFF + 1
		}
		if n > maxResends {
			return false
		}
		if slot.CompareAndSwap(v, uint32(seq)<<16|n) {
			return true
		}
	}
}

// pad sends a padding packet with the header h (its SSRC and payload type set here).
func (w *stampWriter) pad(h *rtp.Header) error {
	h.SSRC, h.PayloadType = w.ssrc, w.pt
	_, err := w.Write(h, nil, nil)
	return err
}

// stamp is the header one write sends: a copy of the caller's with the transport-wide
// sequence number added. Pooled, so a write allocates nothing (the caller's header has no
// room for the extension); a copy, so that the caller's header is left as it was: it may be
// shared with other writers.
type stamp struct {
	h    rtp.Header
	exts []rtp.Extension
	seq  [2]byte
}

var stamps = sync.Pool{New: func() any { return &stamp{exts: make([]rtp.Extension, 0, 4)} }}

// Write sends the packet with its transport-wide sequence number added, and records it; a
// retransmission past maxResends is dropped and counted instead.
func (w *stampWriter) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	retx := w.retransmission(h.SequenceNumber)
	if retx {
		if !w.resend(h.SequenceNumber) {
			w.b.meters.retransmissions[false].Inc()
			return 0, nil
		}
		w.b.meters.retransmissions[true].Inc()
	}
	if w.id == 0 {
		return w.next.Write(h, payload, a)
	}
	st := stamps.Get().(*stamp)
	defer stamps.Put(st)
	st.h = *h
	st.h.Extensions = append(st.exts[:0], h.Extensions...) // within the stamp's capacity
	var err error
	if w.id > 14 {
		err = st.h.SetExtensionWithProfile(w.id, st.seq[:], rtp.ExtensionProfileTwoByte)
	} else {
		err = st.h.SetExtension(w.id, st.seq[:])
	}
	if err != nil { // an extension the header cannot carry: sent unnumbered
		return w.next.Write(h, payload, a)
	}
	st.exts = st.h.Extensions[:0]
	size := st.h.MarshalSize() + len(payload) + int(st.h.PaddingSize)
	seq := w.b.hist.record(size, time.Now(), retx)
	st.seq = [2]byte{byte(seq >> 8), byte(seq)}
	return w.next.Write(&st.h, payload, a)
}

// adjust shares the subscriber's estimate among its tracks (what its audio sends is taken
// off, the rest split evenly among its video tracks), moves its automatic video tracks to the
// layers that fit, and starts a probe when a better layer than one of them might fit.
func (sub *subscription) adjust() {
	est := sub.bw.estimate()
	var audio, media uint64 // what the subscriber is sent, padding aside
	video := 0
	for _, d := range sub.downs {
		if d.video {
			video++
			media += d.track.layerRate(d.forwardingLayer())
		} else {
			audio += d.sent.bps()
			media += d.sent.bps()
		}
	}
	var share uint64
	if est > 0 && video > 0 {
		share = max(est-min(audio, est), 1) / uint64(video)
	}
	sub.bw.share.Store(share)
	for _, d := range sub.downs {
		if d.video {
			d.follow()
		}
	}
	if share == 0 || !sub.bw.active.Load() {
		return
	}
	for _, d := range sub.downs {
		if !d.video || !d.auto() {
			continue
		}
		_, bps, ok := d.track.nextUp(d.target())
		if !ok {
			continue
		}
		need := float64(bps)/fitUp*float64(video) + float64(audio)
		if float64(est) >= need {
			continue // it fits: the switch is asked for
		}
		if sub.bw.tryProbe(d, need, float64(max(est, media)), float64(media)) {
			return
		}
	}
}
