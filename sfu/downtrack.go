package sfu

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// queueLen bounds a subscriber's queue: about two seconds of 2 Mbit/s video, enough for a
// keyframe burst, and a bound on what a stuck subscriber holds (packets and their age).
const queueLen = 512

// choice is the layer a subscriber wants, and whether it follows its bandwidth estimate.
// One immutable value, swapped whole: a pin and an automatic move cannot interleave.
type choice struct {
	rid  string
	auto bool
}

// queued is a packet waiting for a subscriber's writer, with the sequence number and
// timestamp it goes out with: the packet is shared, these are the subscriber's own.
type queued struct {
	pkt *packet
	seq uint16
	ts  uint32
}

// verdict is what a downTrack did with a packet offered to it.
type verdict int

const (
	skipped verdict = iota // not the layer followed
	waiting                // the layer wanted, but no keyframe to start or switch at yet
	accepted
	dropped // the queue was full
)

// downTrack is one track as one subscriber receives it: it follows one layer of the
// publisher's track at a time, switching only at a keyframe of the new layer, and rewrites
// sequence numbers and timestamps so the subscriber sees one continuous stream.
//
// The publisher's read loops only decide and queue (offer); the writer goroutine (run)
// does the sending (pion's interceptors, SRTP, the socket), so a slow subscriber delays
// no one but itself, and loses packets once its queue is full.
type downTrack struct {
	track *track
	local *webrtc.TrackLocalStaticRTP
	path  *sendPath // nil: never corked

	want     atomic.Pointer[choice]
	estimate atomic.Uint64 // the subscriber's bandwidth estimate (REMB), bits/s
	live     atomic.Bool   // the subscriber's connection is up: a keyframe sent before is lost
	sent     rate          // what the writer sent

	mu        sync.Mutex // offer runs on the read loop of each layer
	current   string     // the layer being forwarded
	started   bool
	lastSeq   uint16
	lastTS    uint32
	lastAt    int64 // unix nanoseconds of the last packet queued
	seqOffset uint16
	tsOffset  uint32
	queue     chan queued // closed by stop, under mu
	stopped   atomic.Bool // set under mu; the writer reads it without

	out rtp.Packet // the writer's: pion copies what it writes
}

func newDownTrack(t *track, local *webrtc.TrackLocalStaticRTP, requested string, path *sendPath) *downTrack {
	d := &downTrack{track: t, local: local, path: path, queue: make(chan queued, queueLen)}
	d.want.Store(&choice{rid: t.pick(requested, 0), auto: requested == ""})
	return d
}

// target is the layer wanted now.
func (d *downTrack) target() string { return d.want.Load().rid }

// pin makes the subscriber follow layer rid, or its estimate again when rid is "".
func (d *downTrack) pin(rid string) {
	d.change(d.want.Swap(&choice{rid: d.track.pick(rid, d.estimate.Load()), auto: rid == ""}))
}

// follow moves an automatic subscriber to the layer its estimate affords; a pin made in
// the meantime wins.
func (d *downTrack) follow() {
	old := d.want.Load()
	if !old.auto {
		return
	}
	next := &choice{rid: d.track.pick("", d.estimate.Load()), auto: true}
	if next.rid != old.rid && d.want.CompareAndSwap(old, next) {
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
// the caller took for it. The layer switch and the renumbering are decided here, in
// arrival order across layers; they take effect only for a packet the queue took, so a
// keyframe lost to a full queue is waited for again.
func (d *downTrack) offer(rid string, p *packet, now int64) verdict {
	d.mu.Lock()
	defer d.mu.Unlock()
	switched := rid != d.current || !d.started
	if d.stopped.Load() || !d.live.Load() || (switched && rid != d.target()) {
		return skipped
	}
	if switched && !isKeyframe(d.track.codec.MimeType, p.Payload) {
		return waiting
	}
	seqOffset, tsOffset := d.seqOffset, d.tsOffset
	if switched {
		seqOffset, tsOffset = d.offsets(p, now)
	}
	q := queued{pkt: p, seq: p.SequenceNumber + seqOffset, ts: p.Timestamp + tsOffset}
	select {
	case d.queue <- q:
	default:
		return dropped
	}
	if switched {
		d.current, d.started, d.seqOffset, d.tsOffset = rid, true, seqOffset, tsOffset
	}
	if switched || int16(q.seq-d.lastSeq) > 0 {
		d.lastSeq, d.lastTS, d.lastAt = q.seq, q.ts, now
	}
	return accepted
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

// run is the writer: it sends what offer queued until stop, then gives back what is left.
// A burst (a video frame's packets) goes out corked: in one system call.
func (d *downTrack) run() {
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

// deliver sends q unless the downTrack has stopped, and gives back its hold on the packet.
func (d *downTrack) deliver(q queued) {
	if !d.stopped.Load() {
		d.send(q)
	}
	q.pkt.release()
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

// forwarding is the layer being forwarded ("" before the first packet, and without
// simulcast), and whether the subscriber pinned the layer it wants.
func (d *downTrack) forwarding() (rid string, pinned bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current, !d.want.Load().auto
}
