package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// LocalPeer is a socket of this process that relays exchange datagrams with in process,
// without the kernel: the SFU's ICE socket. A relayed client of the SFU would otherwise cost
// two more syscalls and a trip through loopback per packet each way. Peers see exactly what
// they would see on the wire: the same addresses, the same policy and counters.
type LocalPeer struct {
	// Addr is the peer's address as clients name it (the address its candidates advertise).
	Addr netip.AddrPort
	// Deliver hands the peer a datagram from a relay's advertised address. p is only valid
	// during the call.
	Deliver func(p []byte, from netip.AddrPort)
}

// localPeers is the Allocator's side of the hand-off: the local peer, and the UDP relays by
// port, read on every packet without a lock.
type localPeers struct {
	peer atomic.Pointer[LocalPeer]
	min  int
	udp  []atomic.Pointer[packetConn] // by port - min
}

func newLocalPeers(pool *Pool) localPeers {
	lo, hi := pool.Range()
	return localPeers{min: lo, udp: make([]atomic.Pointer[packetConn], hi-lo+1)}
}

// SetLocalPeer makes lp the local peer of every relay; nil sends everything through the
// kernel again.
func (a *Allocator) SetLocalPeer(lp *LocalPeer) { a.local.peer.Store(lp) }

// Deliver hands p, a datagram from the local peer, to the UDP relay at to, as if it had
// arrived on the relay's socket. false if to is not one of this allocator's UDP relays
// whose datagrams the TURN data path takes (see UDPRelay.SetInbound): the caller then sends
// p through the kernel.
func (a *Allocator) Deliver(to netip.AddrPort, p []byte) bool {
	lp := a.local.peer.Load()
	i := int(to.Port()) - a.local.min
	if lp == nil || i < 0 || i >= len(a.local.udp) || len(p) > MaxDatagram {
		return false
	}
	pc := a.local.udp[i].Load()
	if pc == nil || pc.public.Addr() != to.Addr().Unmap() {
		return false
	}
	return pc.deliver(p, lp.Addr)
}

// handedFrame is an in-process delivery: its buffer, with Headroom and Tailroom, and the
// Inbound call's arguments.
type handedFrame struct {
	buf    []byte
	frames [1][]byte
	from   [1]netip.AddrPort
}

var handedFrames = sync.Pool{New: func() any {
	return &handedFrame{buf: make([]byte, Headroom+MaxDatagram+Tailroom)}
}}

// deliver runs a datagram from the local peer through the relay's inbound path on the
// caller's goroutine; false if no Inbound handler takes it.
func (c *packetConn) deliver(p []byte, from netip.AddrPort) bool {
	in := c.inbound()
	if in == nil {
		return false
	}
	if !c.policy.PermitSource(UDP, from) {
		c.denied.Add(1)
		return true
	}
	c.traffic.FromPeer.add(len(p))
	h := handedFrames.Get().(*handedFrame)
	n := copy(h.buf[Headroom:], p)
	h.frames[0], h.from[0] = h.buf[:Headroom+n], from
	in(h.frames[:], h.from[:])
	h.frames[0] = nil
	handedFrames.Put(h)
	return true
}

// toLocal hands p to the local peer if it is addressed to it; false if it is not.
func (c *packetConn) toLocal(p []byte, to netip.AddrPort) bool {
	lp := c.local.peer.Load()
	if lp == nil || to.Port() != lp.Addr.Port() || to.Addr().Unmap() != lp.Addr.Addr() {
		return false
	}
	lp.Deliver(p, c.public)
	c.traffic.ToPeer.add(len(p))
	return true
}
