package sfu

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// keyframeInterval paces keyframe requests per layer: every subscriber that joins, switches
// or recovers from dropped frames wants a keyframe, and a publisher flooded with PLIs sends
// nothing but keyframes. A request within the interval is not lost: the layer remembers that
// a keyframe is wanted, and asks again once the interval has passed (on the layer's next
// packet), until a keyframe arrives.
const keyframeInterval = 500 * time.Millisecond

// Layer choice: a layer at or below the one a subscriber is on fits while its bitrate is
// within fitStay of the subscriber's budget; a better one must fit within fitUp, so that
// a subscriber does not move up on an estimate it would leave again at the next keyframe.
const (
	fitStay = 0.9
	fitUp   = 0.8
)

// track is one media track of a publisher: audio, or video with one or more simulcast
// layers. Every packet of a layer is offered to each downTrack, which queues it for its
// subscriber if it follows that layer. The downTrack list is copied on write, so the
// per-packet path takes no lock of the track's.
type track struct {
	id    string
	kind  webrtc.RTPCodecType
	codec webrtc.RTPCodecParameters

	mu     sync.Mutex
	layers []*layer // best first

	downs      atomic.Pointer[[]*downTrack]
	keyframeTo func(ssrc webrtc.SSRC) // sends a PLI for a layer to the publisher
	meters     *meters
}

// layer is one simulcast encoding of a track ("" when the publisher does not simulcast).
type layer struct {
	rid     string
	ssrc    webrtc.SSRC
	rate    rate         // received
	lastPLI atomic.Int64 // unix nanoseconds
	wantKey atomic.Bool  // a keyframe was asked for and has not arrived
}

// rate counts the bytes of a flow and turns them into its bitrate at each measure.
type rate struct {
	bytes   atomic.Uint64 // since the last measure
	bitrate atomic.Uint64 // bits per second over the last measurement
}

func (r *rate) add(n int) { r.bytes.Add(uint64(n)) }

func (r *rate) measure(elapsed time.Duration) {
	r.bitrate.Store(r.bytes.Swap(0) * 8 * uint64(time.Second) / uint64(max(elapsed, time.Millisecond)))
}

func (r *rate) bps() uint64 { return r.bitrate.Load() }

// newTrack is the track remote starts, named id for its subscribers.
func newTrack(remote *webrtc.TrackRemote, id string, keyframeTo func(webrtc.SSRC), m *meters) *track {
	t := &track{id: id, kind: remote.Kind(), codec: remote.Codec(), keyframeTo: keyframeTo, meters: m}
	t.downs.Store(&[]*downTrack{})
	return t
}

// addLayer registers the layer of remote and returns it.
func (t *track) addLayer(remote *webrtc.TrackRemote) *layer {
	l := &layer{rid: remote.RID(), ssrc: remote.SSRC()}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.layers = append(t.layers, l)
	slices.SortStableFunc(t.layers, func(a, b *layer) int { return layerRank(b.rid) - layerRank(a.rid) })
	return l
}

// layerRank orders simulcast layers by quality: the rids browsers and Ferry's demo use.
func layerRank(rid string) int {
	switch rid {
	case "h", "f", "hi", "high":
		return 3
	case "m", "mid":
		return 2
	case "l", "q", "lo", "low":
		return 1
	}
	return 0
}

// rids returns the layers' rids, best first.
func (t *track) rids() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.layers))
	for _, l := range t.layers {
		out = append(out, l.rid)
	}
	return out
}

// pick chooses the layer for a subscriber now on layer current: the requested rid if the
// track has it; else with automatic choice the best layer whose bitrate fits the budget (0:
// no limit known, take the best), falling back to the lowest. A layer that sends nothing (a
// publisher may pause its better layers) is passed over while another sends.
func (t *track) pick(requested string, budget uint64, current string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.layers) == 0 {
		return requested
	}
	live := 0
	for _, l := range t.layers {
		if requested != "" && l.rid == requested {
			return l.rid
		}
		if l.rate.bps() > 0 {
			live++
		}
	}
	skip := func(l *layer) bool { return live > 0 && l.rate.bps() == 0 }
	best, lowest := -1, -1
	for i, l := range t.layers {
		if !skip(l) {
			if best < 0 {
				best = i
			}
			lowest = i
		}
	}
	if requested != "" || budget == 0 {
		return t.layers[best].rid
	}
	on := slices.IndexFunc(t.layers, func(l *layer) bool { return l.rid == current })
	for i, l := range t.layers {
		if skip(l) {
			continue
		}
		share := fitStay
		if on >= 0 && i < on {
			share = fitUp
		}
		if float64(l.rate.bps()) <= share*float64(budget) {
			return l.rid
		}
	}
	return t.layers[lowest].rid
}

// layerRate is the bitrate layer rid is received at; 0 if the track has no such layer.
func (t *track) layerRate(rid string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.layers {
		if l.rid == rid {
			return l.rate.bps()
		}
	}
	return 0
}

// nextUp is the live layer just better than rid, and its bitrate; false if there is none.
func (t *track) nextUp(rid string) (string, uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var up *layer
	for _, l := range t.layers {
		if l.rid == rid {
			if up == nil {
				return "", 0, false
			}
			return up.rid, up.rate.bps(), true
		}
		if l.rate.bps() > 0 {
			up = l
		}
	}
	return "", 0, false
}

// receive forwards the packet the read loop of layer l read into p.buf[:n], and gives up
// the read loop's hold on it.
func (t *track) receive(l *layer, p *packet, n int) {
	if p.Unmarshal(p.buf[:n]) == nil {
		t.forward(l, p, n)
	}
	p.release()
}

// forward offers one packet of layer l to every downTrack: it is queued for each
// subscriber that follows the layer, not copied. Each downTrack is given a hold on the
// packet up front, and the unused holds are given back together: two atomic operations
// per packet instead of one per subscriber. The shared counters, too, are updated once per
// packet.
func (t *track) forward(l *layer, p *packet, size int) {
	l.rate.add(size)
	now := time.Now().UnixNano()
	if l.wantKey.Load() {
		t.keyframeDue(l, p, now)
	}
	downs := *t.downs.Load()
	p.hold(len(downs))
	var nAccepted, nDropped, nFrames int
	for _, d := range downs {
		switch d.offer(l.rid, p, now) {
		case accepted:
			nAccepted++
		case droppedFrame:
			nFrames++
			nDropped++
		case dropped:
			nDropped++
		}
	}
	p.releaseN(len(downs) - nAccepted)
	t.meters.forwarded(nAccepted, size)
	t.meters.dropped(nDropped, nFrames)
}

// keyframeDue runs for each packet of a layer whose keyframe is wanted: a keyframe ends the
// wait, anything else asks again once keyframeInterval has passed since the last request.
func (t *track) keyframeDue(l *layer, p *packet, now int64) {
	if isKeyframe(t.codec.MimeType, p.Payload) {
		l.wantKey.Store(false)
		return
	}
	t.requestKeyframe(l, now)
}

// keyframe asks the publisher for a keyframe on layer rid: at once, or when
// keyframeInterval has passed since the layer's last request. A request can be lost, or
// fall within the interval of another subscriber's that the publisher already answered:
// the layer asks again until a keyframe comes (keyframeDue).
func (t *track) keyframe(rid string) {
	if t.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	t.mu.Lock()
	var l *layer
	for _, c := range t.layers {
		if c.rid == rid {
			l = c
		}
	}
	t.mu.Unlock()
	if l != nil {
		l.wantKey.Store(true)
		t.requestKeyframe(l, time.Now().UnixNano())
	}
}

// requestKeyframe sends a PLI for layer l at now (unix nanoseconds) unless one went less
// than keyframeInterval ago.
func (t *track) requestKeyframe(l *layer, now int64) {
	last := l.lastPLI.Load()
	if now-last < int64(keyframeInterval) || !l.lastPLI.CompareAndSwap(last, now) {
		return
	}
	t.meters.keyframeRequests.Inc()
	t.keyframeTo(l.ssrc)
}

// addDown starts d's writer and offers it the track's packets, unless d was removed
// already: a subscriber that ended meanwhile never starts.
func (t *track) addDown(d *downTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !d.start() {
		return
	}
	downs := append(slices.Clone(*t.downs.Load()), d)
	t.downs.Store(&downs)
}

// removeDown stops d's writer and offers it no more packets.
func (t *track) removeDown(d *downTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d.stop()
	downs := slices.DeleteFunc(slices.Clone(*t.downs.Load()), func(x *downTrack) bool { return x == d })
	t.downs.Store(&downs)
}

// measure updates the bitrate of each layer and of each subscriber's copy from the bytes
// since the last call, and moves automatic subscribers to the layer their estimate affords.
func (t *track) measure(elapsed time.Duration) {
	t.mu.Lock()
	for _, l := range t.layers {
		l.rate.measure(elapsed)
	}
	t.mu.Unlock()
	for _, d := range *t.downs.Load() {
		d.sent.measure(elapsed)
	}
	t.repick()
}

// bitrate is what the publisher sends of the track: all its layers.
func (t *track) bitrate() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sum uint64
	for _, l := range t.layers {
		sum += l.rate.bps()
	}
	return sum
}

// repick moves automatic subscribers to the layer their estimate affords.
func (t *track) repick() {
	for _, d := range *t.downs.Load() {
		d.follow()
	}
}
