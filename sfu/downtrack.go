package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// choice is the layer a subscriber wants, and whether it follows its bandwidth estimate.
// One immutable value, swapped whole: a pin and an automatic move cannot interleave.
type choice struct {
	rid  string
	auto bool
}

// downTrack is one track as one subscriber receives it: it follows one layer of the
// publisher's track at a time, switching only at a keyframe of the new layer, and rewrites
// sequence numbers and timestamps so the subscriber sees one continuous stream.
type downTrack struct {
	track *track
	local *webrtc.TrackLocalStaticRTP

	want     atomic.Pointer[choice]
	estimate atomic.Uint64 // the subscriber's bandwidth estimate (REMB), bits/s

	mu        sync.Mutex // write runs on the read loop of each layer
	current   string     // the layer being forwarded
	started   bool
	lastSeq   uint16
	lastTS    uint32
	lastAt    int64 // unix nanoseconds of the last packet written
	seqOffset uint16
	tsOffset  uint32
	out       rtp.Packet // reused: pion copies what it writes
}

func newDownTrack(t *track, local *webrtc.TrackLocalStaticRTP, requested string) *downTrack {
	d := &downTrack{track: t, local: local}
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

// write forwards p, a packet of layer rid that arrived at now (unix nanoseconds), if this
// downTrack follows that layer; it reports whether it did.
func (d *downTrack) write(rid string, p *rtp.Packet, now int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	switched := rid != d.current || !d.started
	if switched {
		if rid != d.target() || !isKeyframe(d.track.codec.MimeType, p.Payload) {
			return false
		}
		d.switchTo(rid, p, now)
	}
	// The packet is shared by every subscriber: rewrite a copy of its header. The
	// publisher's header extensions go: their IDs (mid, rid...) are the publisher's
	// negotiation, not this subscriber's.
	d.out.Header, d.out.Payload = p.Header, p.Payload
	d.out.Extension, d.out.Extensions, d.out.ExtensionProfile = false, nil, 0
	d.out.SequenceNumber = p.SequenceNumber + d.seqOffset
	d.out.Timestamp = p.Timestamp + d.tsOffset
	if switched || int16(d.out.SequenceNumber-d.lastSeq) > 0 {
		d.lastSeq, d.lastTS, d.lastAt = d.out.SequenceNumber, d.out.Timestamp, now
	}
	return d.local.WriteRTP(&d.out) == nil
}

// switchTo starts forwarding layer rid at packet p. Its numbering continues where the
// previous layer stopped, and its timestamps advance by the time that passed since the
// last packet, so the subscriber's jitter buffer sees no jump.
func (d *downTrack) switchTo(rid string, p *rtp.Packet, now int64) {
	if d.started {
		elapsed := max(time.Duration(now-d.lastAt), time.Millisecond)
		ticks := uint32(uint64(elapsed) * uint64(d.track.codec.ClockRate) / uint64(time.Second))
		d.seqOffset = d.lastSeq + 1 - p.SequenceNumber
		d.tsOffset = d.lastTS + max(ticks, 1) - p.Timestamp
	}
	d.current, d.started = rid, true
}
