package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v4/reuseport"
	"github.com/pion/turn/v5"
)

// Errors the allocator returns; pion answers them with 508 Insufficient Capacity.
var (
	ErrPoolExhausted  = errors.New("relay: no free port in the pool")
	ErrPortTaken      = errors.New("relay: requested port is not free")
	ErrFamilyDisabled = errors.New("relay: no relay address configured for this address family")
	ErrPeerDenied     = errors.New("relay: peer address denied by policy")
	ErrConnLimit      = errors.New("relay: TCP peer connection limit reached")
)

// connectTimeout bounds an RFC 6062 Connect; the RFC asks for at least 30 seconds.
const connectTimeout = 30 * time.Second

// Addrs are one address family's relay addresses.
type Addrs struct {
	Bind   netip.Addr // relay sockets bind here; may be the unspecified address
	Public netip.Addr // advertised in XOR-RELAYED-ADDRESS
}

// Enabled reports whether relays of this family can be made.
func (a Addrs) Enabled() bool { return a.Public.IsValid() }

// Allocator is the pion/turn RelayAddressGenerator backed by the shared Pool: every UDP
// relay socket, TCP relay listener and RFC 6062 peer connection takes its port there, and
// gives it back when closed.
//
// It also keeps a registry of the live relays by port, with what each has carried. Ports
// identify relays: the pool serves IPv4 and IPv6, UDP and TCP alike, so no two live sockets
// or listeners share one.
type Allocator struct {
	pool   *Pool
	policy *Policy
	v4, v6 Addrs

	// denied is bumped by the read loops of all relays: a cache line of its own keeps it
	// from slowing down the fields around it.
	_      [cacheLine]byte
	denied atomic.Uint64
	_      [cacheLine - 8]byte

	local localPeers
	conns connCounts

	mu        sync.Mutex
	relays    map[uint16]*relayEntry   // live relays by relay port
	displaced map[*relayEntry]struct{} // live relays whose port a newer relay has taken
	ended     Usage                    // what relays that ended carried
}

var _ turn.RelayAddressGenerator = (*Allocator)(nil)

// NewAllocator returns an allocator over pool. A family whose Addrs are not Enabled cannot
// allocate (ErrFamilyDisabled).
func NewAllocator(pool *Pool, policy *Policy, v4, v6 Addrs) *Allocator {
	return &Allocator{
		pool: pool, policy: policy, v4: v4, v6: v6, local: newLocalPeers(pool),
		relays: map[uint16]*relayEntry{}, displaced: map[*relayEntry]struct{}{},
	}
}

// Pool returns the port pool the allocator takes from.
func (a *Allocator) Pool() *Pool { return a.pool }

// Validate is called by pion/turn at start.
func (a *Allocator) Validate() error {
	if !a.v4.Enabled() && !a.v6.Enabled() {
		return ErrFamilyDisabled
	}
	return nil
}

func (a *Allocator) family(network string) (Addrs, error) {
	fam := a.v4
	if network == "udp6" || network == "tcp6" {
		fam = a.v6
	}
	if !fam.Enabled() {
		return Addrs{}, fmt.Errorf("%w: %s", ErrFamilyDisabled, network)
	}
	return fam, nil
}

// relayReadBuffer is the receive buffer asked for each UDP relay socket (capped by the
// kernel at net.core.rmem_max).
const relayReadBuffer = 1 << 20

// AllocatePacketConn binds a UDP relay socket on a pool port.
func (a *Allocator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	fam, err := a.family(conf.Network)
	if err != nil {
		return nil, nil, err
	}
	var conn *net.UDPConn
	port, err := a.bind(conf.RequestedPort, UDP, func(port int) (err error) {
		conn, err = net.ListenUDP(conf.Network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.Bind, uint16(port))))
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	// A relay's read loop is one goroutine among many: a buffer bigger than the default rides
	// out the moments it waits for a core. The kernel charges only what is queued.
	_ = conn.SetReadBuffer(relayReadBuffer)
	e := newEntry()
	slot := &a.local.udp[port-a.local.min]
	pc := &packetConn{
		UDPConn: conn, policy: a.policy, traffic: e.traffic, denied: &a.denied,
		local: &a.local, public: netip.AddrPortFrom(fam.Public, uint16(port)),
	}
	release := a.releaser(port, e)
	pc.release = func() {
		slot.CompareAndSwap(pc, nil)
		release()
	}
	e.udp = pc
	slot.Store(pc)
	a.register(uint16(port), e, pc.Close)
	return pc, net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.Public, uint16(port))), nil
}

// AllocateListener opens the TCP relay listener of an RFC 6062 allocation on a pool port.
// SO_REUSEPORT lets AllocateConn dial peers from the same port.
func (a *Allocator) AllocateListener(conf turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	fam, err := a.family(conf.Network)
	if err != nil {
		return nil, nil, err
	}
	lc := net.ListenConfig{Control: reuseport.Control}
	var ln net.Listener
	port, err := a.bind(conf.RequestedPort, TCP, func(port int) (err error) {
		addr := netip.AddrPortFrom(fam.Bind, uint16(port)).String()
		ln, err = lc.Listen(context.Background(), conf.Network, addr)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	e := newEntry()
	tl := &listener{
		Listener: ln, policy: a.policy, denied: &a.denied, release: a.releaser(port, e),
		count: a.counter(uint16(port), e),
	}
	a.register(uint16(port), e, tl.Close)
	return tl, net.TCPAddrFromAddrPort(netip.AddrPortFrom(fam.Public, uint16(port))), nil
}

// AllocateConn dials an RFC 6062 peer from the allocation's relay port. pion passes the
// advertised relay address, which behind 1:1 NAT is not on this host: bind the local side of
// the family instead. The connection counts as traffic of the relay listener on that port,
// and is refused when there is no open one (the allocation is ending).
func (a *Allocator) AllocateConn(conf turn.AllocateConnConfig) (net.Conn, error) {
	fam, err := a.family(conf.Network)
	if err != nil {
		return nil, err
	}
	local, ok := conf.LocalAddr.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("relay: connect: local address %v is not TCP", conf.LocalAddr)
	}
	remote, ok := conf.RemoteAddr.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("relay: connect: peer address %v is not TCP", conf.RemoteAddr)
	}
	if !a.policy.PermitAddr(TCP, remote.AddrPort()) {
		return nil, fmt.Errorf("%w: %s", ErrPeerDenied, remote)
	}
	e, err := a.refPort(local.Port)
	if err != nil {
		return nil, fmt.Errorf("relay: connect %s from port %d: %w", remote, local.Port, err)
	}
	port := uint16(local.Port) // within the pool's range: refPort checked
	conn, err := dial(conf.Network, netip.AddrPortFrom(fam.Bind, port), remote)
	if err != nil {
		a.unrefConn(port, e)
		return nil, err
	}
	return a.countConn(conn, port, e), nil
}

// dial connects to remote from local, whose port the relay listener shares (SO_REUSEPORT).
func dial(network string, local netip.AddrPort, remote *net.TCPAddr) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(local), Control: reuseport.Control, Timeout: connectTimeout}
	conn, err := d.Dial(network, remote.String())
	if err != nil {
		return nil, fmt.Errorf("relay: connect %s from port %d: %w", remote, local.Port(), err)
	}
	return conn, nil
}

// bind takes a port for proto (the requested one, or the next free one) and calls listen on
// it. A port that another program holds is skipped (and put back: it may be free later), so
// allocation fails only when every free port has been tried.
func (a *Allocator) bind(requested int, proto Proto, listen func(port int) error) (int, error) {
	if requested != 0 {
		if !a.pool.Take(requested, proto) {
			return 0, fmt.Errorf("%w: %d", ErrPortTaken, requested)
		}
		if err := listen(requested); err != nil {
			a.pool.Put(requested)
			return 0, fmt.Errorf("relay: bind port %d: %w", requested, err)
		}
		return requested, nil
	}
	var lastErr error
	for range a.pool.Free() {
		port, ok := a.pool.Get(proto)
		if !ok {
			break
		}
		err := listen(port)
		if err == nil {
			return port, nil
		}
		a.pool.Put(port)
		lastErr = err
	}
	if lastErr != nil {
		return 0, fmt.Errorf("%w (last bind error: %v)", ErrPoolExhausted, lastErr)
	}
	return 0, ErrPoolExhausted
}

// releaser is what closing the socket or listener of e does: e takes no more connections,
// and then the port goes back to the pool, so a relay that takes the port next finds e
// closed.
func (a *Allocator) releaser(port int, e *relayEntry) func() {
	return func() {
		a.socketClosed(uint16(port), e)
		a.pool.Put(port)
	}
}

// Enabled reports whether relays of the IPv6 (true) or IPv4 (false) family can be made.
func (a *Allocator) Enabled(ipv6 bool) bool {
	if ipv6 {
		return a.v6.Enabled()
	}
	return a.v4.Enabled()
}
