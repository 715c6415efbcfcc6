package sfu

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
)

// packetSize is the largest RTP packet a publisher's read takes: an Ethernet MTU.
const packetSize = 1500

// packet is one RTP packet as a publisher sent it, parsed in place: Header and Payload
// point into buf. Once parsed it is never written to, so every subscriber it is queued
// for reads the same bytes; each one rewrites only its own copy of the header. It goes
// back to the pool when the last holder releases it.
type packet struct {
	rtp.Packet
	buf  [packetSize]byte
	refs atomic.Int32
}

// packets recycles packets, with their parsed header's CSRC and extension slices: the
// per-packet path allocates nothing once the pool holds enough for the queues in use.
var packets = sync.Pool{New: func() any { return new(packet) }}

// newPacket returns a packet from the pool, held once: by the caller, which reads into it.
func newPacket() *packet {
	p := packets.Get().(*packet)
	p.refs.Store(1)
	return p
}

// hold adds n holders: the queues it is offered to, in one atomic add rather than one each.
func (p *packet) hold(n int) { p.refs.Add(int32(n)) }

// release drops a holder; the last one recycles the packet.
func (p *packet) release() { p.releaseN(1) }

// releaseN drops n holders.
func (p *packet) releaseN(n int) {
	if n > 0 && p.refs.Add(-int32(n)) == 0 {
		packets.Put(p)
	}
}
