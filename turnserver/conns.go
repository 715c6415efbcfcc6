package turnserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/relay"
)

// handshakeTimeout bounds a TLS or DTLS handshake, so a client that connects and says
// nothing cannot hold a goroutine forever.
const handshakeTimeout = 10 * time.Second

// streamListener hands pion/turn guarded streamConns, tracks them so Close ends them all,
// and keeps accepting after transient errors: pion's accept loop ends for good on the first
// error it sees (a failed DTLS handshake, EMFILE).
type streamListener struct {
	net.Listener
	guard *guard
	log   *slog.Logger

	mu     sync.Mutex
	conns  map[*streamConn]struct{}
	closed bool
}

func newStreamListener(ln net.Listener, g *guard, log *slog.Logger) *streamListener {
	return &streamListener{Listener: ln, guard: g, log: log, conns: map[*streamConn]struct{}{}}
}

func (l *streamListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		conn, err := l.Listener.Accept()
		if err == nil {
			return l.track(conn)
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		l.log.Warn("accept failed", "listener", l.Addr(), "err", err)
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

func (l *streamListener) track(conn net.Conn) (net.Conn, error) {
	c := &streamConn{Conn: conn, r: bufio.NewReader(conn), guard: l.guard, owner: l}
	client, _ := addrPort(conn.RemoteAddr())
	server, _ := addrPort(conn.LocalAddr())
	c.key = routeKey{client: client, server: server, stream: true}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = conn.Close()
		return nil, net.ErrClosed
	}
	l.conns[c] = struct{}{}
	l.guard.plane.addStream(c.key, c)
	c.awaitAllocation(l.guard.limits.Load().AllocateTimeout)
	return c, nil
}

func (l *streamListener) forget(c *streamConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// Close stops accepting and closes every connection still open.
func (l *streamListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := make([]*streamConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return err
}

// streamConn is one TCP, TLS or DTLS client connection. pion/turn reads it through its own
// framing (STUNConn); streamConn frames first so each STUN message passes the guard, and
// fixes the responses pion v5.1.0 sends without MESSAGE-INTEGRITY. After a successful
// ConnectionBind (RFC 6062) the connection carries raw peer data and both are bypassed.
type streamConn struct {
	net.Conn
	r     *bufio.Reader
	guard *guard
	owner *streamListener
	key   routeKey // the connection's 5-tuple on the data plane

	// readMu serialises Reads: after a ConnectionBind, pion's copy goroutine and its read
	// loop both read the connection until it closes.
	readMu       sync.Mutex
	state        connState
	caps         connCaps // the connection's answer caps; used under readMu
	handshake    sync.Once
	handshakeErr error
	frame        []byte
	pending      []byte      // guarded bytes not yet read by pion
	raw          atomic.Bool // set once a ConnectionBind succeeded
	closeOnce    sync.Once
}

func (c *streamConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.raw.Load() {
		return c.r.Read(p)
	}
	if err := c.finishHandshake(); err != nil {
		return 0, err
	}
	for len(c.pending) == 0 {
		frame, err := c.readFrame()
		if err != nil {
			return 0, err
		}
		if c.guard.fromClient(c.key, frame, &c.state) {
			continue
		}
		if b, pass := c.guard.inspect(frame, c.RemoteAddr(), c.LocalAddr(), c, &c.state); pass {
			c.pending = b
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// finishHandshake runs the TLS/DTLS handshake under a deadline, once. pion does this for
// a *tls.Conn it can see; it cannot see through streamConn.
func (c *streamConn) finishHandshake() error {
	hs, ok := c.Conn.(interface{ HandshakeContext(context.Context) error })
	if !ok {
		return nil
	}
	c.handshake.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		if err := hs.HandshakeContext(ctx); err != nil {
			c.handshakeErr = fmt.Errorf("turnserver: handshake with %s: %w", c.RemoteAddr(), err)
		}
	})
	return c.handshakeErr
}

// readFrame reads one STUN message or ChannelData frame.
func (c *streamConn) readFrame() ([]byte, error) {
	hdr, err := c.r.Peek(channelDataHeaderSize)
	if err != nil {
		return nil, err
	}
	size, err := frameSize(hdr)
	if err != nil {
		return nil, err
	}
	// The buffer grows as the bytes arrive, not as the header announces them: a client
	// that announces 64 KiB frames and sends nothing holds no 64 KiB buffer.
	c.frame = c.frame[:0]
	for len(c.frame) < size {
		chunk := min(size-len(c.frame), frameChunk)
		c.frame = slices.Grow(c.frame, chunk)
		n, err := io.ReadFull(c.r, c.frame[len(c.frame):len(c.frame)+chunk])
		c.frame = c.frame[:len(c.frame)+n]
		if err != nil {
			return nil, err
		}
	}
	return c.frame, nil
}

// frameChunk is how much more of a frame's buffer readFrame allocates at a time.
const frameChunk = 2048

// sendFrames sends ChannelData and Data indications from the data plane to the client, in
// one write (writev on TCP).
func (c *streamConn) sendFrames(frames [][]byte, _ netip.AddrPort) error {
	if len(frames) == 1 {
		_, err := c.Conn.Write(frames[0])
		return err
	}
	g := gathers.Get().(*gather)
	defer gathers.Put(g)
	g.v = append(g.base[:0], frames...)
	_, err := g.v.WriteTo(c.Conn)
	clear(g.base[:len(frames)]) // keep no frame alive
	return err
}

// gather is the scratch of writev: v is what net.Buffers.WriteTo consumes, base the array
// behind it.
type gather struct{ base, v net.Buffers }

var gathers = sync.Pool{New: func() any { return &gather{base: make(net.Buffers, relay.Batch)} }}

// refuse closes the connection: pion's read loop ends at its next read.
func (c *streamConn) refuse() { _ = c.Conn.Close() }

func (c *streamConn) allow(cap *ipLimiter, _ net.Addr, now time.Time) bool {
	return c.caps.allow(cap, now)
}

func (c *streamConn) respond(msg []byte, _ net.Addr) {
	c.guard.sent(msg)
	_, _ = c.Conn.Write(msg)
}

// Write adds MESSAGE-INTEGRITY to the ConnectionBind responses and Connect error responses
// that pion/turn v5.1.0 sends without it (coturn's client rejects them: "Wrong integrity").
// The key is that of the request being answered, which the guard verified on this
// connection. Remove when the pion/turn pin reaches v5.1.3, which signs them itself.
func (c *streamConn) Write(p []byte) (int, error) {
	if c.raw.Load() {
		return c.Conn.Write(p)
	}
	c.guard.sent(p)
	t, isSTUN := messageType(p)
	out := p
	if isSTUN && (t == connectionBindSuccess || t == connectionBindError || t == connectError) {
		out = c.sign(p)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	if isSTUN && t == connectionBindSuccess {
		c.raw.Store(true)
		c.awaitAllocation(0) // a peer data connection: it has its allocation
	}
	return len(p), nil
}

// awaitAllocation sets the deadline by which the connection must have an allocation (0:
// none). Until then a read past it fails, and pion closes the connection: a client that
// connects and says nothing, or trickles a frame, cannot hold it open (coturn's
// max-allocate-timeout).
func (c *streamConn) awaitAllocation(timeout time.Duration) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	_ = c.Conn.SetReadDeadline(deadline)
}

// sign returns p with MESSAGE-INTEGRITY under the connection's last verified key, or p
// itself when it has one already or there is no key.
func (c *streamConn) sign(p []byte) []byte {
	if c.state.key == nil {
		return p
	}
	m := &stun.Message{Raw: append([]byte(nil), p...)}
	if m.Decode() != nil || m.Contains(stun.AttrMessageIntegrity) {
		return p
	}
	if stun.MessageIntegrity(c.state.key).AddTo(m) != nil {
		return p
	}
	return m.Raw
}

func (c *streamConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.owner.forget(c)
		c.guard.plane.removeStream(c.key, c)
	})
	return err
}
