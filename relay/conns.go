package relay

import (
	"net"
	"sync"
)

// packetConn is a UDP relay socket. It is Ferry's own net.PacketConn (pion/turn only sees
// the interface), so the port goes back to the pool on Close and inbound datagrams are
// filtered by the peer policy before pion looks at permissions.
type packetConn struct {
	*net.UDPConn
	policy  *Policy
	release func()
	once    sync.Once
}

// ReadFrom drops datagrams from sources the policy refuses (another service on the relay
// host) and returns the next acceptable one.
func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, src, err := c.UDPConn.ReadFromUDPAddrPort(p)
		if err != nil {
			return n, nil, err
		}
		if c.policy.PermitSource(src) {
			return n, net.UDPAddrFromAddrPort(src), nil
		}
	}
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
	policy  *Policy
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
		if addr, ok := conn.RemoteAddr().(*net.TCPAddr); ok && l.policy.PermitSource(addr.AddrPort()) {
			return conn, nil
		}
		_ = conn.Close()
	}
}

// Close closes the listener and returns its port to the pool, once.
func (l *listener) Close() error {
	err := l.Listener.Close()
	l.once.Do(l.release)
	return err
}
