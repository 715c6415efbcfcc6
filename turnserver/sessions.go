package turnserver

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ferry-rtc/ferry/relay"
)

// session is what Ferry knows of one live allocation, keyed by its 5-tuple. Its maps are
// guarded by sessions.mu.
type session struct {
	id          uint64
	user, realm string
	client      net.Addr
	transport   string
	relay       net.Addr
	traffic     *relay.Traffic // nil if the relay was gone before pion reported it
	created     time.Time
	perms       map[netip.Addr]struct{}
	channels    map[uint16]netip.AddrPort // channel number → peer address
	// pendingPerms and pendingChannels are what the guard let through to pion and pion has
	// not reported created yet, until when they count against the limits (see admitPeers).
	pendingPerms    map[netip.Addr]time.Time
	pendingChannels map[uint16]time.Time
	killed          bool   // ended by the admin; pion has not reported it deleted yet
	route           *route // on the data plane; nil for TCP relays
	routeKey        routeKey
}

// publishPeers gives the data plane the session's permissions and channels after a change.
func (sess *session) publishPeers() {
	if sess.route != nil {
		sess.route.setPeers(sess.perms, sess.channels)
	}
}

// Session describes one live allocation, for the admin API.
type Session struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Realm     string    `json:"realm"`
	Client    string    `json:"client"`
	Transport string    `json:"transport"` // listener proto: udp, tcp, tls or dtls
	Relay     string    `json:"relay"`
	Created   time.Time `json:"created"`
	Age       float64   `json:"age_seconds"`

	ToPeerPackets   uint64 `json:"to_peer_packets"`
	ToPeerBytes     uint64 `json:"to_peer_bytes"`
	FromPeerPackets uint64 `json:"from_peer_packets"`
	FromPeerBytes   uint64 `json:"from_peer_bytes"`

	Permissions []string  `json:"permissions"` // peer IPs
	Channels    []Channel `json:"channels"`
}

// Channel is one channel binding of a session.
type Channel struct {
	Number uint16 `json:"number"`
	Peer   string `json:"peer"`
}

// sessions mirrors pion/turn's allocations (fed by its EventHandler), because pion keeps
// them private: the guard asks it whether a request has an allocation to act on, and the
// admin API lists and ends them.
type sessions struct {
	mu     sync.RWMutex
	byFive map[string]*session
	lastID uint64
}

func newSessions() *sessions { return &sessions{byFive: map[string]*session{}} }

// fiveTuple names an allocation the way pion does: client address, server address, and the
// transport (a UDP and a TCP client may share ip:port).
func fiveTuple(client, server net.Addr) string {
	return client.Network() + " " + client.String() + " " + server.String()
}

func (s *sessions) add(server net.Addr, sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastID++
	sess.id = s.lastID
	s.byFive[fiveTuple(sess.client, server)] = sess
}

func (s *sessions) remove(client, server net.Addr) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := fiveTuple(client, server)
	sess, ok := s.byFive[key]
	delete(s.byFive, key)
	return sess, ok
}

// owner returns the user and relay port of the live allocation of a 5-tuple. One the admin
// ended counts as gone at once, though pion reports its deletion a moment later.
func (s *sessions) owner(client, server net.Addr) (user string, relayPort uint16, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sess, ok := s.byFive[fiveTuple(client, server)]
	if !ok || sess.killed {
		return "", 0, false
	}
	relay, _ := addrPort(sess.relay)
	return sess.user, relay.Port(), true
}

// update runs f on the session of a 5-tuple, if there is one.
func (s *sessions) update(client, server net.Addr, f func(*session)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.byFive[fiveTuple(client, server)]; ok {
		f(sess)
	}
}

// kill marks the live sessions that match ended and returns their relay addresses.
func (s *sessions) kill(match func(*session) bool) []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var relays []net.Addr
	for _, sess := range s.byFive {
		if !sess.killed && match(sess) {
			sess.killed = true
			relays = append(relays, sess.relay)
		}
	}
	return relays
}

func (s *sessions) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byFive)
}

// list describes every live session, oldest first.
func (s *sessions) list(now time.Time) []Session {
	s.mu.RLock()
	out := make([]Session, 0, len(s.byFive))
	for _, sess := range s.byFive {
		if !sess.killed {
			out = append(out, sess.describe(now))
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Session) int { return a.Created.Compare(b.Created) })
	return out
}

// usage is what the session's relay has carried so far.
func (sess *session) usage() relay.Usage {
	if sess.traffic == nil {
		return relay.Usage{}
	}
	return sess.traffic.Usage()
}

func (sess *session) describe(now time.Time) Session {
	d := Session{
		ID: strconv.FormatUint(sess.id, 10), User: sess.user, Realm: sess.realm,
		Client: sess.client.String(), Transport: sess.transport, Relay: sess.relay.String(),
		Created: sess.created, Age: now.Sub(sess.created).Seconds(),
		Permissions: []string{}, Channels: []Channel{},
	}
	u := sess.usage()
	d.ToPeerPackets, d.ToPeerBytes = u.ToPeerPackets, u.ToPeerBytes
	d.FromPeerPackets, d.FromPeerBytes = u.FromPeerPackets, u.FromPeerBytes
	for ip := range sess.perms {
		d.Permissions = append(d.Permissions, ip.String())
	}
	slices.Sort(d.Permissions)
	for n, peer := range sess.channels {
		d.Channels = append(d.Channels, Channel{Number: n, Peer: peer.String()})
	}
	slices.SortFunc(d.Channels, func(a, b Channel) int { return int(a.Number) - int(b.Number) })
	return d
}

// key labels the session's metrics.
func (sess *session) key() allocKey {
	ap, _ := addrPort(sess.relay)
	return allocKey{transport: sess.transport, ipv6: ap.Addr().Is6()}
}
