package sfu

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-rtc/ferry/relay"
)

// muxConn is the SFU's ICE socket with the in-process hand-off to Ferry's TURN relays (see
// relay.LocalPeer): a datagram to a relay address goes straight to that allocation's data
// path, and one from a relay arrives through a queue instead of the kernel. Everything
// else goes through the real socket.
type muxConn struct {
	*net.UDPConn
	relays *relay.Allocator

	queue chan handed
	// waiting is set while ReadFrom blocks on the socket; a hand-off then wakes it with a
	// past read deadline, and woken tells ReadFrom that the timeout was that.
	waiting atomic.Bool
	woken   atomic.Bool
}

// handed is a datagram a relay handed over: its bytes in a pooled buffer, and its source.
type handed struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

// handQueue bounds the datagrams waiting in the hand-off queue; more are dropped, as a full
// socket buffer would drop them.
const handQueue = 1024

var handBufs = sync.Pool{New: func() any {
	b := make([]byte, relay.MaxDatagram)
	return &b
}}

// newMuxConn wraps conn, the socket at addr, and makes it the relays' local peer.
func newMuxConn(conn *net.UDPConn, relays *relay.Allocator, addr netip.AddrPort) *muxConn {
	c := &muxConn{UDPConn: conn, relays: relays, queue: make(chan handed, handQueue)}
	relays.SetLocalPeer(&relay.LocalPeer{Addr: addr, Deliver: c.handIn})
	return c
}

// handIn queues a datagram from a relay for ReadFrom.
func (c *muxConn) handIn(p []byte, from netip.AddrPort) {
	buf := handBufs.Get().(*[]byte)
	n := copy(*buf, p)
	select {
	case c.queue <- handed{buf: buf, n: n, from: from}:
	default:
		handBufs.Put(buf)
		return
	}
	if c.waiting.Load() {
		c.woken.Store(true)
		_ = c.UDPConn.SetReadDeadline(time.Unix(1, 0))
	}
}

// ReadFrom returns the next datagram handed over by a relay, else the next from the socket.
func (c *muxConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		select {
		case h := <-c.queue:
			n := copy(p, (*h.buf)[:h.n])
			handBufs.Put(h.buf)
			return n, net.UDPAddrFromAddrPort(h.from), nil
		default:
		}
		c.waiting.Store(true)
		if len(c.queue) > 0 { // handed over between the check above and waiting
			c.waiting.Store(false)
			continue
		}
		n, addr, err := c.UDPConn.ReadFrom(p)
		c.waiting.Store(false)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.woken.Swap(false) {
			_ = c.UDPConn.SetReadDeadline(time.Time{})
			continue
		}
		return n, addr, err
	}
}

// WriteTo hands a datagram for a relay of this process to it, and sends any other.
func (c *muxConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if u, ok := addr.(*net.UDPAddr); ok && c.relays.Deliver(u.AddrPort(), p) {
		return len(p), nil
	}
	return c.UDPConn.WriteTo(p, addr)
}

// Close stops the hand-off and closes the socket.
func (c *muxConn) Close() error {
	c.relays.SetLocalPeer(nil)
	return c.UDPConn.Close()
}
