package sfu

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// queueLen bounds a subscriber's queue: about two seconds of 2 Mbit/s video, enough for a
// keyframe burst, and a bound on what a stuck subscriber holds (packets and their age).
// Once a video track's queue holds congestedLen packets, its next frame is dropped whole
// (see offer): the last quarter is kept for the frame being queued, and for the keyframe
// that ends the drop.
const (
	queueLen     = 512
	congestedLen = queueLen * 3 / 4
)

// Padding for probes (see bwe): packets of padSize padding bytes (the most RTP can carry),
// at most padPerFrame after a frame, never past congestedLen. padBytes is one on the wire
// as the estimator counts it: header, transport-cc extension, padding.
const (
	padSize     = 255
	padBytes    = 12 + 8 + padSize
	padPerFrame = 32
)

// choice is the layer a subscriber wants, and whether it follows its bandwidth estimate.
// One immutable value, swapped whole: a pin and an automatic move cannot interleave.
type choice struct {
	rid  string
	auto bool
}

// queued is a packet waiting for a subscriber's writer, with the sequence number and
// timestamp it goes out with: the packet is shared, these are the subscriber's own. A nil
// packet is padding, or, with resend, the subscriber's NACK of packet seq.
type queued struct {
	pkt    *packet
	seq    uint16
	ts     uint32
	resend bool
}

// historyLen is how many of the last packets a video subscriber was sent can be sent again
// when it NACKs them, by its sequence number: as many as pion's NACK responder keeps, a few
// seconds of video, far more than a round trip.
const historyLen = 1024

// verdict is what a downTrack did with a packet offered to it.
type verdict int

const (
	skipped      verdict = iota // not the layer followed, or no keyframe to switch at yet
	accepted                    // queued
	dropped                     // not sent: the queue was full, or its frame is dropped
	droppedFrame                // dropped, and the first packet of a frame dropped
)

// downTrack is one track as one subscriber receives it: it follows one layer of the
// publisher's track at a time, switching only at a keyframe of the new layer, and rewrites
// sequence numbers and timestamps so the subscriber sees one continuous stream.
//
// The publisher's read loops only decide and queue (offer); the writer goroutine (run)
// does the sending (pion's interceptors, SRTP, the socket), so a slow subscriber delays
// no one but itself. A slow subscriber of video loses whole frames, never a part of one it
// could decode: once its queue is congested, the next frame is dropped, and every frame
// after it until a keyframe (which it asks for), since those refer to the one it lost; a
// frame that no other refers to (VP8's non-reference frames, H.264's nal_ref_idc 0) is
// dropped alone. The dropped packets leave no gap in its numbering, so it does not ask
// for them again.
type downTrack struct {
	track *track
	local *webrtc.TrackLocalStaticRTP
	path  *sendPath // nil: never corked
	bw    *bwe      // the subscriber's estimate; nil: none known
	video bool
	ssrc  uint32 // the subscriber's stream, set before the writer starts

	want atomic.Pointer[choice]
	live atomic.Bool // the subscriber's connection is up: a keyframe sent before is lost
	sent rate        // what the writer sent

	// A probe (see bwe.tryProbe) has the writer send padRate bits/s of padding until
	// padUntil (unix nanoseconds).
	padRate  atomic.Uint64
	padUntil atomic.Int64

	mu        sync.Mutex // offer runs on the read loop of each layer
	current   string     // the layer being forwarded
	started   bool
	lastSeq   uint16
	lastTS    uint32
	lastAt    int64 // unix nanoseconds of the last packet queued
	seqOffset uint16
	tsOffset  uint32
	frameTS   uint32      // the publisher's timestamp of the last frame seen on the layer
	dropping  bool        // frameTS's frame is being dropped
	waitKey   bool        // frames are dropped until a keyframe
	padAt     int64       // unix nanoseconds of the last padding
	padCredit float64     // bytes of padding due
	queue     chan queued // closed by stop, under mu
	stopped   atomic.Bool // set under mu; the writer reads it without

	out rtp.Packet // the writer's: pion copies what it writes
	// history is the writer's: the packets a video subscriber was sent lately, each slot
	// keeping the hold its queue entry had, so that a NACK is answered from the packet its
	// subscribers share rather than from a copy per subscriber (pion's NACK responder copies
	// every packet written into a buffer of its own: 1,024 copies per subscriber). nil for
	// audio, which negotiates no NACK.
	history *[historyLen]queued
}

func newDownTrack(t *track, local *webrtc.TrackLocalStaticRTP, requested string, path *sendPath, bw *bwe) *downTrack {
	d := &downTrack{track: t, local: local, path: path, bw: bw, video: t.kind == webrtc.RTPCodecTypeVideo,
		queue: make(chan queued, queueLen)}
	if d.video {
		d.history = new([historyLen]queued)
	}
	d.want.Store(&choice{rid: t.pick(requested, d.budget(), ""), auto: requested == ""})
	return d
}

// target is the layer wanted now.
func (d *downTrack) target() string { return d.want.Load().rid }

// auto reports whether the subscriber's estimate chooses the layer.
func (d *downTrack) auto() bool { return d.want.Load().auto }

// budget is what this track may use of the subscriber's bandwidth, bits/s; 0: no limit known.
func (d *downTrack) budget() uint64 {
	if d.bw == nil {
		return 0
	}
	return d.bw.share.Load()
}

// pin makes the subscriber follow layer rid, or its estimate again when rid is "".
func (d *downTrack) pin(rid string) {
	d.change(d.want.Swap(&choice{rid: d.track.pick(rid, d.budget(), d.target()), auto: rid == ""}))
}

// follow moves an automatic subscriber to the layer its budget affords; a pin made in the
// meantime wins.
func (d *downTrack) follow() {
	old := d.want.Load()
	if !old.auto {
		return
	}
	rid := d.track.pick("", d.budget(), old.rid)
	if rid != old.rid && d.want.CompareAndSwap(old, &choice{rid: rid, auto: true}) {
		d.change(old)
	}
}

// change asks for a keyframe of the layer now wanted, if it differs from the old choice:
// the switch happens there.
func (d *downTrack) change(old *choice) {
	if rid := d.target(); rid != old.rid {
		d.track.meters.layerSwitches.Inc()
		d.track.keyframe(rid)
	}
}

// goLive starts forwarding, once the subscriber's connection is up, at a keyframe it asks
// for now.
func (d *downTrack) goLive() {
	d.live.Store(true)
	d.track.keyframe(d.target())
}

// start runs the writer, once; false if the downTrack was stopped first (its subscriber
// left before it was added to its track).
func (d *downTrack) start() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped.Load() {
		return false
	}
	go d.run()
	return true
}

// stop ends the writer once it has given back the packets still queued; it takes no new
// ones. A writer stuck in a write ends when the write returns (the subscriber's
// connection closes).
func (d *downTrack) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopped.Swap(true) {
		close(d.queue)
	}
}

// offer queues p, a packet of layer rid that arrived at now (unix nanoseconds), for the
// writer if this downTrack follows that layer; the queue then owns one of the holds on p
// the caller took for it. The layer switch, the dropping of frames and the renumbering are
// decided here, in arrival order across layers; a switch takes effect only at a packet the
// queue took, so a keyframe lost to a full queue is waited for (and asked for) again.
func (d *downTrack) offer(rid string, p *packet, now int64) verdict {
	v, key, ask := d.decide(rid, p, now)
	if ask { // asked outside mu: the track's lock is taken before mu elsewhere
		d.track.keyframe(key)
	}
	return v
}

// decide is offer under mu; it also returns the layer to ask a keyframe of, if any.
func (d *downTrack) decide(rid string, p *packet, now int64) (verdict, string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped.Load() || !d.live.Load() {
		return skipped, "", false
	}
	switched := rid != d.current || !d.started
	seqOffset, tsOffset := d.seqOffset, d.tsOffset
	if switched {
		if rid != d.target() || !isKeyframe(d.track.codec.MimeType, p.Payload) {
			return skipped, "", false
		}
		seqOffset, tsOffset = d.offsets(p, now)
	} else if d.video {
		newFrame := p.Timestamp != d.frameTS
		d.frameTS = p.Timestamp
		switch {
		case d.waitKey:
			if !isKeyframe(d.track.codec.MimeType, p.Payload) {
				return d.drop(newFrame), "", false
			}
		case d.dropping && !newFrame:
			return dropped, "", false
		case newFrame && len(d.queue) >= congestedLen:
			d.dropping = true
			if droppable(d.track.codec.MimeType, p.Payload) {
				return droppedFrame, "", false
			}
			d.waitKey = true
			return droppedFrame, d.target(), true
		}
		if d.dropping { // the first packet sent after dropped ones: they leave no gap
			seqOffset = d.lastSeq + 1 - p.SequenceNumber
		}
		d.dropping = false
	}
	q := queued{pkt: p, seq: p.SequenceNumber + seqOffset, ts: p.Timestamp + tsOffset}
	select {
	case d.queue <- q:
	default:
		if switched {
			return dropped, rid, true // the keyframe to switch at is lost: another one
		}
		if !d.video {
			return dropped, "", false
		}
		// The frame is cut: what is queued of it goes, the rest and every frame until a
		// keyframe do not (the packets after this one are dropped as waitKey says).
		d.dropping, d.waitKey = true, true
		return droppedFrame, d.target(), true
	}
	if switched {
		d.current, d.started = rid, true
		d.frameTS, d.dropping = p.Timestamp, false
	}
	d.seqOffset, d.tsOffset, d.waitKey = seqOffset, tsOffset, false
	if switched || int16(q.seq-d.lastSeq) > 0 {
		d.lastSeq, d.lastTS, d.lastAt = q.seq, q.ts, now
	}
	if d.video && p.Marker {
		d.pad(now)
	}
	return accepted, "", false
}

// drop is the verdict on a packet of a frame dropped while waiting for a keyframe.
func (d *downTrack) drop(newFrame bool) verdict {
	d.dropping = true
	if newFrame {
		return droppedFrame
	}
	return dropped
}

// pad queues the padding a running probe wants after a frame: padRate for the time since
// the last padding, in packets that the subscriber's numbering makes room for.
func (d *downTrack) pad(now int64) {
	until := d.padUntil.Load()
	if until == 0 || now >= until {
		d.padAt, d.padCredit = 0, 0
		return
	}
	elapsed := time.Duration(now - d.padAt)
	if d.padAt == 0 || elapsed > 100*time.Millisecond || elapsed < 0 {
		elapsed = 33 * time.Millisecond // a frame's time at 30 fps
	}
	d.padAt = now
	d.padCredit += float64(d.padRate.Load()) / 8 * elapsed.Seconds()
	n := min(int(d.padCredit/padBytes), padPerFrame, congestedLen-len(d.queue))
	for range n {
		select {
		case d.queue <- queued{seq: d.lastSeq + 1, ts: d.lastTS}:
			d.lastSeq++
			d.seqOffset++
			d.padCredit -= padBytes
		default:
			return
		}
	}
	d.padCredit = min(d.padCredit, padPerFrame*padBytes)
}

// offsets are the renumbering of a layer that starts at packet p: its numbering continues
// where the previous layer stopped, and its timestamps advance by the time that passed
// since the last packet, so the subscriber's jitter buffer sees no jump. The first layer
// keeps the publisher's numbers.
func (d *downTrack) offsets(p *packet, now int64) (uint16, uint32) {
	if !d.started {
		return d.seqOffset, d.tsOffset
	}
	elapsed := max(time.Duration(now-d.lastAt), time.Millisecond)
	ticks := uint32(uint64(elapsed) * uint64(d.track.codec.ClockRate) / uint64(time.Second))
	return d.lastSeq + 1 - p.SequenceNumber, d.lastTS + max(ticks, 1) - p.Timestamp
}

// run is the writer: it sends what offer queued until stop, then gives back what is left,
// and its history. A burst (a video frame's packets) goes out corked: in one system call.
func (d *downTrack) run() {
	defer d.forget()
	for q := range d.queue {
		var dst netip.AddrPort
		held := false
		if len(d.queue) > 0 {
			dst, held = d.path.hold()
		}
		d.deliver(q)
		open := d.drain(corkBatch - 1)
		if held {
			d.path.release(dst)
		}
		if !open {
			return
		}
	}
}

// drain delivers up to n more queued packets without waiting; false once the queue has
// closed and is empty.
func (d *downTrack) drain(n int) bool {
	for range n {
		select {
		case q, ok := <-d.queue:
			if !ok {
				return false
			}
			d.deliver(q)
		default:
			return true
		}
	}
	return true
}

// deliver sends q unless the downTrack has stopped, and keeps its hold on the packet in
// the history, or gives it back.
func (d *downTrack) deliver(q queued) {
	stopped := d.stopped.Load()
	switch {
	case q.resend:
		if !stopped {
			d.resend(q.seq)
		}
	case q.pkt == nil:
		if !stopped {
			d.sendPadding(q)
		}
	case stopped:
		q.pkt.release()
	default:
		d.send(q)
		d.keep(q)
	}
}

// keep puts a packet just sent into the history, giving back the one it replaces; without
// a history (audio) it gives back the packet.
func (d *downTrack) keep(q queued) {
	if d.history == nil {
		q.pkt.release()
		return
	}
	slot := &d.history[q.seq%historyLen]
	if slot.pkt != nil {
		slot.pkt.release()
	}
	*slot = q
}

// resend sends packet seq again if the history still holds it. A sequence number that
// padding or a dropped frame's renumbering left behind, or one too old, is not sent: pion's
// responder did not send those either.
func (d *downTrack) resend(seq uint16) {
	if d.history == nil {
		return
	}
	if q := d.history[seq%historyLen]; q.pkt != nil && q.seq == seq {
		d.send(q)
	}
}

// forget gives back the packets of the history, once the writer ends.
func (d *downTrack) forget() {
	if d.history == nil {
		return
	}
	for i := range d.history {
		if q := d.history[i]; q.pkt != nil {
			q.pkt.release()
		}
		d.history[i] = queued{}
	}
}

// nacked queues the packets the subscriber's NACK asks for, to be sent again by the
// writer: it alone reads and writes the history, so a NACK takes no lock of its. Resends
// fill the queue no further than congestedLen, as padding does: past it the next frame
// would be cut and a keyframe asked for, for a burst loss's NACK alone. What does not fit
// is dropped, and counted, each sequence number: the subscriber is congested, and what it
// asks for would come too late anyway.
func (d *downTrack) nacked(nack *rtcp.TransportLayerNack) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped.Load() || d.history == nil {
		return
	}
	for _, pair := range nack.Nacks {
		pair.Range(func(seq uint16) bool {
			if len(d.queue) < congestedLen {
				select {
				case d.queue <- queued{seq: seq, resend: true}:
					return true
				default:
				}
			}
			d.track.meters.retransmissions[false].Inc()
			return true
		})
	}
}

// sendPadding writes a padding packet (no payload, padSize bytes of padding) through the
// stream's numbering writer, and keeps it out of the history: the subscriber may ask for a
// lost one again, but it is not sent again (a storm of retransmitted padding would fill the
// link the probe found full).
func (d *downTrack) sendPadding(q queued) {
	w := d.bw.padder(d.ssrc)
	if w == nil {
		return
	}
	d.out.Header = rtp.Header{Version: 2, Padding: true, PaddingSize: padSize, SequenceNumber: q.seq, Timestamp: q.ts}
	if w.pad(&d.out.Header) == nil {
		d.sent.add(padBytes)
	}
}

// send writes one queued packet with this subscriber's numbers. The publisher's header
// extensions go: their IDs (mid, rid...) are the publisher's negotiation, not this
// subscriber's.
func (d *downTrack) send(q queued) {
	d.out.Header, d.out.Payload = q.pkt.Header, q.pkt.Payload
	d.out.Extension, d.out.Extensions, d.out.ExtensionProfile = false, nil, 0
	d.out.SequenceNumber, d.out.Timestamp = q.seq, q.ts
	if d.local.WriteRTP(&d.out) == nil {
		d.sent.add(d.out.MarshalSize())
	}
}

// forwardingLayer is the layer being forwarded, or, before the first packet, the one
// wanted.
func (d *downTrack) forwardingLayer() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started {
		return d.target()
	}
	return d.current
}

// forwarding is the layer being forwarded ("" before the first packet, and without
// simulcast), and whether the subscriber pinned the layer it wants.
func (d *downTrack) forwarding() (rid string, pinned bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current, !d.want.Load().auto
}
