package turnserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/iplimit"
	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/relay"
)

// request is a STUN request being handled, with where it came from and, once its
// credentials are checked, whose it is.
type request struct {
	msg  *stun.Message
	five fiveTuple
	l    *listener
	conn *streamConn // the stream it came over; nil for UDP
	w    responder
	now  time.Time

	user string
	key  []byte // the verified long-term key: the answer is signed with it
	// sha256 is set when the request was signed with MESSAGE-INTEGRITY-SHA256: the answer
	// is signed alike (RFC 8489 section 9.2.4).
	sha256 bool
	peers  []netip.AddrPort // every XOR-PEER-ADDRESS, decoded strictly
	alloc  *allocation      // the allocation a request of a method onAllocation acts on
}

// responder sends an answer back to the client a request came from, or refuses it one; the
// data plane sends the frames of the allocation the request makes through it too.
type responder interface {
	respond(msg []byte, to netip.AddrPort)
	// allow applies an answer cap to the client: per source IP on UDP, whose source costs
	// nothing to forge (the cap is against reflection), and per connection on a stream,
	// whose source is proven by its handshake, so that forged datagrams cannot lock a real
	// client's connections out.
	allow(cap *iplimit.Limiter, client netip.AddrPort, now time.Time) bool
	// refuse is told that a request goes unanswered (over a cap): a datagram is just
	// dropped, a stream connection closed, since its client, which does not retransmit,
	// would wait for the answer forever.
	refuse()
	sendFrames(frames [][]byte, to netip.AddrPort) error
}

// methods are the TURN requests Ferry serves: each one's handler, its label in
// ferry_turn_requests_total, and whether it acts on the allocation of its 5-tuple, which
// handle then finds first. Any other method counts as "other" and is answered 400.
var methods = map[stun.Method]struct {
	label        string
	handle       func(*Server, *request) (stun.ErrorCode, []stun.Setter)
	onAllocation bool
}{
	stun.MethodAllocate:         {"allocate", (*Server).allocate, false},
	stun.MethodRefresh:          {"refresh", (*Server).refresh, true},
	stun.MethodCreatePermission: {"create_permission", (*Server).createPermission, true},
	stun.MethodChannelBind:      {"channel_bind", (*Server).channelBind, true},
	stun.MethodConnect:          {"connect", (*Server).connect, true},
	stun.MethodConnectionBind:   {"connection_bind", (*Server).connectionBind, false},
}

// handle answers one decoded STUN message that is not a Send indication: a Binding request,
// or a TURN request, whose credentials it checks once before the method's handler runs.
func (s *Server) handle(r *request) {
	m := r.msg
	switch {
	case m.Type == stun.BindingRequest:
		s.binding(r)
		return
	case m.Type.Class != stun.ClassRequest:
		return // indications other than Send, stray responses: nothing to do (Binding keep-alives)
	}
	s.meters.requests.inc(m.Type.Method)
	if !s.authenticate(r) {
		return
	}
	method, known := methods[m.Type.Method]
	switch unknown := turnwire.UnknownRequired(m); {
	case unknown != nil:
		s.reject(r, stun.CodeUnknownAttribute, stun.UnknownAttributes(unknown))
	case !s.decodePeers(r) || !known:
		s.reject(r, stun.CodeBadRequest)
	case method.onAllocation && !s.own(r):
	default:
		if code, extra := method.handle(s, r); code != 0 {
			s.reject(r, code, extra...)
		}
	}
}

// own finds the live allocation of r's 5-tuple (r.alloc) if r's user made it; false, and r
// answered, when there is none (437: never made, expired, deleted or killed) or it is
// another user's (441).
func (s *Server) own(r *request) bool {
	switch a := s.allocationOf(r); {
	case a == nil || !a.live(r.now):
		s.reject(r, stun.CodeAllocMismatch)
	case a.user != r.user:
		s.reject(r, stun.CodeWrongCredentials)
	default:
		r.alloc = a
		return true
	}
	return false
}

// decodePeers reads every XOR-PEER-ADDRESS of the request; false if any is malformed, which
// is a 400 before anything looks at the peers (a lenient read of a truncated address would
// name another peer than the one checked).
func (s *Server) decodePeers(r *request) bool {
	for _, a := range r.msg.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		peer, err := turnwire.XORAddress(a.Value, r.msg.TransactionID)
		if err != nil {
			return false
		}
		r.peers = append(r.peers, relay.Unmap(peer))
	}
	return true
}

// authenticate checks the long-term credentials of a request (RFC 8489 section 9.2.4), in
// the RFC's order: none → 401 with a nonce; incomplete → 400; a bid-down of the password
// algorithm → 400; an unknown user or a wrong MESSAGE-INTEGRITY → 401; a nonce Ferry did
// not issue, or an old one → 438 with a new nonce. Every such answer is capped like others
// to requests without valid credentials. It fills in r.user and r.key and reports whether
// the request may go on.
func (s *Server) authenticate(r *request) bool {
	m := r.msg
	hasSHA256 := m.Contains(stun.AttrMessageIntegritySHA256)
	if !m.Contains(stun.AttrMessageIntegrity) && !hasSHA256 {
		if m.Type.Method == stun.MethodAllocate && s.drain.Load() != nil {
			if s.underCap(r, s.unauth, s.meters.unauthDropped) { // no need to learn a nonce for an Allocate that cannot succeed
				code, extra := s.drainAnswer()
				s.reject(r, code, extra...)
			}
			return false
		}
		s.unauthorized(r, stun.CodeUnauthorized)
		return false
	}
	var username stun.Username
	var realm stun.Realm
	var nonce stun.Nonce
	if username.GetFrom(m) != nil || realm.GetFrom(m) != nil || nonce.GetFrom(m) != nil || !passwordAlgorithmOK(m) {
		s.unauthorized(r, stun.CodeBadRequest)
		return false
	}
	check := func(key []byte) bool { return stun.MessageIntegrity(key).Check(m) == nil }
	if hasSHA256 {
		check = func(key []byte) bool { return turnwire.MessageIntegritySHA256(key).Check(m) == nil }
	}
	user, key, err := s.auth.Load().Verify(username.String(), realm.String(), r.now, check)
	if err == nil && s.cfg.Revoked != nil && s.cfg.Revoked(user) {
		err = auth.ErrRevoked
	}
	if err != nil {
		s.authFailed(r, username.String(), err)
		return false
	}
	if !s.nonces.valid(nonce, r.five.client.Addr(), r.now) {
		s.unauthorized(r, stun.CodeStaleNonce) // counted as an auth failure by its code
		return false
	}
	r.user, r.key, r.sha256 = user, key, hasSHA256
	return true
}

// passwordAlgorithms is what Ferry offers (RFC 8489 section 9.2.1): MD5 only, since the
// users file holds MD5 keys. MESSAGE-INTEGRITY-SHA256 works with it all the same.
var passwordAlgorithms = turnwire.PasswordAlgorithmsAttr{turnwire.AlgorithmMD5}

// passwordAlgorithmOK checks a request's PASSWORD-ALGORITHMS and PASSWORD-ALGORITHM against
// what Ferry offered, which guards against a bid-down attack (RFC 8489 section 9.2.4): both
// or neither, the list as sent, and a chosen algorithm from it.
func passwordAlgorithmOK(m *stun.Message) bool {
	listV, listErr := m.Get(stun.AttrPasswordAlgorithms)
	algV, algErr := m.Get(stun.AttrPasswordAlgorithm)
	if listErr != nil || algErr != nil {
		return listErr != nil && algErr != nil // neither is fine, one alone is not
	}
	list, err := turnwire.PasswordAlgorithms(listV)
	if err != nil || len(list) != len(passwordAlgorithms) || list[0] != passwordAlgorithms[0] {
		return false
	}
	alg, err := turnwire.PasswordAlgorithm(algV)
	return err == nil && alg == turnwire.AlgorithmMD5
}

// authFailed counts, logs (at most once a second after a burst) and answers a request
// whose credentials failed: 401 with a fresh nonce.
func (s *Server) authFailed(r *request, username string, err error) {
	s.meters.authFailure(err)
	if s.logLimit.Allow() {
		s.cfg.Log.Info("authentication failed", "client", r.five.client.String(), "username", username,
			"method", r.msg.Type.Method.String(), "reason", err.Error())
	}
	s.unauthorized(r, stun.CodeUnauthorized)
}

// unauthorized answers a request without valid credentials, within the answer cap: code
// (401, 400 or 438) with REALM and a fresh NONCE, and the password algorithms on offer. It
// is not signed: there is no key to sign it with.
func (s *Server) unauthorized(r *request, code stun.ErrorCode) {
	switch {
	case !s.underCap(r, s.unauth, s.meters.unauthDropped):
	case code == stun.CodeBadRequest:
		s.reject(r, code)
	default:
		s.reject(r, code, stun.NewRealm(s.cfg.Realm), s.nonces.issue(r.five.client.Addr(), r.now), passwordAlgorithms)
	}
}

// underCap applies an answer cap to r (that of requests without valid credentials, or of
// Binding requests): false, and the request refused and counted as dropped, when r is over
// it.
func (s *Server) underCap(r *request, cap *iplimit.Limiter, dropped *metrics.Counter) bool {
	if r.w.allow(cap, r.five.client, r.now) {
		return true
	}
	dropped.Inc()
	r.w.refuse()
	return false
}

// nonceLifetime is how long a nonce stays valid: an hour, as RFC 8656 section 4 suggests.
const nonceLifetime = time.Hour

// nonceCookie starts every nonce (RFC 8489 section 9.2): "obMatJos2" and the security
// feature set, base64 of 24 bits with bit 0, password algorithms, set ("gAAA"). It tells
// RFC 8489 clients that PASSWORD-ALGORITHMS in a 401 is authentic.
const nonceCookie = "obMatJos2gAAA"

// nonces makes and checks nonces without keeping any: a nonce is the cookie, the time it
// was made, and an HMAC of that time and the client's IP under a key of this process. A
// nonce of another client, of a previous run or older than nonceLifetime is stale (438),
// and the client retries with the fresh one that comes with the 438.
type nonces struct{ key [32]byte }

func newNonces() *nonces {
	n := &nonces{}
	_, _ = rand.Read(n.key[:])
	return n
}

// nonceMACSize is how much of the HMAC a nonce carries.
const nonceMACSize = 12

// issue returns a fresh nonce for a client at ip.
func (n *nonces) issue(ip netip.Addr, now time.Time) stun.Nonce {
	var raw [8 + nonceMACSize]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.Unix()))
	copy(raw[8:], n.mac(raw[:8], ip))
	return stun.NewNonce(nonceCookie + base64.RawURLEncoding.EncodeToString(raw[:]))
}

// valid reports whether nonce is one issue made for ip less than nonceLifetime ago.
func (n *nonces) valid(nonce stun.Nonce, ip netip.Addr, now time.Time) bool {
	rest, ok := strings.CutPrefix(string(nonce), nonceCookie)
	if !ok {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) != 8+nonceMACSize || !hmac.Equal(raw[8:], n.mac(raw[:8], ip)) {
		return false
	}
	made := time.Unix(int64(binary.BigEndian.Uint64(raw[:8])), 0)
	return !now.Before(made) && now.Sub(made) < nonceLifetime
}

func (n *nonces) mac(stamp []byte, ip netip.Addr) []byte {
	h := hmac.New(sha256.New, n.key[:])
	h.Write(stamp)
	b := ip.Unmap().As16()
	h.Write(b[:])
	return h.Sum(nil)[:nonceMACSize]
}

// reject answers a request with an error code and extra attributes, counted by its code.
func (s *Server) reject(r *request, code stun.ErrorCode, extra ...stun.Setter) {
	s.meters.errorResponse(int(code))
	r.w.respond(s.build(r, stun.ClassErrorResponse, append([]stun.Setter{code}, extra...)...), r.five.client)
}

// succeed answers an authenticated request with a success response carrying attrs.
func (s *Server) succeed(r *request, attrs ...stun.Setter) {
	r.w.respond(s.build(r, stun.ClassSuccessResponse, attrs...), r.five.client)
}

// build makes the answer of class to r with attrs, signed when r was authenticated, with
// FINGERPRINT when r had one.
func (s *Server) build(r *request, class stun.MessageClass, attrs ...stun.Setter) []byte {
	all := append([]stun.Setter{&stun.Message{TransactionID: r.msg.TransactionID},
		stun.NewType(r.msg.Type.Method, class)}, attrs...)
	switch {
	case r.key != nil && r.sha256:
		all = append(all, turnwire.MessageIntegritySHA256(r.key))
	case r.key != nil:
		all = append(all, stun.MessageIntegrity(r.key))
	}
	if r.msg.Contains(stun.AttrFingerprint) {
		all = append(all, stun.Fingerprint)
	}
	resp, err := stun.Build(all...)
	if err != nil {
		s.cfg.Log.Error("building a STUN answer failed", "method", r.msg.Type.Method.String(), "err", err)
		return nil
	}
	return resp.Raw
}

// binding answers a Binding request (RFC 8489): XOR-MAPPED-ADDRESS, SOFTWARE if set,
// FINGERPRINT; 420 for an unknown comprehension-required attribute. The answers are capped
// per source like 401s: a Binding answer is larger than the request.
func (s *Server) binding(r *request) {
	s.meters.bindings.Inc()
	if !s.underCap(r, s.bindings, s.meters.bindingDropped) {
		return
	}
	if unknown := turnwire.UnknownRequired(r.msg); unknown != nil {
		s.reject(r, stun.CodeUnknownAttribute, stun.UnknownAttributes(unknown))
		return
	}
	setters := []stun.Setter{&stun.Message{TransactionID: r.msg.TransactionID}, stun.BindingSuccess,
		turnwire.XORAddressAttr{Type: stun.AttrXORMappedAddress, Addr: r.five.client}}
	if s.software != nil {
		setters = append(setters, s.software)
	}
	resp, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err == nil {
		r.w.respond(resp.Raw, r.five.client)
	}
}

// decodeMessage parses b into m and reports whether it is a STUN message to look at any
// further: one that does not parse, or whose FINGERPRINT does not match (RFC 8489 section
// 7.3), is dropped silently and counted.
func (s *Server) decodeMessage(m *stun.Message, b []byte) bool {
	m.Raw = b
	if m.Decode() != nil {
		s.meters.dropped[dropMalformed].Inc()
		return false
	}
	if m.Contains(stun.AttrFingerprint) && stun.Fingerprint.Check(m) != nil {
		s.meters.dropped[dropFingerprint].Inc()
		return false
	}
	return true
}
