package turnserver

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/time/rate"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/relay"
)

// guard looks at every STUN message before pion/turn does, on every listener. It keeps the
// protocol code untouched and supplies what pion v5.1.0 gets wrong or leaves out:
//   - Binding requests are answered here (with SOFTWARE, which pion cannot add);
//   - a request with wrong credentials goes to pion without its MESSAGE-INTEGRITY, so pion
//     answers 401 with a fresh nonce instead of 400;
//   - Refresh, CreatePermission, ChannelBind and Connect without an allocation get 437 (pion
//     sends nothing), and with another user's allocation 441;
//   - CreatePermission, ChannelBind and Connect naming a denied peer get 403 (pion answers
//     ChannelBind with 401, and installs a CreatePermission's peers before the denied
//     one), and Send indications to a denied peer are dropped and counted;
//   - Allocate for an address family without relay addresses gets 440, and any Allocate
//     while draining 508 (or 300 Try Alternate);
//   - answers to requests without valid credentials, and to Binding requests, are capped
//     per source IP;
//   - CreatePermission and ChannelBind past the allocation's limits get 508, and a LIFETIME
//     over the maximum is cut to it; ChannelBind outside 0x4000-0x7FFF gets 400 (pion
//     binds any number);
//   - ChannelData and Send indications the data plane did not relay are dropped here:
//     pion could not relay them either.
//
// It also counts what it sees for the metrics: requests by method, auth failures by reason,
// peer denials.
type guard struct {
	software stun.Setter // nil: no SOFTWARE attribute
	auth     atomic.Pointer[auth.Authenticator]
	policy   *relay.Policy
	families func(ipv6 bool) bool
	connRoom func(relayPort uint16) error // whether a TCP relay may take one more peer connection
	sessions *sessions
	plane    *dataPlane
	meters   *meters
	unauth   *ipLimiter
	bindings *ipLimiter
	limits   atomic.Pointer[Limits]
	// peerLimit returns the one peer address a user may use, if it is limited to one.
	peerLimit func(user string) (netip.AddrPort, bool)
	revoked   func(user string) bool // nil: no credential is ever revoked
	log       *slog.Logger
	logLimit  *rate.Limiter // auth failures are logged at most this often: a flood must not fill the disk

	draining  atomic.Bool
	alternate atomic.Pointer[stun.AlternateServer] // while draining: answer Allocate 300 with it
}

// responder sends a message back to the client a request came from, or refuses it an
// answer.
type responder interface {
	respond(msg []byte, to net.Addr)
	// allow applies an answer cap to client: per source IP on a datagram transport, whose
	// source address costs nothing to spoof (the cap is against reflection), and per
	// connection on a stream, whose source is proven by its handshake (so that a spoofed
	// flood cannot lock a real client's connections out).
	allow(cap *ipLimiter, client net.Addr, now time.Time) bool
	// refuse is told that a request of the client goes unanswered (over a rate): a
	// datagram is just dropped, a stream connection is closed, since its client, which
	// does not retransmit, would otherwise wait for the answer forever.
	refuse()
}

// connState is the guard's scratch space for one listener socket or stream.
type connState struct {
	msg stun.Message
	// key is the long-term key of the last authenticated request: the MESSAGE-INTEGRITY
	// key for the responses pion sends without one (see streamConn.Write).
	key []byte
}

// inspect looks at the datagram or frame b from client arriving at server. It returns the
// bytes to hand to pion (b, possibly shortened in place) and false when the message was
// answered or dropped here.
func (g *guard) inspect(b []byte, client, server net.Addr, w responder, st *connState) ([]byte, bool) {
	if !stun.IsMessage(b) {
		// ChannelData the data plane did not relay (no allocation, no such channel, a
		// length past the end) or garbage: pion would drop it too, but only after building
		// an error for it and reporting an allocation error, which costs far more than the
		// frame did to send.
		g.meters.dropped[dropUnrelayable].Inc()
		return nil, false
	}
	m := &st.msg
	m.Raw = b
	if !g.decode(m) {
		return nil, false
	}
	switch {
	case m.Type == stun.BindingRequest:
		g.meters.bindings.Inc()
		switch unknown := turnwire.UnknownRequired(m); {
		case !w.allow(g.bindings, client, time.Now()):
			g.meters.bindingDropped.Inc()
			w.refuse()
		case unknown != nil:
			g.reject(m, stun.CodeUnknownAttribute, nil, client, w, stun.UnknownAttributes(unknown))
		default:
			g.answerBinding(m, client, w)
		}
		return nil, false
	case m.Type.Method == stun.MethodSend && m.Type.Class == stun.ClassIndication:
		// One the data plane did not take has no allocation (or a TCP one): pion would
		// drop it too, at the cost of an allocation error.
		if _, ok := g.sendPeer(m, netip.AddrPort{}); ok {
			g.meters.dropped[dropUnrelayable].Inc()
		}
		return nil, false
	case m.Type.Class != stun.ClassRequest:
		return b, true
	}
	g.meters.request(m.Type.Method)
	if !m.Contains(stun.AttrMessageIntegrity) {
		return g.unauthenticated(m, client, w)
	}
	user, key, err := g.authenticate(m, client)
	switch {
	case errors.Is(err, errIncompleteCredentials):
		return b, g.mayAnswer(client, w) // pion answers 400
	case err != nil:
		g.meters.authFailure(err)
		if !g.mayAnswer(client, w) {
			return nil, false
		}
		return b[:stripIntegrity(b)], true // pion answers 401 with a fresh nonce
	}
	st.key = key
	if unknown := turnwire.UnknownRequired(m); unknown != nil {
		g.reject(m, stun.CodeUnknownAttribute, key, client, w, stun.UnknownAttributes(unknown))
		return nil, false
	}
	if code, extra, reject := g.check(m, client, server, user); reject {
		g.reject(m, code, key, client, w, extra...)
		return nil, false
	}
	if capped, ok := g.capLifetime(m, key); ok {
		return capped, true
	}
	return b, true
}

// sent counts an error response on its way to a client, whoever built it.
func (g *guard) sent(b []byte) {
	if code, ok := rawErrorCode(b); ok {
		g.meters.errorResponse(code)
	}
}

// unauthenticated handles a request without credentials: pion answers it 401 with a nonce,
// unless the source is over its rate or the server is draining.
func (g *guard) unauthenticated(m *stun.Message, client net.Addr, w responder) ([]byte, bool) {
	if !g.mayAnswer(client, w) {
		return nil, false
	}
	if m.Type.Method == stun.MethodAllocate && g.draining.Load() {
		code, extra := g.drainAnswer()
		g.reject(m, code, nil, client, w, extra...)
		return nil, false
	}
	return m.Raw, true
}

// mayAnswer applies unauthenticated_per_ip_rate to an answer for a request without valid
// credentials; over the rate, the request is dropped and counted.
func (g *guard) mayAnswer(client net.Addr, w responder) bool {
	if w.allow(g.unauth, client, time.Now()) {
		return true
	}
	g.meters.unauthDropped.Inc()
	w.refuse()
	return false
}

func (g *guard) reject(m *stun.Message, code stun.ErrorCode, key []byte, client net.Addr, w responder, extra ...stun.Setter) {
	if resp, err := errorResponse(m, code, key, extra...); err == nil {
		w.respond(resp, client)
	}
}

var errIncompleteCredentials = errors.New("request lacks USERNAME, REALM or NONCE")

// authenticate verifies the long-term credentials of m: the user ID and key, or why not.
func (g *guard) authenticate(m *stun.Message, client net.Addr) (user string, key []byte, err error) {
	var (
		username stun.Username
		realm    stun.Realm
		nonce    stun.Nonce
	)
	if username.GetFrom(m) != nil || realm.GetFrom(m) != nil || nonce.GetFrom(m) != nil {
		return "", nil, errIncompleteCredentials
	}
	user, key, err = g.auth.Load().Verify(username.String(), realm.String(), time.Now(), func(key []byte) bool {
		return stun.MessageIntegrity(key).Check(m) == nil
	})
	if err == nil && g.revoked != nil && g.revoked(user) {
		err = auth.ErrRevoked
	}
	if err != nil && g.logLimit.Allow() {
		g.log.Info("authentication failed", "client", client, "username", username.String(),
			"method", m.Type.Method.String(), "reason", err.Error())
	}
	return user, key, err
}

// decode parses m.Raw, and reports whether the message is one to look at any further: one
// that does not parse, or whose FINGERPRINT does not match (RFC 8489 section 7.3), is
// discarded silently and counted.
func (g *guard) decode(m *stun.Message) bool {
	if m.Decode() != nil {
		g.meters.dropped[dropMalformed].Inc()
		return false
	}
	if badFingerprint(m) {
		g.meters.dropped[dropFingerprint].Inc()
		return false
	}
	return true
}

// check applies the drain, allocation and peer rules to an authenticated request: the
// error code to answer with, and its extra attributes, if any.
func (g *guard) check(m *stun.Message, client, server net.Addr, user string) (stun.ErrorCode, []stun.Setter, bool) {
	peers, ok := peerAddrs(m)
	if !ok {
		return stun.CodeBadRequest, nil, true // before anything looks at a peer
	}
	var relayPort uint16
	switch m.Type.Method {
	case stun.MethodAllocate:
		if g.draining.Load() {
			code, extra := g.drainAnswer()
			return code, extra, true
		}
		if requestsTCP(m) && client.Network() == "udp" {
			return stun.CodeBadRequest, nil, true // RFC 6062 section 5.1: TCP relays need a TCP or TLS client
		}
		code, reject := g.checkFamily(m)
		return code, nil, reject
	case stun.MethodChannelBind:
		if !validChannel(m) {
			return stun.CodeBadRequest, nil, true // pion binds any number
		}
		fallthrough
	case stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodConnect:
		owner, port, ok := g.sessions.owner(client, server)
		if !ok {
			return stun.CodeAllocMismatch, nil, true
		}
		if owner != user {
			return stun.CodeWrongCredentials, nil, true
		}
		relayPort = port
	}
	if op, ok := peerOps[m.Type.Method]; ok && !g.permitPeers(peers, user, op) {
		g.meters.peerDenied[op].Add(1)
		return stun.CodeForbidden, nil, true
	}
	if m.Type.Method == stun.MethodConnect && errors.Is(g.connRoom(relayPort), relay.ErrConnLimit) {
		return stun.CodeInsufficientCapacity, nil, true // RFC 6062 connections past the limits
	}
	if !g.roomForPeers(m, peers, client, server) {
		return stun.CodeInsufficientCapacity, nil, true
	}
	return 0, nil, false
}

// validChannel reports whether a ChannelBind's CHANNEL-NUMBER is one ChannelData can
// carry: 0x4000 through 0x7FFF, the range of RFC 5766 (RFC 8656 narrows it to 0x4FFF, but
// clients written to the first RFC may use the rest). A missing one is pion's 400.
func validChannel(m *stun.Message) bool {
	v, err := m.Get(stun.AttrChannelNumber)
	if err != nil || len(v) < 2 {
		return true
	}
	n := binary.BigEndian.Uint16(v)
	return n >= 0x4000 && n <= 0x7FFF
}

// peerOps are the requests that name peers, by the label of their denials.
var peerOps = map[stun.Method]int{
	stun.MethodCreatePermission: deniedCreatePermission,
	stun.MethodChannelBind:      deniedChannelBind,
	stun.MethodConnect:          deniedConnect,
}

// protoOf is the transport a request's peers are reached over: TCP for an RFC 6062
// Connect, UDP for the rest.
func protoOf(op int) relay.Proto {
	if op == deniedConnect {
		return relay.TCP
	}
	return relay.UDP
}

// permitPeers checks every XOR-PEER-ADDRESS of a request against the peer policy and
// against the user's peer limit: a user limited to one address (the SFU's clients, limited
// to the SFU) may name no other. CreatePermission is checked by IP only, and here rather
// than only in pion's PermissionHandler: pion installs the peers before a denied one and
// answers 403 anyway.
func (g *guard) permitPeers(peers []netip.AddrPort, user string, op int) bool {
	only := g.onlyPeer(user)
	for _, peer := range peers {
		if op == deniedCreatePermission {
			if (only.IsValid() && peer.Addr().Unmap() != only.Addr()) || !g.policy.PermitIP(peer.Addr()) {
				return false
			}
			continue
		}
		if (only.IsValid() && unmapped(peer) != only) || !g.policy.PermitAddr(protoOf(op), peer) {
			return false
		}
	}
	return true
}

// onlyPeer is the one peer address user may relay to, if the user is limited to one; the
// zero AddrPort if not.
func (g *guard) onlyPeer(user string) netip.AddrPort {
	if g.peerLimit == nil {
		return netip.AddrPort{}
	}
	only, limited := g.peerLimit(user)
	if !limited {
		return netip.AddrPort{}
	}
	return unmapped(only)
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// drainAnswer is the answer to an Allocate while draining: 300 Try Alternate with the
// alternate server if one is configured, else 508 Insufficient Capacity.
func (g *guard) drainAnswer() (stun.ErrorCode, []stun.Setter) {
	if alt := g.alternate.Load(); alt != nil {
		return stun.CodeTryAlternate, []stun.Setter{alt}
	}
	return stun.CodeInsufficientCapacity, nil
}

// checkFamily refuses an explicit REQUESTED-ADDRESS-FAMILY Ferry has no relay address for
// (RFC 6156 section 4.2); pion would fail the allocation with 508.
func (g *guard) checkFamily(m *stun.Message) (stun.ErrorCode, bool) {
	v, err := m.Get(stun.AttrRequestedAddressFamily)
	if err != nil || len(v) < 1 {
		return 0, false
	}
	const ipv4, ipv6 = 0x01, 0x02
	if (v[0] == ipv4 && !g.families(false)) || (v[0] == ipv6 && !g.families(true)) {
		return stun.CodeAddrFamilyNotSupported, true
	}
	return 0, false
}

// sendPeer is the peer a Send indication may be relayed to, with the allocation's user
// limited to only (if valid). false, counted, when it names none or a malformed one, carries
// an unknown comprehension-required attribute (RFC 8489 section 6.3.2: discarded
// silently), or names a peer the policy denies or the user may not reach.
func (g *guard) sendPeer(m *stun.Message, only netip.AddrPort) (netip.AddrPort, bool) {
	peer, ok := peerAddr(m)
	switch {
	case !ok:
		g.meters.dropped[dropMalformed].Inc()
	case turnwire.UnknownRequired(m) != nil:
		g.meters.dropped[dropUnknownAttribute].Inc()
	case (only.IsValid() && unmapped(peer) != only) || !g.policy.PermitAddr(relay.UDP, peer):
		g.meters.peerDenied[deniedSend].Add(1)
	default:
		return unmapped(peer), true
	}
	return netip.AddrPort{}, false
}

// peerAddr reads the XOR-PEER-ADDRESS of an indication (RFC 8489 section 14.2); false if it
// has none, or a malformed one. It runs for every Send indication, so it decodes in place
// instead of through stun.XORMappedAddress, which allocates the IP.
func peerAddr(m *stun.Message) (netip.AddrPort, bool) {
	v, err := m.Get(stun.AttrXORPeerAddress)
	if err != nil {
		return netip.AddrPort{}, false
	}
	peer, err := turnwire.XORAddress(v, m.TransactionID)
	return peer, err == nil
}

// peerAddrs decodes every XOR-PEER-ADDRESS of a request; false if any is malformed (a
// length that does not fit its family, an unknown family), which is a 400 (RFC 8656
// section 18.3) before any check looks at the peers: decoded leniently, a truncated IPv4
// address would name a different peer than the one checked.
func peerAddrs(m *stun.Message) ([]netip.AddrPort, bool) {
	var peers []netip.AddrPort
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		peer, err := turnwire.XORAddress(a.Value, m.TransactionID)
		if err != nil {
			return nil, false
		}
		peers = append(peers, peer)
	}
	return peers, true
}

// answerBinding sends the RFC 8489 Binding success response: XOR-MAPPED-ADDRESS, optional
// SOFTWARE, FINGERPRINT.
func (g *guard) answerBinding(m *stun.Message, client net.Addr, w responder) {
	ip, port := addrIPPort(client)
	setters := []stun.Setter{
		&stun.Message{TransactionID: m.TransactionID}, stun.BindingSuccess,
		&stun.XORMappedAddress{IP: ip, Port: port},
	}
	if g.software != nil {
		setters = append(setters, g.software)
	}
	resp, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err == nil {
		w.respond(resp.Raw, client)
	}
}

// errorResponse is the error response to req, signed with key unless key is nil.
func errorResponse(req *stun.Message, code stun.ErrorCode, key []byte, extra ...stun.Setter) ([]byte, error) {
	setters := append([]stun.Setter{
		&stun.Message{TransactionID: req.TransactionID},
		stun.NewType(req.Type.Method, stun.ClassErrorResponse),
		code,
	}, extra...)
	if key != nil {
		setters = append(setters, stun.MessageIntegrity(key))
	}
	resp, err := stun.Build(setters...)
	if err != nil {
		return nil, err
	}
	return resp.Raw, nil
}

func addrIPPort(a net.Addr) (net.IP, int) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP, a.Port
	case *net.TCPAddr:
		return a.IP, a.Port
	}
	return nil, 0
}
