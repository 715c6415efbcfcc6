package sfu

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// downTrack is one track as one subscriber receives it: it follows one layer of the
// publisher's track at a time, switching only at a keyframe of the new layer, and rewrites
// sequence numbers and timestamps so the subscriber sees one continuous stream.
type downTrack struct {
	track *track
	local *webrtc.TrackLocalStaticRTP
	auto  atomic.Bool // the layer follows the subscriber's bandwidth estimate

	target   atomic.Pointer[string] // the layer wanted
	estimate atomic.Uint64          // the subscriber's bandwidth estimate (REMB), bits/s

	mu        sync.Mutex // write runs on the read loop of each layer
	current   string     // the layer being forwarded
	started   bool
	lastSeq   uint16
	lastTS    uint32
	seqOffset uint16
	tsOffset  uint32
	out       rtp.Packet // reused: pion copies what it writes
}

func newDownTrack(t *track, local *webrtc.TrackLocalStaticRTP, requested string) *downTrack {
	d := &downTrack{track: t, local: local}
	d.auto.Store(requested == "")
	target := t.pick(requested, 0)
	d.target.Store(&target)
	return d
}

// setTarget changes the layer wanted; the switch happens at its next keyframe, which is
// asked for now.
func (d *downTrack) setTarget(rid string) {
	if old := d.target.Swap(&rid); *old != rid {
		d.track.meters.layerSwitches.Inc()
		d.track.keyframe(rid)
	}
}

// write forwards p, a packet of layer rid, if this downTrack follows that layer; it
// reports whether it did.
func (d *downTrack) write(rid string, p *rtp.Packet) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rid != d.current || !d.started {
		if rid != *d.target.Load() || !isKeyframe(d.track.codec.MimeType, p.Payload) {
			return false
		}
		d.switchTo(rid, p)
	}
	// The packet is shared by every subscriber: rewrite a copy of its header.
	d.out.Header, d.out.Payload = p.Header, p.Payload
	d.out.SequenceNumber = p.SequenceNumber + d.seqOffset
	d.out.Timestamp = p.Timestamp + d.tsOffset
	if !d.started || int16(d.out.SequenceNumber-d.lastSeq) > 0 {
		d.lastSeq, d.lastTS = d.out.SequenceNumber, d.out.Timestamp
	}
	return d.local.WriteRTP(&d.out) == nil
}

// switchTo starts forwarding layer rid at packet p: its numbering continues where the
// previous layer stopped.
func (d *downTrack) switchTo(rid string, p *rtp.Packet) {
	if d.started {
		d.seqOffset = d.lastSeq + 1 - p.SequenceNumber
		d.tsOffset = d.lastTS + 1 - p.Timestamp
	}
	d.current, d.started = rid, true
}
