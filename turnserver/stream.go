package turnserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/iplimit"
	"github.com/ferry-rtc/ferry/internal/turnwire"
)

// frameChunk is how much more of a frame's buffer readFrame allocates at a time: a client
// that announces 64 KiB frames and sends nothing holds no 64 KiB buffer.
const frameChunk = 2048

// acceptLoop hands each connection of ln to take until ln closes: a stream listener's
// clients, or the peers of an RFC 6062 relay. It keeps accepting after transient errors (a
// failed handshake, EMFILE), pausing longer while they go on.
func (s *Server) acceptLoop(ln net.Listener, take func(net.Conn)) {
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			s.cfg.Log.Warn("accept failed", "listener", ln.Addr().String(), "err", err)
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		take(conn)
	}
}

// take serves a new client connection on a goroutine of its own, registered so that the
// listener's close ends it; once the listener is closed, it is closed at once.
func (l *listener) take(conn net.Conn) {
	c := &streamConn{l: l, conn: conn, r: bufio.NewReader(conn),
		five: fiveTuple{client: addrPortOf(conn.RemoteAddr()), server: addrPortOf(conn.LocalAddr()), stream: true}}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		_ = conn.Close()
		return
	}
	l.conns[c] = struct{}{}
	l.s.wg.Go(c.serve)
}

// streamConn is one TCP, TLS or DTLS client connection: a control connection that may
// hold an allocation, or, after a ConnectionBind, the data connection of an RFC 6062 peer
// connection.
type streamConn struct {
	l     *listener
	conn  net.Conn
	r     *bufio.Reader
	five  fiveTuple
	alloc atomic.Pointer[allocation] // its allocation, while it has one
	caps  iplimit.ConnCaps           // its answer caps; used by its read loop only
	msg   stun.Message
	frame []byte

	wmu       sync.Mutex // writes come from the read loop and from relays
	closeOnce sync.Once
	// bound is the peer connection a ConnectionBind joined this connection to; the read
	// loop then pipes bytes instead of reading frames.
	bound *peerConn
}

// serve runs the connection until it closes: the TLS handshake under a deadline (DTLS
// connections arrive handshaken), then one frame at a time, then, for a data connection,
// the pipe to its peer.
func (c *streamConn) serve() {
	defer c.close()
	s := c.l.s
	c.awaitAllocation(s.limits.Load().AllocateTimeout) // the handshake's reads too
	if tc, ok := c.conn.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return
		}
	}
	out := &relayBatch{}
	for c.bound == nil {
		frame, err := c.readFrame(out)
		if err != nil {
			out.flush()
			return
		}
		now := time.Now()
		if !s.toPeers(c.alloc.Load(), frame, out, now) && s.decodeMessage(&c.msg, frame) {
			s.handle(&request{msg: &c.msg, five: c.five, l: c.l, conn: c, w: c, now: now})
		}
	}
	out.flush()
	c.bound.pipe(c)
}

// readFrame reads one STUN message or ChannelData frame. A frame that one read of the
// connection brought whole stays in the read buffer: what out holds of earlier frames of that
// read is still valid, and goes to the peers together, in one system call per peer. Before
// the connection is read again, out is flushed. A frame that is not buffered whole is
// copied into a buffer that grows as its bytes arrive, not as its header announces them.
func (c *streamConn) readFrame(out *relayBatch) ([]byte, error) {
	if c.r.Buffered() < turnwire.ChannelHeaderSize {
		out.flush()
	}
	hdr, err := c.r.Peek(turnwire.ChannelHeaderSize)
	if err != nil {
		return nil, err
	}
	size, err := turnwire.StreamFrameSize(hdr)
	if err != nil {
		return nil, err
	}
	if size <= c.r.Buffered() {
		frame, _ := c.r.Peek(size)
		_, _ = c.r.Discard(size)
		// Capped at its end: pion's MESSAGE-INTEGRITY check appends its HMAC behind the
		// message, which must not land on the frames behind it.
		return frame[:size:size], nil
	}
	out.flush()
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

// awaitAllocation sets the deadline by which the connection must have an allocation (0:
// none): a client that connects and says nothing, or trickles a frame, cannot hold it
// open (coturn's max-allocate-timeout).
func (c *streamConn) awaitAllocation(timeout time.Duration) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	_ = c.conn.SetReadDeadline(deadline)
}

// respond, allow and refuse make the connection a responder.
func (c *streamConn) respond(msg []byte, _ netip.AddrPort) { _, _ = c.Write(msg) }

func (c *streamConn) allow(cap *iplimit.Limiter, _ netip.AddrPort, now time.Time) bool {
	return c.caps.Allow(cap, now)
}

func (c *streamConn) refuse() { c.close() }

// Write sends one message or frame, or, on a data connection, bytes from its peer.
func (c *streamConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.conn.Write(b)
}

// sendFrames sends frames from the data plane to the client in one write (writev on TCP).
func (c *streamConn) sendFrames(frames [][]byte, _ netip.AddrPort) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(frames) == 1 {
		_, err := c.conn.Write(frames[0])
		return err
	}
	v := net.Buffers(frames)
	_, err := v.WriteTo(c.conn)
	return err
}

// close closes the connection and ends its allocation, once.
func (c *streamConn) close() {
	c.closeOnce.Do(func() {
		_ = c.conn.Close()
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		if a := c.alloc.Load(); a != nil {
			c.l.s.end(a, "connection closed")
		}
	})
}
