package turnserver

import (
	"net/netip"
	"time"

	"github.com/ferry-rtc/ferry/relay"
	"github.com/ferry-rtc/ferry/turnserver/offload"
)

// Offload is the kernel fast path (package offload) as the table drives it: it relays the
// ChannelData of UDP allocations with an IPv4 relay in the kernel, for the channels each
// allocation publishes.
type Offload interface {
	// Track returns the kernel's handle of a new UDP allocation of client at listener
	// (bound address) relayed at relay (the relay socket's bound address and port), or nil
	// when the kernel cannot relay for it.
	Track(client, listener, relay netip.AddrPort) KernelAlloc
}

// KernelAlloc is one allocation's channels and counters in the kernel. Publish and End are
// called with the allocation's lock held.
type KernelAlloc interface {
	// Publish makes the kernel relay exactly these channels for the allocation.
	Publish(chans []offload.Channel)
	// End removes the allocation's channels from the kernel and returns what it relayed.
	End() relay.Usage
	// Usage returns what the kernel has relayed for the allocation so far.
	Usage() relay.Usage
}

// KernelOffload adapts o (nil: none) to Offload.
func KernelOffload(o *offload.Offload) Offload {
	if o == nil {
		return nil
	}
	return kernelOffload{o}
}

type kernelOffload struct{ o *offload.Offload }

func (k kernelOffload) Track(client, listener, relay netip.AddrPort) KernelAlloc {
	if a := k.o.Track(client, listener, relay); a != nil {
		return a
	}
	return nil
}

// trackKernel gives a new allocation its handle in the kernel fast path: a UDP client of a
// udp listener whose IPv4 relay the kernel may relay for.
func (s *Server) trackKernel(a *allocation, r *request) {
	if s.cfg.Offload == nil || r.five.stream || r.l.proto != "udp" {
		return
	}
	for _, rl := range a.relays {
		if rl.public.Addr().Is4() {
			a.kernel = s.cfg.Offload.Track(r.five.client, r.five.server, netip.AddrPortFrom(s.cfg.V4.Bind, rl.public.Port()))
			return
		}
	}
}

// publishKernel hands the kernel the live channels of snapshot t; a.mu is held.
func (a *allocation) publishKernel(t *peerTable) {
	if a.kernel == nil {
		return
	}
	chans := make([]offload.Channel, 0, len(t.byNumber))
	for n, r := range t.byNumber {
		chans = append(chans, offload.Channel{Number: n, Peer: r.peer, Until: time.Unix(0, r.until)})
	}
	a.kernel.Publish(chans)
}

// usage is what the allocation relayed: in user space and in the kernel.
func (a *allocation) usage() relay.Usage { return a.traffic.Usage().Add(a.kernelUsage()) }

// kernelUsage is what the kernel relayed for the allocation.
func (a *allocation) kernelUsage() relay.Usage {
	if a.kernel == nil {
		return relay.Usage{}
	}
	a.mu.Lock()
	final, ended := a.kernelFinal, a.kernelEnded
	a.mu.Unlock()
	if ended {
		return final
	}
	return a.kernel.Usage()
}

// endKernel takes the allocation's channels out of the kernel, before its relay ports go
// back to the pool, and keeps what the kernel relayed for it.
func (a *allocation) endKernel() {
	if a.kernel == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.kernelEnded {
		a.kernelFinal, a.kernelEnded = a.kernel.End(), true
	}
}

// recheckPeers applies the peer policy, which a reload may have changed, to every live
// allocation's permissions and channels: those it now denies end at once (a channel's
// number and peer keep their cooldown), in user space and in the kernel.
func (s *Server) recheckPeers(now time.Time) {
	for _, a := range s.table.all() {
		a.revoke(func(peer netip.AddrPort) bool {
			return (!a.only.IsValid() || peer == a.only) && s.cfg.Policy.PermitAddr(relay.UDP, peer)
		}, func(ip netip.Addr) bool {
			return (!a.only.IsValid() || ip == a.only.Addr()) && s.cfg.Policy.PermitIP(ip)
		}, now)
	}
}

// revoke ends the channels whose peer permitAddr refuses and the permissions whose IP
// permitIP refuses, and publishes the change.
func (a *allocation) revoke(permitAddr func(netip.AddrPort) bool, permitIP func(netip.Addr) bool, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended.Load() {
		return
	}
	changed := false
	for ip := range a.perms {
		if !permitIP(ip) {
			delete(a.perms, ip)
			changed = true
		}
	}
	for _, c := range a.channels {
		if now.Before(c.expires) && !permitAddr(c.peer) {
			c.expires = now
			changed = true
		}
	}
	if changed {
		a.publish(now)
	}
}
