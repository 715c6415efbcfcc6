package offload

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/ferry-rtc/ferry/relay"
)

// Channel is a live channel binding as the allocation table publishes it: until is the
// earlier of the binding's and its peer's permission's expiry.
type Channel struct {
	Number uint16
	Peer   netip.AddrPort
	Until  time.Time
}

// Alloc is one allocation's share of the maps: the channels it has in the kernel and its
// counters. The allocation calls Publish, End and Usage; Publish and End are called with
// the allocation's lock held, so they never run at once for one allocation.
type Alloc struct {
	o          *Offload
	client     netip.AddrPort
	listener   netip.AddrPort // bound address
	relayBound netip.Addr
	relayPort  uint16
	slot       uint32
	toClient   route
	routed     bool // toClient is known
	installed  map[uint16]entry
	ended      atomic.Bool
}

// entry is a channel the kernel relays, as written.
type entry struct {
	peer  netip.AddrPort
	until uint64
	via   route
}

// Track makes the handle of a UDP allocation of client at listener (its bound address)
// relayed at relay (the relay socket's bound address and port), or nil when the kernel
// cannot relay for it: IPv6, or a relay port outside the pool.
func (o *Offload) Track(client, listener, relay netip.AddrPort) *Alloc {
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	if o == nil || !client.Addr().Is4() || !listener.Addr().Is4() || !relay.Addr().Is4() ||
		int(relay.Port()) < o.min || int(relay.Port())-o.min >= int(o.objs.Usage.MaxEntries()) {
		return nil
	}
	a := &Alloc{o: o, client: client, listener: listener, relayBound: relay.Addr(), relayPort: relay.Port(),
		slot: uint32(int(relay.Port()) - o.min), installed: map[uint16]entry{}}
	o.zero(a.slot)
	return a
}

// Publish makes the kernel relay exactly chans for the allocation: new channels and new
// lifetimes are written, the others deleted. A channel whose peer or client the kernel
// would not reach through an attached interface, or whose entry cannot be written, stays
// in user space.
func (a *Alloc) Publish(chans []Channel) {
	if a == nil || a.ended.Load() {
		return
	}
	o := a.o
	now, mono := time.Now(), monoNow()
	keep := make(map[uint16]bool, len(chans))
	for _, c := range chans {
		peer := netip.AddrPortFrom(c.Peer.Addr().Unmap(), c.Peer.Port())
		if !peer.Addr().Is4() {
			o.skipped[skipFamily].Add(1)
			continue
		}
		until := monoAt(c.Until, now, mono)
		old, had := a.installed[c.Number]
		if had && old.peer == peer && old.until == until {
			keep[c.Number] = true
			continue
		}
		if !a.routed {
			if a.toClient, a.routed = o.sendsFrom(a.listener.Addr(), a.client.Addr()); !a.routed {
				o.skipped[skipRoute].Add(1)
				continue
			}
		}
		via := old.via
		if !had || old.peer != peer {
			var ok bool
			if via, ok = o.sendsFrom(a.relayBound, peer.Addr()); !ok {
				o.skipped[skipRoute].Add(1)
				if had {
					a.remove(c.Number, old)
				}
				continue
			}
		}
		if had && old.peer != peer {
			a.remove(c.Number, old)
		}
		e := entry{peer: peer, until: until, via: via}
		if a.write(c.Number, e) {
			keep[c.Number] = true
		}
	}
	for n, e := range a.installed {
		if !keep[n] {
			a.remove(n, e)
		}
	}
}

// write puts channel n into both maps: the peer's direction first, so that a client's
// ChannelData never leaves before its peer's answers can come back the same way.
func (a *Alloc) write(n uint16, e entry) bool {
	o := a.o
	pk := relayPeerKey{PeerIp: ip4(e.peer.Addr()), PeerPort: port16(e.peer.Port()), RelayPort: port16(a.relayPort)}
	pv := relayPeerVal{
		Until: e.until, ClientIp: ip4(a.client.Addr()), ListenerIp: ip4(a.toClient.src),
		ClientPort: port16(a.client.Port()), ListenerPort: port16(a.listener.Port()), Channel: n,
		RelayBound: ip4(a.relayBound), Slot: a.slot, Ifindex: uint32(a.toClient.ifindex),
	}
	ck := a.chanKey(n)
	cv := relayChanVal{
		Until: e.until, RelayIp: ip4(e.via.src), PeerIp: ip4(e.peer.Addr()),
		RelayPort: port16(a.relayPort), PeerPort: port16(e.peer.Port()), Slot: a.slot, Ifindex: uint32(e.via.ifindex),
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.objs.Peers.Put(pk, pv); err != nil {
		o.mapErrors.Add(1)
		return false
	}
	if err := o.objs.Channels.Put(ck, cv); err != nil {
		_ = o.objs.Peers.Delete(pk)
		o.mapErrors.Add(1)
		return false
	}
	if _, had := a.installed[n]; !had {
		o.channels++
	}
	a.installed[n] = e
	return true
}

// remove deletes channel n from both maps: the client's direction first.
func (a *Alloc) remove(n uint16, e entry) {
	o := a.o
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.objs.Channels.Delete(a.chanKey(n))
	_ = o.objs.Peers.Delete(relayPeerKey{PeerIp: ip4(e.peer.Addr()), PeerPort: port16(e.peer.Port()), RelayPort: port16(a.relayPort)})
	delete(a.installed, n)
	o.channels--
}

func (a *Alloc) chanKey(n uint16) relayChanKey {
	listenerIP := uint32(0)
	if !a.listener.Addr().IsUnspecified() {
		listenerIP = ip4(a.listener.Addr())
	}
	return relayChanKey{ClientIp: ip4(a.client.Addr()), ListenerIp: listenerIP,
		ClientPort: port16(a.client.Port()), ListenerPort: port16(a.listener.Port()), Channel: n}
}

// End removes every channel of the allocation from the kernel and returns what the kernel
// relayed for it; its slot is cleared. Packets the program was relaying at that very moment
// on other CPUs may be missing from the count.
func (a *Alloc) End() relay.Usage {
	if a == nil || a.ended.Load() {
		return relay.Usage{}
	}
	for n, e := range a.installed {
		a.remove(n, e)
	}
	a.ended.Store(true)
	u := a.o.usageOf(a.slot)
	a.o.zero(a.slot)
	return u
}

// Usage returns what the kernel has relayed for the allocation so far.
func (a *Alloc) Usage() relay.Usage {
	if a == nil || a.ended.Load() || a.o.closed.Load() {
		return relay.Usage{}
	}
	return a.o.usageOf(a.slot)
}
