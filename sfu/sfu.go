// Package sfu is Ferry's selective forwarding unit: WHIP publishers and WHEP subscribers
// in rooms, on pion/webrtc, forwarding RTP packet by packet without decoding. Its ICE runs
// on one UDP port taken from the relay port pool, and it hands its clients short-lived
// credentials for the co-hosted TURN server.
package sfu

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/pionlog"
	"github.com/ferry-rtc/ferry/relay"
)

// Config wires the SFU into the process.
type Config struct {
	Pool     *relay.Pool // the ICE port comes from here
	BindIP   netip.Addr  // the ICE socket binds here (may be unspecified)
	PublicIP netip.Addr  // advertised instead of BindIP behind 1:1 NAT; invalid = BindIP
	// Local, if set, is the hand-off through which the ICE socket exchanges datagrams with
	// TURN relays in process: a relayed client costs no more syscalls than a direct one.
	Local *relay.Local
	// TokenSecret returns the current key of access tokens (a reload may change it).
	TokenSecret func() string
	// ICEServers returns the STUN and TURN servers, with TURN credentials minted for a
	// session, that WHIP/WHEP answers advertise in Link headers.
	ICEServers func(TURNCredential) []auth.ICEServer
	// SessionEnded, if set, is told the public id of every session that has ended, so that
	// the TURN credentials minted for it end too.
	SessionEnded func(id string)
	// PermitPeer says which remote candidate addresses the SFU may send to (the relay's
	// peer policy); nil permits every one.
	PermitPeer func(netip.AddrPort) bool
	// Limits returns the limits in force (a reload may change them); nil is no limits.
	Limits func() Limits
	// Route, if set, is asked before a WHIP or WHEP request (and a room's API and event
	// feed) is served whether another node serves the room: a cluster's room directory.
	// nil serves every room here.
	Route   func(ctx context.Context, room string, publish bool) Redirect
	Log     *slog.Logger
	Metrics *metrics.Set // nil keeps the metrics private
}

// SFU is a running SFU.
type SFU struct {
	cfg      Config
	log      *slog.Logger
	mux      *muxConn // the ICE socket
	port     int
	pubAPI   *webrtc.API
	settings webrtc.SettingEngine // subscribers' APIs are made per stream, with its codecs
	meters   *meters
	gate     candidateGate
	stopRate chan struct{}
	loops    sync.WaitGroup // measureLoop
	draining atomic.Bool
	// sessionSlots and feedSlots count the live sessions and feeds of each token and
	// source address.
	sessionSlots, feedSlots *slots

	mu        sync.Mutex
	rooms     map[string]*room
	sessions  map[string]*session // by secret resource id
	streamSeq uint64              // orders streams by start, for "the room's first publisher"
}

// New takes a port from the pool, opens the ICE socket on it and starts the SFU.
func New(cfg Config) (*SFU, error) {
	s := &SFU{cfg: cfg, log: cfg.Log, rooms: map[string]*room{}, sessions: map[string]*session{},
		gate: candidateGate{permit: cfg.PermitPeer}, stopRate: make(chan struct{}),
		sessionSlots: newSlots("sessions"), feedSlots: newSlots("feeds")}
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	s.meters = newMeters(set, s)
	if err := s.openMux(); err != nil {
		return nil, err
	}
	lf := pionlog.Factory{Log: cfg.Log}
	var err error
	s.settings, err = settingEngine(s.mux, cfg.BindIP, cfg.PublicIP, lf)
	if err == nil {
		s.pubAPI, err = newAPI(s.settings, true, codecs, nil)
	}
	if err != nil {
		_ = s.mux.Close()
		s.cfg.Pool.Put(s.port)
		return nil, err
	}
	s.loops.Go(s.measureLoop)
	return s, nil
}

// openMux binds the ICE socket on a free pool port, as the TURN relays do.
func (s *SFU) openMux() error {
	conn, err := relay.ListenUDP(s.cfg.Pool, s.cfg.BindIP)
	if err != nil {
		return fmt.Errorf("sfu: no pool port for the ICE socket: %w", err)
	}
	s.port = conn.LocalAddr().(*net.UDPAddr).Port
	s.mux = newMuxConn(conn, s.cfg.Local, s.ICEAddr(), s.meters.mux)
	return nil
}

// ICEAddr is the address the SFU's ICE candidates advertise.
func (s *SFU) ICEAddr() netip.AddrPort {
	ip := s.cfg.BindIP
	if s.cfg.PublicIP.IsValid() {
		ip = s.cfg.PublicIP
	}
	return netip.AddrPortFrom(ip, uint16(s.port))
}

// Close ends every session and gives the ICE port back to the pool.
func (s *SFU) Close() error {
	close(s.stopRate)
	s.loops.Wait()
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		s.end(sess)
	}
	err := s.mux.Close()
	s.cfg.Pool.Put(s.port)
	return err
}

// measureLoop measures layer bitrates once a second, which moves automatic subscribers
// between simulcast layers.
func (s *SFU) measureLoop() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stopRate:
			return
		case now := <-tick.C:
			for _, t := range s.allTracks() {
				t.measure(now.Sub(last))
			}
			last = now
		}
	}
}

func (s *SFU) allTracks() []*track {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*track
	for _, r := range s.rooms {
		for _, st := range r.streams {
			out = append(out, st.trackList()...)
		}
	}
	return out
}

// counts are the SFU's gauges.
type counts struct{ rooms, publishers, subscribers, tracks int }

func (s *SFU) count() counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := counts{rooms: len(s.rooms)}
	for _, sess := range s.sessions {
		if sess.stream != nil {
			c.publishers++
			c.tracks += len(sess.stream.trackList())
		} else {
			c.subscribers++
		}
	}
	return c
}

// TURNCredential is what the TURN credential of a session's Link headers is minted for:
// the session, and the access token that opened it, whose sessions share one TURN quota
// and whose expiry the credential does not outlive.
type TURNCredential struct {
	Session string            // the session's public id
	Token   [sha256.Size]byte // the key of the access token (see tokenKey)
	Expiry  time.Time         // the access token's
}

// session is one WHIP or WHEP resource: a publisher (stream set) or a subscriber.
type session struct {
	// id is public: a publisher's stream id, which the room shows to every subscriber; it
	// names the session in logs and in its TURN credentials.
	id string
	// resource is secret: the session's URL, told only to its creator, never logged nor
	// shown. With the creator's token it is the capability to change or end the session.
	resource   string
	owner      owner // its token and address: the slot it holds is theirs
	room       string
	pc         *webrtc.PeerConnection
	candidates atomic.Int32  // remote candidates taken, offer and PATCHes together
	stream     *stream       // publisher
	sub        *subscription // subscriber
	connected  atomic.Bool
	deadline   *time.Timer // the connect timeout, nil without one; guarded by SFU.mu
	created    time.Time
	once       sync.Once
}

func newSession(roomName string, o owner, pc *webrtc.PeerConnection) *session {
	return &session{id: newID(), resource: newID(), owner: o, room: roomName, pc: pc, created: time.Now()}
}

// streamID is the stream a session publishes or watches.
func (sess *session) streamID() string {
	if sess.stream != nil {
		return sess.stream.id
	}
	return sess.sub.stream.id
}

// newID is 128 random bits: unguessable, as a resource URL must be.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	errNoStream   = errors.New("no such stream in the room")
	errDraining   = errors.New("the server is shutting down: no new sessions")
	errBadOffer   = errors.New("bad SDP offer")
	errNoSession  = errors.New("no such session")
	errNoMedia    = errors.New("the offer can take none of the stream's tracks")
	errNotLive    = errors.New("no live stream: its publisher has not connected (it has no tracks)")
	errNotPublish = errors.New("the offer does not send")
)

// Drain refuses new sessions (503); the live ones go on until they end.
func (s *SFU) Drain() { s.draining.Store(true) }

// Resume ends a drain: new sessions are accepted again.
func (s *SFU) Resume() { s.draining.Store(false) }

// Sessions returns the number of live publishers and subscribers.
func (s *SFU) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// publish answers o's WHIP offer: a new stream in room, named name ("" = a short form of
// its id).
func (s *SFU) publish(ctx context.Context, roomName, name, offer string, o owner) (*session, string, error) {
	if s.draining.Load() {
		return nil, "", errDraining
	}
	if err := checkName(name); err != nil {
		return nil, "", err
	}
	d, err := parseOffer(offer)
	if err != nil {
		return nil, "", err
	}
	expected := sendingSections(d)
	if expected == 0 {
		return nil, "", errNotPublish
	}
	pc, err := s.pubAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", fmt.Errorf("sfu: %w", err)
	}
	sess := newSession(roomName, o, pc)
	sess.stream = newStream(sess.id, roomName, name, pc, expected, s.meters)
	answer, err := s.answer(ctx, sess, d)
	if err != nil {
		_ = pc.Close()
		return nil, "", err
	}
	s.mu.Lock()
	s.register(sess)
	s.streamSeq++
	sess.stream.seq = s.streamSeq
	r := s.room(roomName)
	r.streams[sess.id] = sess.stream
	s.mu.Unlock()
	s.watch(sess)
	go s.announceWhenReady(sess.stream)
	s.log.Info("sfu: publishing", "room", roomName, "stream", sess.id, "name", sess.stream.name, "tracks", expected)
	return sess, answer, nil
}

// announceWhenReady tells the room's feeds about a stream once its tracks are known and it
// has one: a stream whose publisher never connects is never shown, and one that connects
// after readyTimeout is shown when it does.
func (s *SFU) announceWhenReady(st *stream) {
	<-st.ready
	select {
	case <-st.live:
	case <-st.gone:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.rooms[st.room]; ok && r.streams[st.id] == st {
		r.announce("stream", st.info())
	}
}

// subscribe answers o's WHEP offer for stream id of room ("" = the room's first live
// stream, see pickStream); layer pins a simulcast layer ("" = automatic).
func (s *SFU) subscribe(ctx context.Context, roomName, id, layer, offer string, o owner) (*session, string, error) {
	if s.draining.Load() {
		return nil, "", errDraining
	}
	d, err := parseOffer(offer)
	if err != nil {
		return nil, "", err
	}
	st, err := s.pickStream(ctx, roomName, id)
	if err != nil {
		return nil, "", err
	}
	tracks := st.trackList()
	bw := newBWE(s.meters)
	api, err := newAPI(s.settings, false, streamCodecs(tracks), bw)
	if err != nil {
		return nil, "", err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", fmt.Errorf("sfu: %w", err)
	}
	sess := newSession(roomName, o, pc)
	sub := &subscription{stream: st, pc: pc, sess: sess, path: &sendPath{mux: s.mux}, bw: bw}
	sess.sub = sub
	if err := s.setOffer(sess, d); err != nil {
		_ = pc.Close()
		return nil, "", err
	}
	if err := sub.addTracks(tracks, d, layer); err != nil {
		_ = pc.Close()
		return nil, "", err
	}
	answer, err := s.answerRemote(ctx, pc)
	if err != nil {
		_ = pc.Close()
		return nil, "", err
	}
	// Attached and registered in one step: a publisher ending now either sees this
	// subscriber (and ends it) or refuses it.
	s.mu.Lock()
	attached := st.attach(sub)
	if attached {
		s.register(sess)
	}
	s.mu.Unlock()
	if !attached {
		_ = pc.Close()
		return nil, "", errNoStream
	}
	for _, d := range sub.downs {
		d.track.addDown(d)
	}
	s.watch(sess)
	s.log.Info("sfu: subscribing", "room", roomName, "stream", st.id, "session", sess.id, "layer", layer,
		"tracks", len(sub.downs), "not_taken", strings.Join(sub.notTaken, "; "))
	return sess, answer, nil
}

// pickStream returns the stream a WHEP request asks for, once its tracks are known: stream
// id of the room, or with id "" the room's first live stream (the oldest whose publisher
// has sent a track; an older one that never connects must not shadow it). errNoStream if
// the room has no such stream, errNotLive if it has no track (its publisher has not
// connected).
func (s *SFU) pickStream(ctx context.Context, roomName, id string) (*stream, error) {
	for {
		streams := s.roomStreams(roomName, id)
		if len(streams) == 0 {
			return nil, errNoStream
		}
		var pending *stream // the oldest whose tracks are still coming
		for _, st := range streams {
			if st.isLive() {
				return st, st.waitReady(ctx.Done())
			}
			if pending == nil && !st.isReady() {
				pending = st
			}
		}
		if pending == nil {
			return nil, errNotLive
		}
		if err := pending.waitReady(ctx.Done()); err != nil {
			return nil, err
		}
	}
}

// roomStreams returns stream id of the room, or with id "" all its streams, oldest first.
func (s *SFU) roomStreams(roomName, id string) []*stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[roomName]
	if !ok {
		return nil
	}
	if id != "" {
		if st, ok := r.streams[id]; ok {
			return []*stream{st}
		}
		return nil
	}
	out := make([]*stream, 0, len(r.streams))
	for _, st := range r.streams {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *stream) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// room returns the room of name, making it; s.mu is held.
func (s *SFU) room(name string) *room {
	r, ok := s.rooms[name]
	if !ok {
		r = &room{name: name, streams: map[string]*stream{}, feeds: map[*feed]struct{}{}}
		s.rooms[name] = r
	}
	return r
}

// register makes sess one of the live sessions, and starts its connect timeout; s.mu is
// held. Only a registered session reaches end, which gives its slot back.
func (s *SFU) register(sess *session) {
	s.sessions[sess.resource] = sess
	if d := s.limits().ConnectTimeout; d > 0 {
		sess.deadline = time.AfterFunc(d, func() { s.connectTimedOut(sess) })
	}
}

// connectTimedOut ends a session that has not connected within the connect timeout.
func (s *SFU) connectTimedOut(sess *session) {
	if sess.connected.Load() {
		return
	}
	s.meters.connectTimeouts.Inc()
	s.log.Info("sfu: session did not connect in time", "room", sess.room, "session", sess.id)
	s.end(sess)
}

// answer applies a remote offer and returns the complete local answer.
func (s *SFU) answer(ctx context.Context, sess *session, offer *sdp.SessionDescription) (string, error) {
	if err := s.setOffer(sess, offer); err != nil {
		return "", err
	}
	return s.answerRemote(ctx, sess.pc)
}

// setOffer applies a remote offer with only the candidates the gate allows.
func (s *SFU) setOffer(sess *session, d *sdp.SessionDescription) error {
	offer, kept, err := s.gate.apply(d)
	if err != nil {
		return err
	}
	sess.candidates.Store(int32(kept))
	if err := sess.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fmt.Errorf("%w: %v", errBadOffer, err)
	}
	return nil
}

// addCandidate gives the session one trickled candidate, unless the gate refuses it or
// the session has used up its candidates; refused candidates are skipped, not errors.
func (s *SFU) addCandidate(sess *session, c webrtc.ICECandidateInit) error {
	if !s.gate.allow(c.Candidate) || sess.candidates.Add(1) > maxRemoteCandidates {
		return nil
	}
	return sess.pc.AddICECandidate(c)
}

// answerRemote creates the answer to the remote offer already applied, and waits for its
// candidates: with one mux port there is one host candidate per address, found at once.
func (s *SFU) answerRemote(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errBadOffer, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("sfu: set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return candidatesOutOfRejected(pc.LocalDescription().SDP), nil
}

// watch ends a session when its connection fails or closes, and lifts its connect
// timeout when it connects.
func (s *SFU) watch(sess *session) {
	sess.pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		switch state {
		case webrtc.PeerConnectionStateConnected:
			s.connected(sess)
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go s.end(sess)
		}
	})
	// A state change before the callback was set is not replayed.
	if sess.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		s.connected(sess)
	}
}

// connected notes that a session's connection came up: its connect timeout is over, and
// a subscriber's tracks start.
func (s *SFU) connected(sess *session) {
	sess.connected.Store(true)
	s.mu.Lock()
	if sess.deadline != nil {
		sess.deadline.Stop()
	}
	s.mu.Unlock()
	if sess.sub != nil {
		for _, d := range sess.sub.downs {
			d.goLive()
		}
	}
}

// lookup returns the session of a secret resource id.
func (s *SFU) lookup(resource string) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[resource]
	return sess, ok
}

// end closes a session, once: a publisher's stream leaves its room and its subscribers
// are told goodbye and closed; a subscriber leaves its stream.
func (s *SFU) end(sess *session) {
	sess.once.Do(func() {
		s.mu.Lock()
		delete(s.sessions, sess.resource)
		if sess.deadline != nil {
			sess.deadline.Stop()
		}
		var subs []*subscription
		if st := sess.stream; st != nil {
			subs = st.end()
			if r, ok := s.rooms[sess.room]; ok {
				delete(r.streams, st.id)
				r.announce("stream-end", map[string]string{"id": st.id})
			}
		}
		s.dropEmptyRoom(sess.room)
		s.mu.Unlock()
		if sub := sess.sub; sub != nil {
			sub.stream.detach(sub)
			for _, d := range sub.downs {
				d.track.removeDown(d)
			}
		}
		for _, sub := range subs {
			sub.goodbye()
			s.end(sub.sess)
		}
		_ = sess.pc.Close()
		s.sessionSlots.release(sess.owner)
		if s.cfg.SessionEnded != nil {
			s.cfg.SessionEnded(sess.id)
		}
		s.log.Info("sfu: session ended", "room", sess.room, "session", sess.id, "publisher", sess.stream != nil)
	})
}

// dropEmptyRoom forgets a room with no streams and no feeds; s.mu is held.
func (s *SFU) dropEmptyRoom(name string) {
	if r, ok := s.rooms[name]; ok && len(r.streams) == 0 && len(r.feeds) == 0 {
		delete(s.rooms, name)
	}
}
