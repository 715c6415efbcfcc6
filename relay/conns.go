package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// packetConn is a UDP relay socket. It is Ferry's own net.PacketConn (pion/turn only sees
// the interface), so the port goes back to the pool on Close, inbound datagrams are
// filtered by the peer policy before pion looks at permissions, and the relay's traffic is
// counted. The counters are reached through pointers of their own, not the registry, so
// the data path takes no lock.
type packetConn struct {
	*net.UDPConn
	inboundSlot
	policy  *Policy
	traffic *Traffic
	denied  *atomic.Uint64 // Allocator.denied
	local   *localPeers    // Allocator.local
	public  netip.AddrPort // the relay address clients and peers know
	release func()
	once    sync.Once
	// frame is the read buffer while an Inbound handler takes the datagrams, with its
	// Headroom and Tailroom. It is made at the first datagram the handler takes, so an idle
	// relay does not pay for it; only pion's single read goroutine of the socket touches it.
	frame []byte
}

// ReadFrom drops datagrams from sources the policy refuses (another service on the relay
// host) and returns the next acceptable one. pion needs the source as a *net.UDPAddr, which
// costs an allocation per datagram; ReadFromUDPAddrPort does not.
func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, src, err := c.ReadFromUDPAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(src), nil
}

// ReadFromUDPAddrPort is ReadFrom without the allocation. The embedded UDPConn's method
// would bypass the policy and the counters, so this one must shadow it. While an Inbound
// handler is set, it gets the datagrams and this returns only on an error.
func (c *packetConn) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	for {
		in := c.inbound()
		buf := p
		if in != nil && c.frame != nil {
			buf = c.frame[Headroom : Headroom+MaxDatagram]
		}
		n, src, err := c.UDPConn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return n, src, err
		}
		if !c.policy.PermitSource(src) {
			c.denied.Add(1)
			continue
		}
		c.traffic.FromPeer.add(n)
		if in == nil {
			return n, src, nil
		}
		if c.frame == nil {
			c.frame = make([]byte, Headroom+MaxDatagram+Tailroom)
			copy(c.frame[Headroom:], buf[:n])
		}
		in(c.frame[:Headroom+n], src)
	}
}

// WriteTo sends a datagram to a peer and counts it if it went out.
func (c *packetConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if u, ok := addr.(*net.UDPAddr); ok {
		return c.WriteToUDPAddrPort(p, u.AddrPort())
	}
	n, err := c.UDPConn.WriteTo(p, addr)
	if err == nil {
		c.traffic.ToPeer.add(n)
	}
	return n, err
}

// WriteToUDPAddrPort is WriteTo with a netip address; it shadows the embedded UDPConn's
// method, which would not count. A datagram to the local peer is handed over in process.
func (c *packetConn) WriteToUDPAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	if c.toLocal(p, addr) {
		return len(p), nil
	}
	n, err := c.UDPConn.WriteToUDPAddrPort(p, addr)
	if err == nil {
		c.traffic.ToPeer.add(n)
	}
	return n, err
}

// Close closes the socket and returns its port to the pool, once.
func (c *packetConn) Close() error {
	err := c.UDPConn.Close()
	c.once.Do(c.release)
	return err
}

// listener is the TCP relay listener of an RFC 6062 allocation.
type listener struct {
	net.Listener
	policy *Policy
	denied *atomic.Uint64 // Allocator.denied
	// count wraps an accepted connection so that its traffic counts as the relay's; false
	// once the listener has closed.
	count   func(net.Conn) (net.Conn, bool)
	release func()
	once    sync.Once
}

// Accept refuses connections from sources the policy refuses, as packetConn.ReadFrom does.
func (l *listener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if counted, ok := l.admit(conn); ok {
			return counted, nil
		}
		_ = conn.Close()
	}
}

func (l *listener) admit(conn net.Conn) (net.Conn, bool) {
	addr, ok := conn.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return nil, false
	}
	if !l.policy.PermitSource(addr.AddrPort()) {
		l.denied.Add(1)
		return nil, false
	}
	// A connection accepted as the listener closes is refused: the allocation is ending.
	return l.count(conn)
}

// Close closes the listener and returns its port to the pool, once. Connections it
// accepted stay open.
func (l *listener) Close() error {
	err := l.Listener.Close()
	l.once.Do(l.release)
	return err
}

// countingConn is an RFC 6062 peer connection of a relay (accepted by its listener or
// dialled from its port): Read is traffic from the peer, Write traffic to it. pion already
// hides the *net.TCPConn behind its own wrapper, so wrapping it again costs no splice.
type countingConn struct {
	net.Conn
	traffic *Traffic
	release func()
	once    sync.Once
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.traffic.FromPeer.add(n)
	}
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.traffic.ToPeer.add(n)
	}
	return n, err
}

// Close closes the connection and gives back its reference on the relay, once.
func (c *countingConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
