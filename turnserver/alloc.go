package turnserver

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/relay"
)

// Lifetimes of RFC 8656: permissions last 5 minutes (section 9), channel bindings 10
// (section 12), and a channel number or peer of an expired binding stays unavailable to
// other bindings for 5 more, so that late ChannelData cannot reach a new peer.
const (
	permissionLifetime = 5 * time.Minute
	channelLifetime    = 10 * time.Minute
	channelCooldown    = 5 * time.Minute
	defaultLifetime    = 10 * time.Minute // of an allocation without LIFETIME (section 7.2)
)

// allocation is one TURN allocation (RFC 8656 section 2.2). The fields above mu never change
// after it is made. mu guards the control-plane state below it; the data plane reads peers,
// an immutable snapshot of the permissions and channels replaced on every change.
type allocation struct {
	id        uint64
	five      fiveTuple
	transport string // the listener's proto: udp, tcp, tls or dtls
	user      string
	quotaSlot string // what the quota counts it under: the user, or the user's group
	created   time.Time
	client    responder      // the UDP listener socket or stream connection of the Allocate
	relays    []*udpRelay    // UDP relays: one per address family (two for dual stack)
	tcp       *tcpRelay      // the relay of an RFC 6062 TCP allocation
	only      netip.AddrPort // the one peer the user may relay to (Config.PeerLimit); zero: no limit
	traffic   relay.Traffic
	// createTx and createResp are the Allocate that made it and the answer it got: a
	// retransmitted Allocate gets the same answer (RFC 8656 section 7.2).
	createTx   [stun.TransactionIDSize]byte
	createResp []byte

	peers   atomic.Pointer[peerTable]
	ended   atomic.Bool
	expires atomic.Int64 // when its lifetime runs out, in unix nanoseconds
	// kernel is the allocation's share of the kernel fast path, nil when the kernel does
	// not relay for it; set before the allocation is in the table.
	kernel KernelAlloc

	mu       sync.Mutex
	perms    map[netip.Addr]time.Time // peer IP → expiry
	channels map[uint16]*channel      // number → binding, expired ones during their cooldown
	// kernelFinal is what the kernel relayed for the allocation, once kernelEnded.
	kernelFinal relay.Usage
	kernelEnded bool
}

// channel is a channel binding and until when it lasts.
type channel struct {
	peer    netip.AddrPort
	expires time.Time
}

// peerTable is what the data plane needs of an allocation's peers, with expiry times as
// unix nanoseconds. It is never changed: a change of the permissions or channels publishes
// a new one, so the data plane reads it without a lock.
type peerTable struct {
	perms    map[netip.Addr]int64
	byNumber map[uint16]route
	byPeer   map[netip.AddrPort]route
}

// route is a channel as the data plane uses it: until is the earlier of the channel's and
// its peer's permission's expiry, since ChannelData needs both.
type route struct {
	number uint16
	peer   netip.AddrPort
	until  int64
}

var emptyPeers = &peerTable{}

// newAllocation is the allocation r asks for, counted under slot, before its relays open.
func (s *Server) newAllocation(r *request, slot string) *allocation {
	a := &allocation{five: r.five, transport: r.l.proto, user: r.user, quotaSlot: slot,
		created: r.now, client: r.w, perms: map[netip.Addr]time.Time{}, channels: map[uint16]*channel{}}
	if s.cfg.PeerLimit != nil {
		if only, limited := s.cfg.PeerLimit(r.user); limited {
			a.only = relay.Unmap(only)
		}
	}
	a.peers.Store(emptyPeers)
	return a
}

// live reports whether a request may still act on the allocation: not ended (deleted,
// killed) and not expired.
func (a *allocation) live(now time.Time) bool {
	return !a.ended.Load() && now.UnixNano() < a.expires.Load()
}

func (a *allocation) refresh(d time.Duration, now time.Time) { a.expires.Store(now.Add(d).UnixNano()) }

func (a *allocation) expiry() time.Time { return time.Unix(0, a.expires.Load()) }

// reaches reports whether the allocation relays to peers of IPv6 (v6) or of IPv4.
func (a *allocation) reaches(v6 bool) bool {
	if a.tcp != nil {
		return a.tcp.public.Addr().Is6() == v6
	}
	return a.relayFor(v6) != nil
}

// relayFor returns the UDP relay for peers of IPv6 (v6) or of IPv4 (peers are unmapped).
func (a *allocation) relayFor(v6 bool) *udpRelay {
	for _, r := range a.relays {
		if r.public.Addr().Is6() == v6 {
			return r
		}
	}
	return nil
}

// permit installs or refreshes permissions for ips, unless that would make more than limit
// (0: no limit): false then, and nothing changes.
func (a *allocation) permit(ips []netip.Addr, limit int, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prune(now)
	fresh := 0
	for i, ip := range ips {
		if _, ok := a.perms[ip]; !ok && !slices.Contains(ips[:i], ip) {
			fresh++
		}
	}
	if limit > 0 && len(a.perms)+fresh > limit {
		return false
	}
	for _, ip := range ips {
		a.perms[ip] = now.Add(permissionLifetime)
	}
	a.publish(now)
	return true
}

// bind binds or refreshes channel number to peer, and installs or refreshes the peer's
// permission (RFC 8656 section 12.2): a number or peer bound otherwise, also during an
// expired binding's cooldown, is a conflict (400); a new binding past channels, or a new
// peer IP past perms (0: no limit), is refused with 508 and the limit it hit.
func (a *allocation) bind(number uint16, peer netip.AddrPort, channels, perms int, now time.Time) (stun.ErrorCode, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prune(now)
	c, bound := a.channels[number]
	if bound && c.peer != peer {
		return stun.CodeBadRequest, 0
	}
	if !bound {
		for _, other := range a.channels {
			if other.peer == peer {
				return stun.CodeBadRequest, 0
			}
		}
		if channels > 0 && a.activeChannels(now) >= channels {
			return stun.CodeInsufficientCapacity, limitChannels
		}
	}
	if _, ok := a.perms[peer.Addr()]; !ok && perms > 0 && len(a.perms) >= perms {
		return stun.CodeInsufficientCapacity, limitPermissions
	}
	if !bound {
		c = &channel{peer: peer}
		a.channels[number] = c
	}
	c.expires = now.Add(channelLifetime)
	a.perms[peer.Addr()] = now.Add(permissionLifetime)
	a.publish(now)
	return 0, 0
}

func (a *allocation) activeChannels(now time.Time) int {
	n := 0
	for _, c := range a.channels {
		if now.Before(c.expires) {
			n++
		}
	}
	return n
}

// expire drops what has run out by now and publishes the change; a.mu is not held.
func (a *allocation) expire(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.prune(now) {
		a.publish(now)
	}
}

// prune forgets permissions that have expired and channels past their cooldown, and
// reports whether anything the data plane sees changed; a.mu is held.
func (a *allocation) prune(now time.Time) bool {
	changed := false
	for ip, exp := range a.perms {
		if !now.Before(exp) {
			delete(a.perms, ip)
			changed = true
		}
	}
	shown := a.peers.Load().byNumber
	for n, c := range a.channels {
		if now.Before(c.expires) {
			continue
		}
		if _, ok := shown[n]; ok {
			changed = true
		}
		if !now.Before(c.expires.Add(channelCooldown)) {
			delete(a.channels, n)
		}
	}
	return changed
}

// publish gives the data plane a new snapshot of the live permissions and channels; a.mu
// is held.
func (a *allocation) publish(now time.Time) {
	t := &peerTable{
		perms:    make(map[netip.Addr]int64, len(a.perms)),
		byNumber: make(map[uint16]route, len(a.channels)),
		byPeer:   make(map[netip.AddrPort]route, len(a.channels)),
	}
	for ip, exp := range a.perms {
		t.perms[ip] = exp.UnixNano()
	}
	for n, c := range a.channels {
		perm, ok := t.perms[c.peer.Addr()]
		if !ok || !now.Before(c.expires) {
			continue
		}
		r := route{number: n, peer: c.peer, until: min(perm, c.expires.UnixNano())}
		t.byNumber[n] = r
		t.byPeer[c.peer] = r
	}
	a.peers.Store(t)
	a.publishKernel(t)
}

func (a *allocation) relayedAddrs() []netip.AddrPort {
	if a.tcp != nil {
		return []netip.AddrPort{a.tcp.public}
	}
	out := make([]netip.AddrPort, len(a.relays))
	for i, r := range a.relays {
		out[i] = r.public
	}
	return out
}

// relayAddrs is relayedAddrs as text, for logs and the admin API.
func (a *allocation) relayAddrs() string {
	addrs := a.relayedAddrs()
	out := make([]string, len(addrs))
	for i, addr := range addrs {
		out[i] = addr.String()
	}
	return strings.Join(out, ",")
}

// closeRelays closes the allocation's relays; their ports go back to the pool.
func (a *allocation) closeRelays() {
	for _, r := range a.relays {
		r.close()
	}
	if a.tcp != nil {
		a.tcp.close()
	}
}

// Session describes one live allocation, for the admin API.
type Session struct {
	ID        string `json:"id"`
	User      string `json:"user"`
	Realm     string `json:"realm"`
	Client    string `json:"client"`
	Transport string `json:"transport"` // listener proto: udp, tcp, tls or dtls
	Relay     string `json:"relay"`     // the relayed transport address
	// AdditionalRelay is the second relayed address of a dual-stack allocation (RFC 8656
	// ADDITIONAL-ADDRESS-FAMILY).
	AdditionalRelay string    `json:"additional_relay,omitempty"`
	Created         time.Time `json:"created"`
	Age             float64   `json:"age_seconds"`
	Expires         time.Time `json:"expires"` // when its lifetime runs out unless refreshed

	ToPeerPackets   uint64 `json:"to_peer_packets"`
	ToPeerBytes     uint64 `json:"to_peer_bytes"`
	FromPeerPackets uint64 `json:"from_peer_packets"`
	FromPeerBytes   uint64 `json:"from_peer_bytes"`
	// Offloaded says whether the kernel fast path relays the session's channels; the
	// Kernel counts are what it relayed, included in the counts above.
	Offloaded             bool   `json:"offloaded"`
	KernelToPeerPackets   uint64 `json:"kernel_to_peer_packets"`
	KernelFromPeerPackets uint64 `json:"kernel_from_peer_packets"`

	Permissions []string  `json:"permissions"` // peer IPs
	Channels    []Channel `json:"channels"`
}

// Channel is one channel binding of a session.
type Channel struct {
	Number uint16 `json:"number"`
	Peer   string `json:"peer"`
}

// Sessions describes every live allocation, oldest first.
func (s *Server) Sessions() []Session {
	now := time.Now()
	all := s.table.all()
	out := make([]Session, 0, len(all))
	for _, a := range all {
		out = append(out, a.describe(now, s.cfg.Realm))
	}
	return out
}

func (a *allocation) describe(now time.Time, realm string) Session {
	d := Session{
		ID: strconv.FormatUint(a.id, 10), User: a.user, Realm: realm, Client: a.five.client.String(),
		Transport: a.transport, Created: a.created, Age: now.Sub(a.created).Seconds(),
		Expires: a.expiry(), Permissions: []string{}, Channels: []Channel{},
	}
	if relays := a.relayedAddrs(); len(relays) > 0 {
		d.Relay = relays[0].String()
		if len(relays) > 1 {
			d.AdditionalRelay = relays[1].String()
		}
	}
	u, k := a.usage(), a.kernelUsage()
	d.Offloaded, d.KernelToPeerPackets, d.KernelFromPeerPackets = a.kernel != nil, k.ToPeerPackets, k.FromPeerPackets
	d.ToPeerPackets, d.ToPeerBytes = u.ToPeerPackets, u.ToPeerBytes
	d.FromPeerPackets, d.FromPeerBytes = u.FromPeerPackets, u.FromPeerBytes
	a.mu.Lock()
	for ip := range a.perms {
		d.Permissions = append(d.Permissions, ip.String())
	}
	for n, c := range a.channels {
		if now.Before(c.expires) {
			d.Channels = append(d.Channels, Channel{Number: n, Peer: c.peer.String()})
		}
	}
	a.mu.Unlock()
	slices.Sort(d.Permissions)
	slices.SortFunc(d.Channels, func(a, b Channel) int { return int(a.Number) - int(b.Number) })
	return d
}
