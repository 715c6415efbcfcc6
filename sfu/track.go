package sfu

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// keyframeInterval throttles keyframe requests per layer: every subscriber that joins or
// switches asks for one, and a publisher flooded with PLIs sends nothing but keyframes.
const keyframeInterval = 500 * time.Millisecond

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

// pick chooses the layer for a subscriber: the requested rid if the track has it; else
// with automatic choice the best layer whose bitrate fits the estimate (0: no estimate yet,
// take the best), falling back to the lowest.
func (t *track) pick(requested string, estimate uint64) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.layers) == 0 {
		return requested
	}
	for _, l := range t.layers {
		if requested != "" && l.rid == requested {
			return l.rid
		}
	}
	if requested != "" || estimate == 0 {
		return t.layers[0].rid
	}
	for _, l := range t.layers {
		if l.rate.bps() <= estimate*9/10 {
			return l.rid
		}
	}
	return t.layers[len(t.layers)-1].rid
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
	downs := *t.downs.Load()
	p.hold(len(downs))
	var nAccepted, nDropped int
	keyframeWanted := false
	for _, d := range downs {
		switch d.offer(l.rid, p, now) {
		case accepted:
			nAccepted++
		case dropped:
			nDropped++
		case waiting:
			keyframeWanted = true
		}
	}
	p.releaseN(len(downs) - nAccepted)
	if keyframeWanted {
		// A request can be lost, or fall within the interval of another subscriber's that
		// the publisher already answered: ask again until the keyframe comes.
		t.requestKeyframe(l, now)
	}
	t.meters.forwarded(nAccepted, size)
	t.meters.dropped(nDropped)
}

// keyframe asks the publisher for a keyframe on layer rid, at most once per
// keyframeInterval.
func (t *track) keyframe(rid string) {
	t.mu.Lock()
	var l *layer
	for _, c := range t.layers {
		if c.rid == rid {
			l = c
		}
	}
	t.mu.Unlock()
	if l != nil {
		t.requestKeyframe(l, time.Now().UnixNano())
	}
}

// requestKeyframe sends a keyframe request for layer l at now (unix nanoseconds), unless
// one went less than keyframeInterval ago.
func (t *track) requestKeyframe(l *layer, now int64) {
	if t.kind != webrtc.RTPCodecTypeVideo {
		return
	}
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
