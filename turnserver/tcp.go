package turnserver

import (
	"context"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/relay"
)

// RFC 6062 TCP allocations: the relay is a TCP listener on a pool port; Connect dials a
// peer from it, a peer may connect to it, and each peer connection is joined to a data
// connection the client opens and binds with ConnectionBind, after which the two only pipe
// bytes.

// connectTimeout bounds a Connect's dial, and bindTimeout the wait for the ConnectionBind of
// a peer connection (RFC 6062 sections 5.2 and 5.3: at least 30 seconds each).
const (
	connectTimeout = 30 * time.Second
	bindTimeout    = 30 * time.Second
)

// tcpRelay is the relay of a TCP allocation.
type tcpRelay struct {
	s      *Server
	a      *allocation
	ln     net.Listener
	public netip.AddrPort
	ctx    context.Context // done once the relay closes: ends the dials of Connects
	cancel context.CancelFunc

	mu    sync.Mutex                   // guards conns and the fields of the relay's peerConns
	conns map[netip.AddrPort]*peerConn // by peer, dialling or pending or bound
	once  sync.Once
}

// peerConn is one connection to a peer, from a Connect or accepted. conn and data are
// guarded by its relay's mu.
type peerConn struct {
	t     *tcpRelay
	id    uint32
	peer  netip.AddrPort
	conn  net.Conn    // nil while dialling
	data  *streamConn // the client's data connection, once bound
	timer *time.Timer // ends it if no ConnectionBind comes in time
	once  sync.Once
}

func (s *Server) newTCPRelay(a *allocation, fam relay.Addrs) (*tcpRelay, error) {
	ln, err := relay.ListenTCP(s.cfg.Pool, fam.Bind)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &tcpRelay{s: s, a: a, ln: ln, ctx: ctx, cancel: cancel,
		public: netip.AddrPortFrom(fam.Public, addrPortOf(ln.Addr()).Port()),
		conns:  map[netip.AddrPort]*peerConn{}}, nil
}

// accepted takes a peer's connection (RFC 6062 section 5.3): from a source the policy
// allows, with a permission, within the limits; the client is told with a
// ConnectionAttempt indication.
func (t *tcpRelay) accepted(conn net.Conn) {
	s := t.s
	peer := addrPortOf(conn.RemoteAddr())
	exp, ok := t.a.peers.Load().perms[peer.Addr()]
	var pc *peerConn
	switch {
	case !s.cfg.Policy.PermitSource(relay.TCP, peer):
		s.meters.peerDenied[deniedInbound].Inc()
	case !ok || time.Now().UnixNano() >= exp:
		s.meters.dropped[dropNoPermission].Inc()
	default:
		pc, _ = t.add(peer, conn) // nil past a limit, which add counts
	}
	if pc == nil {
		_ = conn.Close()
		return
	}
	ind, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodConnectionAttempt, stun.ClassIndication),
		turnwire.XORAddressAttr{Type: stun.AttrXORPeerAddress, Addr: peer}, turnwire.ConnectionIDAttr(pc.id))
	if err == nil {
		t.a.client.respond(ind.Raw, t.a.five.client)
	}
}

// add registers a peer connection (conn nil: still dialling) within the limits, and
// starts its wait for a ConnectionBind once connected. If it cannot, the code is a
// Connect's answer: 446 when the peer has a connection, 508 past a limit or once the relay
// has closed.
func (t *tcpRelay) add(peer netip.AddrPort, conn net.Conn) (*peerConn, stun.ErrorCode) {
	s := t.s
	lim := s.limits.Load()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.ctx.Err() != nil:
		return nil, stun.CodeInsufficientCapacity
	case t.conns[peer] != nil:
		return nil, stun.CodeConnAlreadyExists
	case lim.ConnectionsPerAllocation > 0 && len(t.conns) >= lim.ConnectionsPerAllocation:
		s.meters.tcpRefused[refusedPerAllocation].Inc()
		return nil, stun.CodeInsufficientCapacity
	}
	pc := &peerConn{t: t, peer: peer, conn: conn}
	if !s.table.registerConn(pc, lim.TCPConnections) {
		s.meters.tcpRefused[refusedTotal].Inc()
		return nil, stun.CodeInsufficientCapacity
	}
	t.conns[peer] = pc
	if conn != nil {
		pc.awaitBind()
	}
	return pc, 0
}

// registerConn gives pc a CONNECTION-ID and counts it, within total (0: no limit).
func (t *table) registerConn(pc *peerConn, total int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if total > 0 && len(t.conns) >= total {
		return false
	}
	for pc.id == 0 || t.conns[pc.id] != nil {
		pc.id = rand.Uint32()
	}
	t.conns[pc.id] = pc
	return true
}

func (t *table) peerConn(id uint32) *peerConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns[id]
}

// bind joins the connection, if it is connected and not bound yet, to data; false if not.
func (pc *peerConn) bind(data *streamConn) bool {
	pc.t.mu.Lock()
	defer pc.t.mu.Unlock()
	if pc.conn == nil || pc.data != nil || pc.t.ctx.Err() != nil {
		return false
	}
	pc.data = data
	pc.timer.Stop()
	return true
}

func (t *table) forgetConn(pc *peerConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns[pc.id] == pc {
		delete(t.conns, pc.id)
	}
}

// connCount returns the live peer connections, for the metrics.
func (t *table) connCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// awaitBind ends the connection unless a ConnectionBind joins it within bindTimeout;
// pc.t.mu is held.
func (pc *peerConn) awaitBind() {
	pc.timer = time.AfterFunc(bindTimeout, func() {
		pc.t.mu.Lock()
		unbound := pc.data == nil
		pc.t.mu.Unlock()
		if unbound {
			pc.close()
		}
	})
}

// close closes the peer connection and its data connection, once.
func (pc *peerConn) close() {
	pc.once.Do(func() {
		pc.t.mu.Lock()
		conn, data := pc.conn, pc.data
		if pc.timer != nil {
			pc.timer.Stop()
		}
		if pc.t.conns[pc.peer] == pc {
			delete(pc.t.conns, pc.peer)
		}
		pc.t.mu.Unlock()
		if conn != nil {
			_ = conn.Close()
		}
		if data != nil {
			data.close()
		}
		pc.t.s.table.forgetConn(pc)
	})
}

// close closes the relay's listener and every connection of it, once.
func (t *tcpRelay) close() {
	t.once.Do(func() {
		_ = t.ln.Close()
		t.cancel()
		t.mu.Lock()
		conns := slices.Collect(maps.Values(t.conns))
		t.mu.Unlock()
		for _, pc := range conns {
			pc.close()
		}
		t.s.cfg.Pool.Put(int(t.public.Port()))
	})
}

// connect handles a Connect request (RFC 6062 section 5.2): the relay dials the peer, and
// the answer, with the new CONNECTION-ID or 447, comes when the dial ends.
func (s *Server) connect(r *request) (stun.ErrorCode, []stun.Setter) {
	a := r.alloc
	if a.tcp == nil || len(r.peers) != 1 {
		return stun.CodeBadRequest, nil
	}
	peer := r.peers[0]
	if code := s.checkPeer(a, peer, relay.TCP, false, deniedConnect); code != 0 {
		return code, nil
	}
	if !a.permit([]netip.Addr{peer.Addr()}, s.limits.Load().Permissions, r.now) {
		s.meters.limitRejections[limitPermissions].Inc()
		return stun.CodeInsufficientCapacity, nil
	}
	pc, code := a.tcp.add(peer, nil)
	if code != 0 {
		return code, nil
	}
	later := r.detach()
	s.wg.Go(func() { s.dial(later, pc) })
	return 0, nil
}

// dial connects pc to its peer from the relay's port and answers the Connect r.
func (s *Server) dial(r *request, pc *peerConn) {
	ctx, cancel := context.WithTimeout(pc.t.ctx, connectTimeout)
	defer cancel()
	// From the bound address: the advertised one may be a 1:1 NAT's, not this host's.
	conn, err := relay.DialTCP(ctx, addrPortOf(pc.t.ln.Addr()), pc.peer)
	pc.t.mu.Lock()
	closed := pc.t.ctx.Err() != nil
	if err == nil && !closed {
		pc.conn = conn
		pc.awaitBind()
	}
	pc.t.mu.Unlock()
	switch {
	case closed: // the relay's close has closed pc, which was in its conns
		if conn != nil {
			_ = conn.Close()
		}
	case err != nil:
		pc.close()
		s.reject(r, stun.CodeConnTimeoutOrFailure)
	default:
		s.succeed(r, turnwire.ConnectionIDAttr(pc.id))
	}
}

// connectionBind handles a ConnectionBind request (RFC 6062 section 5.4), which comes over
// a new connection of the client's: it joins that connection to the pending peer
// connection of its CONNECTION-ID, after which the two pipe bytes.
func (s *Server) connectionBind(r *request) (stun.ErrorCode, []stun.Setter) {
	v, _ := r.msg.Get(stun.AttrConnectionID) // absent: no bytes, which the decoder refuses
	id, err := turnwire.ConnectionID(v)
	var pc *peerConn // the one it names, if it comes over a stream without an allocation
	if err == nil && r.conn != nil && r.conn.alloc.Load() == nil {
		pc = s.table.peerConn(id)
	}
	switch {
	case pc == nil:
		return stun.CodeBadRequest, nil
	case pc.t.a.user != r.user:
		return stun.CodeWrongCredentials, nil
	case !pc.bind(r.conn):
		return stun.CodeBadRequest, nil
	}
	s.succeed(r)
	r.conn.bound = pc
	r.conn.awaitAllocation(0)
	return 0, nil
}

// pipe copies bytes between the peer connection and its data connection c until either
// side closes, counted as the allocation's traffic; it runs on c's goroutine.
func (pc *peerConn) pipe(c *streamConn) {
	defer pc.close()
	traffic := &pc.t.a.traffic
	pc.t.s.wg.Go(func() {
		defer pc.close()
		_, _ = io.Copy(&countingWriter{w: c, flow: &traffic.FromPeer}, pc.conn)
	})
	_, _ = io.Copy(&countingWriter{w: pc.conn, flow: &traffic.ToPeer}, c.r)
}

// countingWriter counts what it writes as one relayed "packet" per write. It has no
// ReadFrom, so io.Copy goes through Write even to a net.Conn that has one.
type countingWriter struct {
	w    io.Writer
	flow *relay.Flow
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	if n > 0 {
		cw.flow.Add(n)
	}
	return n, err
}

// detach copies the request, whose message is its connection's scratch space, for an
// answer given later from another goroutine.
func (r *request) detach() *request {
	m := &stun.Message{Raw: append([]byte(nil), r.msg.Raw...)}
	_ = m.Decode() // it decoded before: the same bytes do again
	d := *r
	d.msg = m
	return &d
}
