// Package dtlsgate is a DTLS server listener that a flood of ClientHellos cannot make hold
// memory or goroutines without bound, as pion/dtls's own listener does (it makes a
// connection, and goroutines for it, for each new source address, and keeps it until
// its handshake times out).
//
// One loop reads the UDP socket and keeps the table of peers. A datagram from a source
// with no peer is looked at without keeping anything: only a ClientHello that can begin a
// handshake makes a peer, and only while the handshakes in progress, in all and from its
// source IP, are under their caps; anything else is dropped and counted. A peer is a
// net.PacketConn the loop feeds; pion/dtls runs its handshake, under a time bound, and
// only a finished one is handed to Accept. A peer that has not returned its cookie in
// cookieTimeout, or whose handshake fails or runs out of time, is dropped; a connection's
// Close frees its peer.
//
// The cookie exchange (RFC 6347 section 4.2.1) is pion's, and so a peer exists from the
// first ClientHello: pion/dtls v3 cannot take up a handshake after a HelloVerifyRequest
// the gate sent itself. Its server starts every handshake at message_seq 0 and, with its
// own exchange off, answers with a ServerHello of message_seq 0, while a client that
// received a HelloVerifyRequest sends its second ClientHello as message 1 and wants the
// ServerHello as message 1 (pion's client and OpenSSL alike). The sequence numbers are
// part of the Finished hash, so they cannot be rewritten on the way either. What the gate
// can do is bound the peers that have not returned a cookie: by the caps and by the
// short cookieTimeout.
package dtlsgate

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/ferry-rtc/ferry/internal/iplimit"
)

// cookieTimeout is how long a peer may take to return the cookie of pion's
// HelloVerifyRequest. A client on a path that loses the request or its answer resends
// after a second, and pion resends its request after a second too: three seconds allow
// for a retransmission each way. A spoofed source never answers and holds its place this
// long, not the whole handshake timeout.
const cookieTimeout = 3 * time.Second

// Limits cap the handshakes in progress: from a peer's first ClientHello until its
// connection is accepted or dropped. Zero means no limit.
type Limits struct {
	Handshakes      int // in all
	HandshakesPerIP int // from one source IP; an IPv6 source counts by its /64
}

// Refusal says which cap refused a new peer.
type Refusal int

// Refusals, indexed from 0.
const (
	RefusedTotal Refusal = iota
	RefusedPerIP
	Refusals // how many kinds there are
)

// Result says how a handshake ended.
type Result int

// Results, indexed from 0.
const (
	HandshakeOK            Result = iota
	HandshakeFailed               // pion's error: an alert, a bad message, the listener closing
	HandshakeTimeout              // Config.Timeout ran out
	HandshakeCookieTimeout        // the client did not return its cookie in cookieTimeout
	Results                       // how many kinds there are
)

// Drop says why a datagram was dropped.
type Drop int

// Drops, indexed from 0.
const (
	DroppedUnknown   Drop = iota // from a source with no peer, and not a ClientHello that begins a handshake
	DroppedQueueFull             // its peer's reader is behind
	DroppedOversize              // larger than maxDatagram
	Drops                        // how many kinds there are
)

// Events hears what the gate does, to count it. Its methods are called from the read
// loop and the handshakes, concurrently.
type Events interface {
	HelloVerify()          // pion sent a HelloVerifyRequest
	Refused(Refusal)       // a ClientHello from a new source met a full cap
	HandshakeStarted()     // a peer was made
	HandshakeEnded(Result) // its handshake ended, its connection handed on or closed
	Dropped(Drop)
}

// Config is what New needs.
type Config struct {
	Options []dtls.ServerOption // pion's server options: certificate, logger
	Limits  func() Limits       // read at each new peer, so a change applies at once
	Timeout time.Duration       // bound on a whole handshake
	Events  Events
	// CookieTimeout replaces cookieTimeout when positive.
	CookieTimeout time.Duration
}

var errConfig = errors.New("dtlsgate: Limits, Timeout and Events are required")

// Listener is a DTLS net.Listener on a UDP socket it owns.
type Listener struct {
	sock     *net.UDPConn
	cfg      Config
	accepted chan net.Conn
	ctx      context.Context // done once Close starts
	stop     context.CancelFunc
	wg       sync.WaitGroup // the read loop and the handshakes
	closing  sync.Once

	mu          sync.Mutex
	peers       map[netip.AddrPort]*peer
	handshaking int
	perIP       map[netip.Addr]int // handshakes in progress by iplimit.Key; no zero entries
}

// New serves DTLS on sock, which the Listener owns from now on.
func New(sock *net.UDPConn, cfg Config) (*Listener, error) {
	if cfg.Limits == nil || cfg.Timeout <= 0 || cfg.Events == nil {
		return nil, errConfig
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &Listener{
		sock: sock, cfg: cfg, accepted: make(chan net.Conn), ctx: ctx, stop: stop,
		peers: map[netip.AddrPort]*peer{}, perIP: map[netip.Addr]int{},
	}
	l.wg.Add(1)
	go l.readLoop()
	return l, nil
}

// Accept returns the next connection whose handshake is done.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Addr is the socket's address.
func (l *Listener) Addr() net.Addr { return l.sock.LocalAddr() }

// Close stops the read loop, ends the handshakes in progress, closes every peer (a
// connection already accepted then fails its reads) and waits for all of it.
func (l *Listener) Close() error {
	var err error
	l.closing.Do(func() {
		l.stop()
		err = l.sock.Close()
		l.mu.Lock()
		peers := make([]*peer, 0, len(l.peers))
		for _, p := range l.peers {
			peers = append(peers, p)
		}
		l.mu.Unlock()
		for _, p := range peers {
			_ = p.Close()
		}
		l.wg.Wait()
	})
	return err
}

func (l *Listener) readLoop() {
	defer l.wg.Done()
	buf := make([]byte, maxDatagram+1) // one byte more shows a datagram too large
	for {
		n, addr, err := l.sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			continue // an open UDP socket's read error is about one datagram, not the socket
		}
		if n > maxDatagram {
			l.cfg.Events.Dropped(DroppedOversize)
			continue
		}
		l.dispatch(buf[:n], netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()))
	}
}

// dispatch hands a datagram to its peer, or looks at it as the start of a new one.
func (l *Listener) dispatch(b []byte, addr netip.AddrPort) {
	l.mu.Lock()
	p := l.peers[addr]
	l.mu.Unlock()
	if p == nil {
		l.admit(b, addr)
		return
	}
	if !p.deliver(b) {
		l.cfg.Events.Dropped(DroppedQueueFull)
	}
}

// admit makes a peer for a datagram from a new source if it opens a handshake and the
// caps have room, and starts its handshake.
func (l *Listener) admit(b []byte, addr netip.AddrPort) {
	if !opensHandshake(b) {
		l.cfg.Events.Dropped(DroppedUnknown)
		return
	}
	lim, ip := l.cfg.Limits(), iplimit.Key(addr.Addr())
	l.mu.Lock()
	if refusal, ok := l.full(ip, lim); ok {
		l.mu.Unlock()
		l.cfg.Events.Refused(refusal)
		return
	}
	p := newPeer(l, addr)
	l.peers[addr] = p
	l.handshaking++
	l.perIP[ip]++
	l.mu.Unlock()
	l.cfg.Events.HandshakeStarted()
	p.deliver(b)
	l.wg.Add(1) // the loop holds a count, so Close's Wait cannot have returned
	go l.handshake(p)
}

// full reports which cap, if any, leaves no room for a handshake from ip. l.mu is held.
func (l *Listener) full(ip netip.Addr, lim Limits) (Refusal, bool) {
	if lim.HandshakesPerIP > 0 && l.perIP[ip] >= lim.HandshakesPerIP {
		return RefusedPerIP, true
	}
	if lim.Handshakes > 0 && l.handshaking >= lim.Handshakes {
		return RefusedTotal, true
	}
	return 0, false
}

var (
	errCookieTimeout = errors.New("dtlsgate: no cookie returned in time")
	errTimeout       = errors.New("dtlsgate: handshake timed out")
)

// handshake runs pion's handshake with p and hands the connection to Accept, or closes
// it. p counts as a handshake in progress until then.
func (l *Listener) handshake(p *peer) {
	defer l.wg.Done()
	result := HandshakeFailed
	defer func() { l.finish(p, result) }()
	conn, err := dtls.ServerWithOptions(p, p.raddr, l.cfg.Options...)
	if err != nil {
		_ = p.Close()
		return
	}
	ctx, abort := context.WithCancelCause(l.ctx)
	defer abort(nil)
	ctx, cancel := context.WithTimeoutCause(ctx, l.cfg.Timeout, errTimeout)
	defer cancel()
	cookieTimer := time.AfterFunc(l.cookieTimeout(), func() {
		if !p.verified.Load() {
			abort(errCookieTimeout)
		}
	})
	err = conn.HandshakeContext(ctx)
	cookieTimer.Stop()
	if err != nil {
		result = resultOf(context.Cause(ctx))
		_ = conn.Close()
		return
	}
	select {
	case l.accepted <- conn:
		result = HandshakeOK
	case <-l.ctx.Done():
		_ = conn.Close()
	}
}

func (l *Listener) cookieTimeout() time.Duration {
	if l.cfg.CookieTimeout > 0 {
		return l.cfg.CookieTimeout
	}
	return cookieTimeout
}

// resultOf names the end of a failed handshake by its context's cause.
func resultOf(cause error) Result {
	switch {
	case errors.Is(cause, errCookieTimeout):
		return HandshakeCookieTimeout
	case errors.Is(cause, errTimeout):
		return HandshakeTimeout
	}
	return HandshakeFailed
}

// finish ends p's count as a handshake in progress.
func (l *Listener) finish(p *peer, result Result) {
	l.mu.Lock()
	l.handshaking--
	ip := iplimit.Key(p.addr.Addr())
	if l.perIP[ip]--; l.perIP[ip] == 0 {
		delete(l.perIP, ip)
	}
	l.mu.Unlock()
	l.cfg.Events.HandshakeEnded(result)
}

// forget removes a closed peer from the table.
func (l *Listener) forget(p *peer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peers[p.addr] == p {
		delete(l.peers, p.addr)
	}
}
