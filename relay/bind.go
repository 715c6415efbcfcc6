package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/transport/v4/reuseport"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
)

// ErrPoolExhausted is the error of binding when no port of the pool can be bound.
var ErrPoolExhausted = errors.New("relay: no free port in the pool")

// Addrs are one address family's relay addresses.
type Addrs struct {
	Bind   netip.Addr // relay sockets bind here; may be the unspecified address
	Public netip.Addr // advertised in XOR-RELAYED-ADDRESS and ICE candidates
}

// Enabled reports whether relays of this family can be made.
func (a Addrs) Enabled() bool { return a.Public.IsValid() }

// readBuffer is the receive buffer asked for each UDP relay socket (capped by the kernel at
// net.core.rmem_max): a relay's read loop is one goroutine among many, and a buffer bigger
// than the default rides out the moments it waits for a core. The kernel charges only
// what is queued.
const readBuffer = 1 << 20

// ListenUDP binds a UDP socket at ip on the least recently released free port of pool. The
// port is the pool's until the caller puts it back after closing the socket.
func ListenUDP(pool *Pool, ip netip.Addr) (*udpbatch.Conn, error) {
	var conn *udpbatch.Conn
	err := bind(pool, UDP, func(port int) (err error) {
		conn, err = BindUDP(ip, port)
		return err
	})
	return conn, err
}

// BindUDP binds a UDP socket at ip on port, which the caller has taken from the pool, ready
// for batched reads and writes.
func BindUDP(ip netip.Addr, port int) (*udpbatch.Conn, error) {
	conn, err := net.ListenUDP(Network("udp", ip), net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(readBuffer)
	bc, err := udpbatch.NewConn(conn)
	if err != nil {
		_ = conn.Close()
	}
	return bc, err
}

// ListenTCP opens a TCP listener at ip on a port of pool, as ListenUDP does; SO_REUSEPORT
// lets Dial connect to peers from the same port (RFC 6062 section 5.2).
func ListenTCP(pool *Pool, ip netip.Addr) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: reuseport.Control}
	var ln net.Listener
	err := bind(pool, TCP, func(port int) (err error) {
		ln, err = lc.Listen(context.Background(), Network("tcp", ip), netip.AddrPortFrom(ip, uint16(port)).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// DialTCP connects to peer from local, the address of a TCP relay listener (SO_REUSEPORT).
func DialTCP(ctx context.Context, local, peer netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(local), Control: reuseport.Control}
	conn, err := d.DialContext(ctx, Network("tcp", local.Addr()), peer.String())
	if err != nil {
		return nil, fmt.Errorf("relay: connect %s from %s: %w", peer, local, err)
	}
	return conn.(*net.TCPConn), nil
}

// Network is proto ("udp" or "tcp") for ip's family only, so that IPv4 and IPv6 sockets on
// one port number never get each other's traffic.
func Network(proto string, ip netip.Addr) string {
	if ip.Is6() {
		return proto + "6"
	}
	return proto + "4"
}

// bind takes the next free port for proto and calls listen on it. A port another program
// holds is skipped (and put back: it may be free later), so binding fails only when every
// free port has been tried.
func bind(pool *Pool, proto Proto, listen func(port int) error) error {
	var lastErr error
	for range pool.Free() {
		port, ok := pool.Get(proto)
		if !ok {
			break
		}
		err := listen(port)
		if err == nil {
			return nil
		}
		pool.Put(port)
		lastErr = err
	}
	if lastErr != nil {
		return fmt.Errorf("%w (last bind error: %v)", ErrPoolExhausted, lastErr)
	}
	return ErrPoolExhausted
}
