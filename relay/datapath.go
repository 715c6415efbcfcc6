package relay

import (
	"net/netip"
	"sync/atomic"
)

// Headroom is the space a UDP relay leaves in front of every datagram it hands to an
// Inbound handler: room for the largest TURN header that goes before peer data (a Data
// indication with an IPv6 XOR-PEER-ADDRESS: 20 + 24 + 4 bytes), so that the handler frames
// the datagram for the client without copying it.
const Headroom = 48

// Tailroom is the space a relay leaves after every datagram it hands to an Inbound handler:
// room for the padding to a multiple of 4 that ChannelData over TCP and the DATA attribute
// need.
const Tailroom = 3

// MaxDatagram is the largest peer datagram a relay passes on whole, as pion/turn's own relay
// read buffer does; a larger one is truncated.
const MaxDatagram = 1600

// Inbound takes over the datagrams a relay receives from peers the policy allows, in place
// of pion/turn's read loop, a batch at a time (those one read returned): datagram i is
// frames[i][Headroom:], from from[i]; frames[i][:Headroom] is free for a header, and its
// capacity leaves Tailroom. The frames are only valid during the call, and the handler may
// overwrite the frames slice itself. Datagrams handed in process by a LocalPeer arrive the
// same way, one per call, on the LocalPeer's goroutine.
type Inbound func(frames [][]byte, from []netip.AddrPort)

// UDPRelay is the data-path side of a UDP relay socket, for Ferry's TURN fast path.
type UDPRelay interface {
	// WriteToUDPAddrPort sends p to a peer, counted as the relay's traffic.
	WriteToUDPAddrPort(p []byte, to netip.AddrPort) (int, error)
	// SetInbound routes the relay's inbound datagrams to in; nil gives them back to pion.
	SetInbound(in Inbound)
}

// UDPRelay returns the UDP relay socket on port; false if there is none (no relay, or a TCP
// one).
func (a *Allocator) UDPRelay(port uint16) (UDPRelay, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.relays[port]
	if e == nil || e.udp == nil || !e.open {
		return nil, false
	}
	return e.udp, true
}

// inboundSlot holds a relay's Inbound handler; the data path reads it without a lock.
type inboundSlot struct{ fn atomic.Pointer[Inbound] }

func (s *inboundSlot) SetInbound(in Inbound) {
	if in == nil {
		s.fn.Store(nil)
		return
	}
	s.fn.Store(&in)
}

func (s *inboundSlot) inbound() Inbound {
	if p := s.fn.Load(); p != nil {
		return *p
	}
	return nil
}
