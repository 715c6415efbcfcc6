package sfu

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// readyTimeout bounds how long a stream waits for the first packet of each of its tracks
// before it is announced with the tracks it has.
const readyTimeout = 5 * time.Second

// shortID is how many characters of its id name a stream whose publisher gave it no name:
// enough to tell the streams of a room apart at a glance.
const shortID = 8

// maxName bounds a stream's name, in characters.
const maxName = 64

var errBadName = fmt.Errorf("bad stream name: want at most %d printable characters", maxName)

// checkName accepts a publisher's name for its stream: what viewers are shown of it.
func checkName(name string) error {
	if utf8.RuneCountInString(name) > maxName || !utf8.ValidString(name) ||
		strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return errBadName
	}
	return nil
}

// stream is what one publisher sends: its tracks, and the subscribers watching it.
type stream struct {
	id, room string
	name     string // the publisher's, or a short form of id
	seq      uint64 // start order in the SFU; guarded by SFU.mu
	pc       *webrtc.PeerConnection
	meters   *meters
	expected int // tracks the publisher's offer sends

	mu     sync.Mutex
	tracks []*track
	byRecv map[*webrtc.RTPReceiver]*track
	subs   map[*subscription]struct{}
	ready  chan struct{} // closed once every expected track has a layer, or at readyTimeout
	once   sync.Once
	live   chan struct{} // closed when the first track arrives: the publisher is connected
	gone   chan struct{} // closed when the stream ends
	ended  bool
}

func newStream(id, room, name string, pc *webrtc.PeerConnection, expected int, m *meters) *stream {
	if name == "" {
		name = id[:min(len(id), shortID)]
	}
	st := &stream{id: id, room: room, name: name, pc: pc, meters: m, expected: expected,
		byRecv: map[*webrtc.RTPReceiver]*track{}, subs: map[*subscription]struct{}{}, ready: make(chan struct{}),
		live: make(chan struct{}), gone: make(chan struct{})}
	pc.OnTrack(st.onTrack)
	time.AfterFunc(readyTimeout, st.markReady)
	return st
}

// trackID is the id the stream's subscribers see for a new track: the publisher's (its
// a=msid track id), or one made up when that is empty or another track of the stream has
// it already. RFC 8830 lets a publisher leave the track id out (a=msid:STREAM), and an
// answer with an empty one (a=msid:STREAM followed by a space) is not what a subscriber's
// parser expects. st.mu is held.
func (st *stream) trackID(remote *webrtc.TrackRemote) string {
	id := remote.ID()
	if id == "" || slices.ContainsFunc(st.tracks, func(t *track) bool { return t.id == id }) {
		id = remote.Kind().String() + "-" + newID()[:12]
	}
	return id
}

func (st *stream) markReady() { st.once.Do(func() { close(st.ready) }) }

// onTrack runs for each track, and for each simulcast layer of a track, when its first
// packet arrives.
func (st *stream) onTrack(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	st.mu.Lock()
	t, ok := st.byRecv[receiver]
	if !ok {
		t = newTrack(remote, st.trackID(remote), st.sendPLI, st.meters)
		st.byRecv[receiver] = t
		st.tracks = append(st.tracks, t)
		if len(st.tracks) == 1 {
			close(st.live)
		}
	}
	if len(st.tracks) >= st.expected {
		defer st.markReady()
	}
	st.mu.Unlock()
	l := t.addLayer(remote)
	if ok {
		t.repick() // a layer that appears late may be the one automatic subscribers want
	}
	go st.readLayer(t, l, remote)
}

// readLayer forwards one layer's packets until the publisher goes. Each packet is read
// into a pooled buffer that its subscribers' queues share.
func (st *stream) readLayer(t *track, l *layer, remote *webrtc.TrackRemote) {
	for {
		p := newPacket()
		n, _, err := remote.Read(p.buf[:])
		if err != nil {
			p.release()
			return
		}
		t.receive(l, p, n)
	}
}

// sendPLI asks the publisher for a keyframe on one SSRC.
func (st *stream) sendPLI(ssrc webrtc.SSRC) {
	_ = st.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}})
}

// waitReady waits until the stream's tracks are known, or done closes.
func (st *stream) waitReady(done <-chan struct{}) error {
	select {
	case <-st.ready:
		return nil
	case <-done:
		return errors.New("sfu: gave up waiting for the stream's tracks")
	}
}

// isLive reports whether a track of the stream has arrived.
func (st *stream) isLive() bool { return closed(st.live) }

// isReady reports whether the stream's tracks are known (see ready).
func (st *stream) isReady() bool { return closed(st.ready) }

// announced reports whether the room's feeds have been told of the stream: once its
// tracks are known and it has one (announceWhenReady).
func (st *stream) announced() bool { return st.isReady() && st.isLive() }

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (st *stream) trackList() []*track {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]*track(nil), st.tracks...)
}

func (st *stream) info() StreamInfo {
	st.mu.Lock()
	defer st.mu.Unlock()
	si := StreamInfo{ID: st.id, Name: st.name, Room: st.room, Tracks: []TrackInfo{}, Subscribers: len(st.subs)}
	for _, t := range st.tracks {
		rids := t.rids()
		if len(rids) == 1 && rids[0] == "" {
			rids = []string{}
		}
		si.Tracks = append(si.Tracks, TrackInfo{ID: t.id, Kind: t.kind.String(),
			Codec: strings.TrimPrefix(strings.TrimPrefix(t.codec.MimeType, "audio/"), "video/"), Layers: rids})
	}
	return si
}

// attach adds a subscription; false if the stream has ended.
func (st *stream) attach(sub *subscription) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return false
	}
	st.subs[sub] = struct{}{}
	return true
}

func (st *stream) detach(sub *subscription) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.subs, sub)
}

// end marks the stream ended and returns its subscriptions, which end with it.
func (st *stream) end() []*subscription {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.ended {
		close(st.gone)
	}
	st.ended = true
	subs := make([]*subscription, 0, len(st.subs))
	for sub := range st.subs {
		subs = append(subs, sub)
	}
	return subs
}

// subscription is one subscriber watching one stream.
type subscription struct {
	stream *stream
	sess   *session
	pc     *webrtc.PeerConnection
	downs  []*downTrack
	path   *sendPath
	bw     *bwe // its bandwidth estimate
	// notTaken says, for each track of the stream the subscriber's offer cannot take, why.
	notTaken []string
}

// goodbye tells the subscriber its tracks end (RTCP BYE) before its connection closes.
func (sub *subscription) goodbye() {
	var ssrcs []uint32
	for _, s := range sub.pc.GetSenders() {
		for _, enc := range s.GetParameters().Encodings {
			ssrcs = append(ssrcs, uint32(enc.SSRC))
		}
	}
	if len(ssrcs) > 0 {
		_ = sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.Goodbye{Sources: ssrcs, Reason: "publisher left"}})
	}
}
