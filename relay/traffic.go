package relay

import "sync/atomic"

// cacheLine is the padding between counters written by different goroutines. 128 bytes, not
// 64: x86 prefetches cache lines in pairs, and Apple's arm64 lines are 128 bytes long.
const cacheLine = 128

// Flow counts one direction of relayed traffic. It is written on the data path, once per
// packet, by the goroutine relaying that direction; the padding keeps the two flows of a
// relay (read loop and write path) off each other's cache line.
type Flow struct {
	packets, bytes atomic.Uint64
	_              [cacheLine - 16]byte
}

// Add counts one packet of n bytes.
func (f *Flow) Add(n int) {
	f.packets.Add(1)
	f.bytes.Add(uint64(n))
}

// Traffic is what one relay carried each way: ToPeer = client→peer (written by the relay
// socket), FromPeer = peer→client (read by it). For RFC 6062 TCP relays a packet is one
// Read or Write call that moved data.
type Traffic struct {
	ToPeer, FromPeer Flow
}

// Usage is a plain snapshot of Traffic.
type Usage struct {
	ToPeerPackets, ToPeerBytes     uint64
	FromPeerPackets, FromPeerBytes uint64
}

// Usage returns a snapshot of t. The four counters are read one by one, so a snapshot taken
// while packets flow may count a packet's bytes without the packet or the other way round.
func (t *Traffic) Usage() Usage {
	return Usage{
		ToPeerPackets: t.ToPeer.packets.Load(), ToPeerBytes: t.ToPeer.bytes.Load(),
		FromPeerPackets: t.FromPeer.packets.Load(), FromPeerBytes: t.FromPeer.bytes.Load(),
	}
}

// Add returns the sum of u and v.
func (u Usage) Add(v Usage) Usage {
	return Usage{
		ToPeerPackets: u.ToPeerPackets + v.ToPeerPackets, ToPeerBytes: u.ToPeerBytes + v.ToPeerBytes,
		FromPeerPackets: u.FromPeerPackets + v.FromPeerPackets, FromPeerBytes: u.FromPeerBytes + v.FromPeerBytes,
	}
}
