package turnserver

import (
	"crypto/rand"
	"errors"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/internal/udpbatch"
	"github.com/ferry-rtc/ferry/relay"
)

// allocate handles an Allocate request (RFC 8656 section 7.2, RFC 6062 section 5.1, RFC
// 6156 and the dual-stack ADDITIONAL-ADDRESS-FAMILY of RFC 8656 section 7.2).
func (s *Server) allocate(r *request) (stun.ErrorCode, []stun.Setter) {
	a := s.allocationOf(r)
	if a != nil && a.createTx == r.msg.TransactionID && a.user == r.user {
		r.w.respond(a.createResp, r.five.client) // a retransmission: the same answer
		return 0, nil
	}
	if s.drain.Load() != nil {
		return s.drainAnswer()
	}
	if a != nil {
		return stun.CodeAllocMismatch, nil
	}
	spec, code := s.allocationSpec(r)
	if code != 0 {
		return code, nil
	}
	slot, limit := s.quotaSlot(r.user)
	if !s.admit(slot, limit, s.limits.Load().AllocationsTotal) {
		s.meters.quota.Inc()
		s.cfg.Log.Info("allocation quota reached", "user", r.user, "client", r.five.client.String())
		return stun.CodeAllocQuotaReached, nil
	}
	a = s.newAllocation(r, slot)
	extra, err := s.openRelays(a, spec)
	if err != nil {
		s.table.release(slot)
		s.cfg.Log.Info("allocation failed", "user", r.user, "client", r.five.client.String(), "err", err)
		return codeOf(err), nil
	}
	a.refresh(s.lifetime(r.msg), r.now)
	a.createTx, a.createResp = r.msg.TransactionID, s.allocated(r, a, extra)
	s.trackKernel(a, r)
	if !s.table.add(a) { // another Allocate of this 5-tuple won the race
		s.table.release(slot)
		a.endKernel()
		a.closeRelays()
		return stun.CodeAllocMismatch, nil
	}
	s.started(r, a)
	return 0, nil
}

// allocationSpec is what an Allocate asks for.
type allocationSpec struct {
	tcp bool // an RFC 6062 TCP relay
	// families are the relay families to allocate: one, or IPv4 and then IPv6 with
	// ADDITIONAL-ADDRESS-FAMILY, where IPv6 may fail on its own.
	families []relay.Addrs
	token    *[8]byte // RESERVATION-TOKEN, if any
	even     bool     // EVEN-PORT
	reserve  bool     // EVEN-PORT with R: keep the next port for a later Allocate
	df       bool     // DONT-FRAGMENT
}

// allocationSpec reads and checks what an Allocate asks for: the error code if it cannot
// be had.
func (s *Server) allocationSpec(r *request) (allocationSpec, stun.ErrorCode) {
	m := r.msg
	var spec allocationSpec
	v, _ := m.Get(stun.AttrRequestedTransport) // absent: no bytes, which the decoder refuses
	proto, err := turnwire.RequestedTransport(v)
	switch {
	case err != nil:
		return spec, stun.CodeBadRequest
	case proto == turnwire.ProtoTCP && (!r.five.stream || r.l.proto == "dtls"):
		return spec, stun.CodeBadRequest // RFC 6062 section 5.1: TCP relays for TCP and TLS clients only
	case proto != turnwire.ProtoUDP && proto != turnwire.ProtoTCP:
		return spec, stun.CodeUnsupportedTransProto
	}
	spec.tcp = proto == turnwire.ProtoTCP
	if code := s.readPorts(m, &spec); code != 0 {
		return spec, code
	}
	return spec, s.readFamilies(m, &spec)
}

// readPorts reads RESERVATION-TOKEN, EVEN-PORT and DONT-FRAGMENT.
func (s *Server) readPorts(m *stun.Message, spec *allocationSpec) stun.ErrorCode {
	if v, err := m.Get(stun.AttrReservationToken); err == nil {
		tok, err := turnwire.ReservationToken(v)
		if err != nil || m.Contains(stun.AttrEvenPort) || spec.tcp {
			return stun.CodeBadRequest
		}
		spec.token = &tok
	}
	if v, err := m.Get(stun.AttrEvenPort); err == nil {
		reserve, err := turnwire.EvenPort(v)
		if err != nil || spec.tcp {
			return stun.CodeBadRequest
		}
		spec.even, spec.reserve = true, reserve
	}
	spec.df = m.Contains(stun.AttrDontFragment)
	if spec.df && spec.tcp {
		return stun.CodeBadRequest
	}
	return 0
}

// readFamilies reads REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY (RFC 8656
// section 7.2): IPv4 when neither is there; both, or either with a RESERVATION-TOKEN, are
// 400; a family without relay addresses is 440.
func (s *Server) readFamilies(m *stun.Message, spec *allocationSpec) stun.ErrorCode {
	requested, reqErr := m.Get(stun.AttrRequestedAddressFamily)
	additional, addErr := m.Get(turnwire.AttrAdditionalAddressFamily)
	hasReq, hasAdd := reqErr == nil, addErr == nil
	if (hasReq && hasAdd) || ((hasReq || hasAdd) && spec.token != nil) {
		return stun.CodeBadRequest
	}
	first := s.cfg.V4
	if hasReq {
		fam, err := turnwire.AddressFamily(requested)
		if err != nil {
			return stun.CodeBadRequest
		}
		if fam == turnwire.FamilyIPv6 {
			first = s.cfg.V6
		}
	}
	if !first.Enabled() {
		return stun.CodeAddrFamilyNotSupported
	}
	spec.families = []relay.Addrs{first}
	if hasAdd {
		fam, err := turnwire.AddressFamily(additional)
		if err != nil || fam != turnwire.FamilyIPv6 || spec.tcp || spec.reserve {
			return stun.CodeBadRequest // one reservation token cannot name two families' ports
		}
		spec.families = append(spec.families, s.cfg.V6)
	}
	return 0
}

// Errors of opening relays, by the code they are answered with.
var (
	errNoReservation = errors.New("turnserver: no such reservation")
	errNoDF          = errors.New("turnserver: cannot set the DF bit")
)

func codeOf(err error) stun.ErrorCode {
	if errors.Is(err, errNoDF) {
		return stun.CodeUnknownAttribute
	}
	return stun.CodeInsufficientCapacity // no free port, no reservation (RFC 8656: 508)
}

// openRelays binds the relay sockets spec asks for; extra are attributes the answer
// carries besides the relayed addresses (RESERVATION-TOKEN, ADDRESS-ERROR-CODE).
func (s *Server) openRelays(a *allocation, spec allocationSpec) ([]stun.Setter, error) {
	if spec.tcp {
		t, err := s.newTCPRelay(a, spec.families[0])
		a.tcp = t
		return nil, err
	}
	var extra []stun.Setter
	for i, fam := range spec.families {
		rl, token, err := s.openUDPRelay(a, fam, spec)
		if err != nil && i > 0 { // the additional family failed on its own
			extra = append(extra, addressError(fam))
			continue
		}
		if err != nil {
			a.closeRelays()
			return nil, err
		}
		a.relays = append(a.relays, rl)
		if token != nil {
			extra = append(extra, turnwire.ReservationTokenAttr(*token))
		}
	}
	return extra, nil
}

// addressError is the ADDRESS-ERROR-CODE of an additional family whose relay failed (RFC
// 8656 section 7.2): 440 when it has no relay address, 508 when it had no free port.
func addressError(fam relay.Addrs) turnwire.AddressErrorCodeAttr {
	e := turnwire.AddressErrorCodeAttr{Family: turnwire.FamilyIPv6, Code: stun.CodeInsufficientCapacity, Reason: "no free IPv6 relay port"}
	if !fam.Enabled() {
		e.Code, e.Reason = stun.CodeAddrFamilyNotSupported, "no IPv6 relay"
	}
	return e
}

// openUDPRelay binds one UDP relay of family fam as spec asks: the reserved port of a
// token, an even port (reserving the next one), or any port.
func (s *Server) openUDPRelay(a *allocation, fam relay.Addrs, spec allocationSpec) (*udpRelay, *[8]byte, error) {
	var rl *udpRelay
	var token *[8]byte
	var err error
	switch {
	case spec.token != nil:
		rl, err = s.claimReservation(a, *spec.token)
	case !fam.Enabled():
		err = relay.ErrPoolExhausted
	default:
		rl, token, err = s.newUDPRelay(a, fam, spec.even, spec.reserve)
	}
	if err == nil && spec.df {
		if err = setDontFragment(rl.conn); err != nil {
			rl.close()
			err = errors.Join(errNoDF, err)
		}
	}
	return rl, token, err
}

// refresh handles a Refresh request (RFC 8656 section 8): a new lifetime, or LIFETIME 0
// to delete the allocation. A REQUESTED-ADDRESS-FAMILY must name a family the allocation
// relays (443 otherwise); the lifetime is the whole allocation's.
func (s *Server) refresh(r *request) (stun.ErrorCode, []stun.Setter) {
	a := r.alloc
	if v, err := r.msg.Get(stun.AttrRequestedAddressFamily); err == nil {
		fam, err := turnwire.AddressFamily(v)
		if err != nil {
			return stun.CodeBadRequest, nil
		}
		if !a.reaches(fam == turnwire.FamilyIPv6) {
			return stun.CodePeerAddrFamilyMismatch, nil
		}
	}
	d := s.lifetime(r.msg)
	if d == 0 {
		s.end(a, "deleted")
	} else {
		a.refresh(d, r.now)
	}
	s.succeed(r, turnwire.LifetimeAttr(d))
	return 0, nil
}

// lifetime is the lifetime an Allocate or Refresh gets (RFC 8656 sections 7.2 and 8): the
// LIFETIME asked for, else the default, and never more than the maximum; 0 only for a
// Refresh that asks for 0 (which deletes the allocation).
func (s *Server) lifetime(m *stun.Message) time.Duration {
	d := defaultLifetime
	if v, err := m.Get(stun.AttrLifetime); err == nil {
		if asked, err := turnwire.Lifetime(v); err == nil && (asked > 0 || m.Type.Method == stun.MethodRefresh) {
			d = asked
		}
	}
	if max := s.limits.Load().MaxLifetime; max > 0 {
		d = min(d, max)
	}
	return d
}

// quotaSlot is what a user's allocations count under, and its limit.
func (s *Server) quotaSlot(user string) (string, int) {
	if s.cfg.QuotaGroup != nil {
		if group, limit, ok := s.cfg.QuotaGroup(user); ok {
			return group, limit
		}
	}
	return user, s.limits.Load().AllocationsPerUser
}

// admit takes a place in slot's quota of limit (0: none) and in the total: with a shared
// quota, the allocations other servers hold of slot count against its limit.
func (s *Server) admit(slot string, limit, total int) bool {
	if limit > 0 && s.cfg.Shared != nil {
		if others, ok := s.cfg.Shared.Others(slot); ok {
			if others >= limit {
				return false
			}
			limit -= others
		}
	}
	return s.table.admit(slot, limit, total)
}

// drainAnswer is the answer to an Allocate while draining: 300 Try Alternate with the
// alternate server if one is configured, else 508 Insufficient Capacity.
func (s *Server) drainAnswer() (stun.ErrorCode, []stun.Setter) {
	if alt := s.drain.Load(); alt.IP != nil {
		return stun.CodeTryAlternate, []stun.Setter{alt}
	}
	return stun.CodeInsufficientCapacity, nil
}

// allocated builds the success response to the Allocate that made a: its relayed
// addresses, lifetime and the client's mapped address, and extra. It is kept for a
// retransmission of the request.
func (s *Server) allocated(r *request, a *allocation, extra []stun.Setter) []byte {
	attrs := make([]stun.Setter, 0, len(a.relays)+4+len(extra))
	for _, addr := range a.relayedAddrs() {
		attrs = append(attrs, turnwire.XORAddressAttr{Type: stun.AttrXORRelayedAddress, Addr: addr})
	}
	attrs = append(attrs, turnwire.LifetimeAttr(a.expiry().Sub(r.now).Round(time.Second)),
		turnwire.XORAddressAttr{Type: stun.AttrXORMappedAddress, Addr: r.five.client})
	return s.build(r, stun.ClassSuccessResponse, append(attrs, extra...)...)
}

// started puts a new allocation to work, once it is in the table: its relays read, its
// stream connection stays open, and the client gets the success response.
func (s *Server) started(r *request, a *allocation) {
	for _, rl := range a.relays {
		rl.start()
	}
	if a.tcp != nil {
		s.wg.Go(func() { s.acceptLoop(a.tcp.ln, a.tcp.accepted) })
	}
	if r.conn != nil {
		r.conn.alloc.Store(a)
		r.conn.awaitAllocation(0) // it may stay open as long as a lives
	}
	s.meters.allocationCreated(a) // before the answer: a client that has it sees it counted
	r.w.respond(a.createResp, r.five.client)
	s.cfg.Log.Info("allocation created", "id", a.id, "user", a.user, "client", a.five.client.String(),
		"transport", a.transport, "relay", a.relayAddrs())
}

// reservationLifetime is how long a port reserved by EVEN-PORT waits for the Allocate that
// claims it with its RESERVATION-TOKEN (RFC 8656 section 7.2 suggests 30 seconds).
const reservationLifetime = 30 * time.Second

// reservations are the ports EVEN-PORT reserved, each held by a bound socket until claimed
// or expired: only a socket keeps another program off the port.
type reservations struct {
	mu   sync.Mutex
	held map[[8]byte]*reservation
}

type reservation struct {
	conn    *udpbatch.Conn
	port    int
	fam     relay.Addrs
	expires time.Time
}

// newUDPRelay binds a relay for a on a free pool port of fam: any port, or with even an even
// one (RFC 8656 section 7.2, EVEN-PORT), and with reserve then holds the next port too,
// returning its token. The caller starts the relay.
func (s *Server) newUDPRelay(a *allocation, fam relay.Addrs, even, reserve bool) (*udpRelay, *[8]byte, error) {
	var rl *udpRelay
	var token *[8]byte
	err := relay.Bind(s.cfg.Pool, relay.UDP, even, reserve, func(port int) error {
		conn, err := relay.BindUDP(fam.Bind, port)
		if err != nil {
			return err
		}
		if reserve {
			tok, err := s.reserved.hold(fam, port+1)
			if err != nil {
				_ = conn.Close()
				return err
			}
			token = &tok
		}
		rl = s.relayOn(a, conn, port, fam.Public)
		return nil
	})
	return rl, token, err
}

// hold binds port (taken from the pool) and keeps it under a new token.
func (rs *reservations) hold(fam relay.Addrs, port int) ([8]byte, error) {
	var token [8]byte
	bc, err := relay.BindUDP(fam.Bind, port)
	if err != nil {
		return token, err
	}
	_, _ = rand.Read(token[:])
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.held[token] = &reservation{conn: bc, port: port, fam: fam, expires: time.Now().Add(reservationLifetime)}
	return token, nil
}

// claimReservation makes the socket a token holds the relay of a: 508 when the token is
// unknown or expired.
func (s *Server) claimReservation(a *allocation, token [8]byte) (*udpRelay, error) {
	s.reserved.expire(time.Now(), s.cfg.Pool) // those expired but not swept yet go first
	s.reserved.mu.Lock()
	res := s.reserved.held[token]
	delete(s.reserved.held, token)
	s.reserved.mu.Unlock()
	if res == nil {
		return nil, errNoReservation
	}
	return s.relayOn(a, res.conn, res.port, res.fam.Public), nil
}

// expire lets go of the reservations nobody claimed in time.
func (rs *reservations) expire(now time.Time, pool *relay.Pool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for token, res := range rs.held {
		if now.After(res.expires) {
			delete(rs.held, token)
			_ = res.conn.Close()
			pool.Put(res.port)
		}
	}
}
