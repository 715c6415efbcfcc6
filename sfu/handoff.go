package sfu

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
	"github.com/ferry-rtc/ferry/relay"
)

// muxConn is the SFU's ICE socket with the in-process hand-off to Ferry's TURN relays (see
// relay.LocalPeer): a datagram to a relay address goes straight to that allocation's data
// path, and one from a relay arrives through a queue instead of the kernel. Everything
// else goes through the real socket, in batches while a writer corks its address (see
// cork.go).
type muxConn struct {
	*net.UDPConn
	batch  *udpbatch.Conn
	relays *relay.Allocator // nil: no hand-off

	mu     sync.RWMutex
	corks  map[netip.AddrPort]*cork
	corked atomic.Int32 // len(corks), read on every write

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

// newMuxConn wraps conn, the socket at addr, and makes it the local peer of relays, if any.
func newMuxConn(conn *net.UDPConn, relays *relay.Allocator, addr netip.AddrPort) (*muxConn, error) {
	batch, err := udpbatch.NewConn(conn)
	if err != nil {
		return nil, err
	}
	c := &muxConn{UDPConn: conn, batch: batch, relays: relays, corks: map[netip.AddrPort]*cork{},
		queue: make(chan handed, handQueue)}
	if relays != nil {
		relays.SetLocalPeer(&relay.LocalPeer{Addr: addr, Deliver: c.handIn})
	}
	return c, nil
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

// WriteTo keeps a datagram for a corked address, hands one for a relay of this process to
// it, and sends any other.
func (c *muxConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	u, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(p, addr)
	}
	dst := u.AddrPort()
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if (c.corked.Load() > 0 && c.stash(p, dst)) || c.handOut(dst, p) {
		return len(p), nil
	}
	return c.UDPConn.WriteToUDPAddrPort(p, dst)
}

// handOut hands p to the relay at dst in process; false if dst is not a relay of this
// Ferry.
func (c *muxConn) handOut(dst netip.AddrPort, p []byte) bool {
	return c.relays != nil && c.relays.Deliver(dst, p)
}

// Close stops the hand-off and closes the socket.
func (c *muxConn) Close() error {
	if c.relays != nil {
		c.relays.SetLocalPeer(nil)
	}
	return c.UDPConn.Close()
}
