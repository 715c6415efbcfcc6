package sfu

import (
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/pion/webrtc/v4"
)

// SessionInfo describes one live WHIP or WHEP session, for the admin API.
type SessionInfo struct {
	ID     string `json:"id"` // public: a publisher's is its stream's id
	Room   string `json:"room"`
	Stream string `json:"stream"` // published or watched
	Name   string `json:"name"`   // the stream's name
	Role   string `json:"role"`   // "publisher" or "subscriber"
	State  string `json:"state"`  // of the connection: new, connecting, connected, disconnected...
	// Client is the client's address on the connection's selected ICE candidate pair, and
	// Candidate that candidate's type (host, srflx, prflx or relay); both "" until a pair is
	// selected. Relayed says the client reaches the SFU through a TURN server: its candidate
	// is a relay candidate (the admin API also marks the clients of Ferry's own relays,
	// whose candidate the SFU may have learnt as prflx).
	Client    string `json:"client"`
	Candidate string `json:"candidate"`
	Relayed   bool   `json:"relayed"`
	// Bitrate is what a publisher sends, or what a subscriber is sent, in bits per second
	// over the last second.
	Bitrate uint64 `json:"bitrate_bps"`
	// Layers are a publisher's simulcast layers, best first; Layer is the one a subscriber
	// is forwarded now, and LayerPinned whether it chose it (else its bandwidth does).
	Layers      []string `json:"layers,omitempty"`
	Layer       string   `json:"layer,omitempty"`
	LayerPinned bool     `json:"layer_pinned,omitempty"`
	// Estimate is a subscriber's bandwidth estimate in bits per second (transport-cc, else
	// REMB); absent while none limits it.
	Estimate    uint64    `json:"estimate_bps,omitempty"`
	Subscribers int       `json:"subscribers,omitempty"` // a publisher's
	Created     time.Time `json:"created"`
	Age         float64   `json:"age_seconds"`
}

// SessionList describes the live sessions of room ("" = of every room), oldest first.
func (s *SFU) SessionList(room string) []SessionInfo {
	now := time.Now()
	out := []SessionInfo{}
	for _, sess := range s.liveSessions() {
		if room == "" || sess.room == room {
			out = append(out, sess.describe(now))
		}
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return a.Created.Compare(b.Created) })
	return out
}

// Kill ends the session whose public id is id, as its DELETE would; a publisher's
// subscribers end with it. false if there is no such session.
func (s *SFU) Kill(id string) bool {
	for _, sess := range s.liveSessions() {
		if sess.id == id {
			s.log.Info("sfu: session ended by the admin", "room", sess.room, "session", sess.id)
			s.end(sess)
			return true
		}
	}
	return false
}

// liveSessions are the sessions now; they are described without the SFU's lock, which
// pion's callbacks take.
func (s *SFU) liveSessions() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess)
	}
	return out
}

func (sess *session) describe(now time.Time) SessionInfo {
	st := sess.stream
	d := SessionInfo{ID: sess.id, Room: sess.room, Role: "publisher", State: sess.pc.ConnectionState().String(),
		Created: sess.created, Age: now.Sub(sess.created).Seconds()}
	if sess.sub != nil {
		st, d.Role = sess.sub.stream, "subscriber"
		sess.sub.describe(&d)
	} else {
		st.describe(&d)
	}
	d.Stream, d.Name = st.id, st.name
	if pair, ok := selectedPair(sess.pc); ok {
		d.Client = net.JoinHostPort(pair.Remote.Address, strconv.Itoa(int(pair.Remote.Port)))
		d.Candidate = pair.Remote.Typ.String()
		d.Relayed = pair.Remote.Typ == webrtc.ICECandidateTypeRelay
	}
	return d
}

// describe fills in what a publisher sends: its bitrate, its video layers and its
// subscribers.
func (st *stream) describe(d *SessionInfo) {
	for _, t := range st.trackList() {
		d.Bitrate += t.bitrate()
		if t.kind == webrtc.RTPCodecTypeVideo {
			d.Layers = slices.DeleteFunc(t.rids(), func(rid string) bool { return rid == "" })
		}
	}
	st.mu.Lock()
	d.Subscribers = len(st.subs)
	st.mu.Unlock()
}

// describe fills in what a subscriber is sent: its bitrate, its video layer and its
// bandwidth estimate.
func (sub *subscription) describe(d *SessionInfo) {
	d.Estimate = sub.bw.estimate()
	for _, down := range sub.downs {
		d.Bitrate += down.sent.bps()
		if down.track.kind == webrtc.RTPCodecTypeVideo {
			d.Layer, d.LayerPinned = down.forwarding()
		}
	}
}

// selectedPair is the ICE candidate pair a connection uses; every track shares it (bundle).
func selectedPair(pc *webrtc.PeerConnection) (*webrtc.ICECandidatePair, bool) {
	for _, tr := range pc.GetTransceivers() {
		var dtls *webrtc.DTLSTransport
		if s := tr.Sender(); s != nil {
			dtls = s.Transport()
		} else if r := tr.Receiver(); r != nil {
			dtls = r.Transport()
		}
		if dtls == nil {
			continue
		}
		if pair, err := dtls.ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
			return pair, true
		}
	}
	return nil, false
}
