package turnserver

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
)

// packetConn is a UDP listener as pion/turn sees it. Its sockets (SO_REUSEPORT, one per
// CPU) each have a read loop of Ferry's: the data plane relays the data of allocations and
// the guard answers or drops what it must, on that loop; the rest, the requests pion
// handles, reach pion's single read loop through a queue. pion thus sees one listener and
// keeps one set of allocations and reservations for it, whichever socket a client's
// datagrams land on, while the per-packet work runs on every core.
type packetConn struct {
	*net.UDPConn // the first socket: pion's responses go out through it
	guard        *guard
	local        netip.AddrPort // the address pion names as the server side of the 5-tuple
	socks        []*net.UDPConn
	toPion       chan request
	done         chan struct{}
	closeOnce    sync.Once
}

// request is a datagram for pion: a copy, since the read loop reuses its buffer.
type request struct {
	b    []byte
	from net.Addr
}

// pionQueue bounds the requests waiting for pion; more are dropped, as a full socket buffer
// would drop them.
const pionQueue = 1024

func newPacketConn(socks []*net.UDPConn, g *guard) *packetConn {
	local, _ := addrPort(socks[0].LocalAddr())
	c := &packetConn{UDPConn: socks[0], guard: g, local: local, socks: socks,
		toPion: make(chan request, pionQueue), done: make(chan struct{})}
	for _, sock := range socks {
		go c.readLoop(sock)
	}
	return c
}

// readLoop serves one socket until it closes, reading up to readBatch datagrams per
// system call.
func (c *packetConn) readLoop(sock *net.UDPConn) {
	defer c.Close()
	bufs := make([][]byte, readBatch)
	for i := range bufs {
		bufs[i] = make([]byte, inboundMTU)
	}
	r, err := udpbatch.NewReader(sock, bufs)
	if err != nil {
		return
	}
	var st connState
	for {
		n, err := r.Read()
		if err != nil {
			return
		}
		for i := range n {
			b, client := r.Datagram(i)
			c.handle(b, client, &st)
		}
	}
}

const (
	readBatch  = 8    // datagrams per read on a listener socket
	inboundMTU = 1600 // the largest datagram read whole, as pion's own read loop does
)

// handle relays b, from client, on the data plane, or has the guard answer it, or queues it
// for pion.
func (c *packetConn) handle(b []byte, client netip.AddrPort, st *connState) {
	if c.guard.fromClient(routeKey{client: client, server: c.local}, b, st) {
		return
	}
	from := net.UDPAddrFromAddrPort(client)
	if b, pass := c.guard.inspect(b, from, c.LocalAddr(), c, st); pass {
		select {
		case c.toPion <- request{b: append([]byte(nil), b...), from: from}:
		default:
		}
	}
}

// ReadFrom is pion's read loop's: the next request the sockets' read loops passed on.
func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case r := <-c.toPion:
		return copy(p, r.b), r.from, nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo sends what pion writes to clients, counting error responses on the way.
func (c *packetConn) WriteTo(p []byte, to net.Addr) (int, error) {
	c.guard.sent(p)
	return c.UDPConn.WriteTo(p, to)
}

func (c *packetConn) respond(msg []byte, to net.Addr) { _, _ = c.WriteTo(msg, to) }

func (c *packetConn) refuse() {}

func (c *packetConn) allow(cap *ipLimiter, client net.Addr, now time.Time) bool {
	return cap.allow(sourceIP(client), now)
}

// Close closes every socket and ends pion's read loop.
func (c *packetConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		for _, sock := range c.socks {
			if e := sock.Close(); e != nil && err == nil {
				err = e
			}
		}
	})
	return err
}
