package relay

import (
	"net/netip"
	"sync/atomic"
)

// Local hands datagrams to TURN's UDP relays and to one other socket of this process, the
// SFU's ICE socket, without the kernel: from the SFU to a relay and back, and from one
// relay to another (two clients of one Ferry talking to each other). Through the kernel each
// would cost two more system calls and a trip through loopback per packet. Each side sees
// exactly what it would see on the wire: the same addresses, and the TURN side applies the
// same peer policy and counters as to a datagram read from its socket.
//
// Both directions are batch-shaped: one call carries what one read returned, all from one
// sender to one receiver. The datagrams are only valid during the call.
type Local struct {
	peer   atomic.Pointer[LocalSocket]
	min    int
	relays []atomic.Pointer[LocalSocket] // by port - min
}

// LocalSocket is a socket of this process that takes datagrams handed over in process: a
// UDP relay, or the local peer that relays exchange datagrams with.
type LocalSocket struct {
	// Addr is its address as clients name it: a relay's advertised address, the peer's
	// address its candidates advertise.
	Addr netip.AddrPort
	// Deliver takes datagrams sent to Addr from the address from (a relay's advertised
	// address, or the local peer's).
	Deliver func(datagrams [][]byte, from netip.AddrPort)
}

// NewLocal returns the hand-off for the relays of pool.
func NewLocal(pool *Pool) *Local {
	return &Local{min: pool.min, relays: make([]atomic.Pointer[LocalSocket], pool.Size())}
}

// SetPeer makes p the local peer; nil sends everything through the kernel again.
func (l *Local) SetPeer(p *LocalSocket) { l.peer.Store(p) }

// AddRelay makes r take the local peer's datagrams to its address.
func (l *Local) AddRelay(r *LocalSocket) {
	if slot := l.slot(r.Addr.Port()); slot != nil {
		slot.Store(r)
	}
}

// RemoveRelay undoes AddRelay, unless another relay has taken the port since.
func (l *Local) RemoveRelay(r *LocalSocket) {
	if slot := l.slot(r.Addr.Port()); slot != nil {
		slot.CompareAndSwap(r, nil)
	}
}

func (l *Local) slot(port uint16) *atomic.Pointer[LocalSocket] {
	i := int(port) - l.min
	if i < 0 || i >= len(l.relays) {
		return nil
	}
	return &l.relays[i]
}

// ToPeer hands datagrams a relay at from sends to to over to the local peer; false if to is
// not the local peer's address, and the relay must send them itself.
func (l *Local) ToPeer(to netip.AddrPort, datagrams [][]byte, from netip.AddrPort) bool {
	p := l.peer.Load()
	if p == nil || p.Addr != Unmap(to) {
		return false
	}
	p.Deliver(datagrams, from)
	return true
}

// ToRelay hands datagrams that from sends to to over to the relay there; false if to is not
// a relay of this process that takes them, and the sender must send them itself.
func (l *Local) ToRelay(to netip.AddrPort, datagrams [][]byte, from netip.AddrPort) bool {
	slot := l.slot(to.Port())
	if slot == nil {
		return false
	}
	r := slot.Load()
	if r == nil || r.Addr != Unmap(to) {
		return false
	}
	r.Deliver(datagrams, from)
	return true
}

// Unmap gives an IPv4-mapped IPv6 address in its IPv4 form; other addresses stay as they are.
func Unmap(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }
