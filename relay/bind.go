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

// hostIPs are the unicast addresses of the wanted family on the up, non-loopback
// interfaces, in interface order. It reads interface addresses only; it sends nothing.
func hostIPs(want6 bool) []netip.Addr {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		out = append(out, unicast(addrs, want6)...)
	}
	return out
}

func unicast(addrs []net.Addr, want6 bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if ip := pfx.Addr(); ip.Is6() == want6 && ip.IsGlobalUnicast() {
			out = append(out, ip)
		}
	}
	return out
}

// OwnIPs are the addresses a's relay sockets are reached at: the public and the bind
// address, and, when the bind address is the wildcard, every unicast address of the host in
// the family (a relay socket bound to 0.0.0.0 answers on all of them, and so may the other
// services of the host: the peer policy must treat them all as Ferry's own).
func (a Addrs) OwnIPs() []netip.Addr {
	if !a.Bind.IsValid() {
		return nil
	}
	out := []netip.Addr{a.Public}
	if !a.Bind.IsUnspecified() {
		return append(out, a.Bind)
	}
	return append(out, hostIPs(a.Bind.Is6())...)
}

// ResolveAddrs turns configured bind and public IPs into the addresses relays use. An
// invalid bind means the family is off. Without a public IP the bind IP is advertised, or,
// when it is the wildcard (zero config), the first of the host's addresses of the family;
// ok is false when there is none to advertise.
func ResolveAddrs(bind, public netip.Addr) (addrs Addrs, ok bool) {
	if !bind.IsValid() {
		return Addrs{}, true
	}
	addrs.Bind = bind
	switch {
	case public.IsValid():
		addrs.Public = public
	case !bind.IsUnspecified():
		addrs.Public = bind
	default:
		ips := hostIPs(bind.Is6())
		if len(ips) == 0 {
			return Addrs{Bind: bind}, false
		}
		addrs.Public = ips[0]
	}
	return addrs, true
}

// readBuffer is the receive buffer asked for each UDP relay socket (capped by the kernel at
// net.core.rmem_max): a relay's read loop is one goroutine among many, and a buffer bigger
// than the default rides out the moments it waits for a core. The kernel charges only
// what is queued.
const readBuffer = 1 << 20

// ListenUDP binds a UDP socket at ip on the least recently released free port of pool. The
// port is the pool's until the caller puts it back after closing the socket.
func ListenUDP(pool *Pool, ip netip.Addr) (*udpbatch.Conn, error) {
	var conn *udpbatch.Conn
	err := Bind(pool, UDP, false, false, func(port int) (err error) {
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
func ListenTCP(pool *Pool, ip netip.Addr) (net.Listener, error) {
	lc := net.ListenConfig{Control: reuseport.Control}
	var ln net.Listener
	err := Bind(pool, TCP, false, false, func(port int) (err error) {
		ln, err = lc.Listen(context.Background(), Network("tcp", ip), netip.AddrPortFrom(ip, uint16(port)).String())
		return err
	})
	return ln, err
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

// Bind takes the next free port for proto, or with even the next even one (and with pair
// the port after it too, as Pool.GetEven does; pair means nothing without even), and calls
// listen on it. A port another program holds is skipped (and put back, its pair too: it may
// be free later), so binding fails only when every free port has been tried.
func Bind(pool *Pool, proto Proto, even, pair bool, listen func(port int) error) error {
	pair = pair && even // a port from Get has no pair taken with it to give back
	get := func() (int, bool) { return pool.Get(proto) }
	if even {
		get = func() (int, bool) { return pool.GetEven(proto, pair) }
	}
	var lastErr error
	for range pool.Free() {
		port, ok := get()
		if !ok {
			break
		}
		err := listen(port)
		if err == nil {
			return nil
		}
		pool.Put(port)
		if pair {
			pool.Put(port + 1)
		}
		lastErr = err
	}
	if lastErr != nil {
		return fmt.Errorf("%w (last bind error: %v)", ErrPoolExhausted, lastErr)
	}
	return ErrPoolExhausted
}
