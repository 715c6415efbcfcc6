package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
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
	// frames are the read buffers while an Inbound handler takes the datagrams, each with
	// Headroom and Tailroom, read in batches by batch. They are made at the first datagram the
	// handler takes, so an idle relay does not pay for them; only pion's single read
	// goroutine of the socket touches them.
	frames [][]byte
	batch  *udpbatch.Reader
	// handed and from are the Inbound call's arguments: the admitted datagrams of a batch.
	handed [][]byte
	from   []netip.AddrPort
}

// Batch is how many datagrams a relay reads per system call, and so the most an Inbound
// call carries.
const Batch = 8

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
		if in != nil && c.batch != nil {
			if err := c.readBatch(in); err != nil {
				return 0, netip.AddrPort{}, err
			}
			continue
		}
		n, src, err := c.UDPConn.ReadFromUDPAddrPort(p)
		if err != nil {
			return n, src, err
		}
		if !c.admit(n, src) {
			continue
		}
		if in == nil {
			return n, src, nil
		}
		if err := c.startBatches(); err != nil {
			return 0, netip.AddrPort{}, err
		}
		n = copy(c.frames[0][Headroom:], p[:n])
		c.handed[0], c.from[0] = c.frames[0][:Headroom+n], src
		in(c.handed[:1], c.from[:1])
	}
}

// admit applies the policy to a datagram of n bytes from src and counts it if it passes.
func (c *packetConn) admit(n int, src netip.AddrPort) bool {
	if !c.policy.PermitSource(UDP, src) {
		c.denied.Add(1)
		return false
	}
	c.traffic.FromPeer.add(n)
	return true
}

// startBatches makes the frames and the batch reader, for a relay whose Inbound handler
// has taken its first datagram.
func (c *packetConn) startBatches() error {
	c.frames = make([][]byte, Batch)
	c.handed = make([][]byte, Batch)
	c.from = make([]netip.AddrPort, Batch)
	bufs := make([][]byte, Batch)
	for i := range c.frames {
		c.frames[i] = make([]byte, Headroom+MaxDatagram+Tailroom)
		bufs[i] = c.frames[i][Headroom : Headroom+MaxDatagram]
	}
	batch, err := udpbatch.NewReader(c.UDPConn, bufs)
	c.batch = batch
	return err
}

// readBatch reads up to Batch datagrams and hands those the policy admits to in.
func (c *packetConn) readBatch(in Inbound) error {
	n, err := c.batch.Read()
	if err != nil {
		return err
	}
	k := 0
	for i := range n {
		b, src := c.batch.Datagram(i)
		if c.admit(len(b), src) {
			c.handed[k], c.from[k] = c.frames[i][:Headroom+len(b)], src
			k++
		}
	}
	if k > 0 {
		in(c.handed[:k], c.from[:k])
	}
	return nil
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
	if !l.policy.PermitSource(TCP, addr.AddrPort()) {
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
