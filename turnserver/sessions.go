package turnserver

import (
	"slices"
	"strconv"
	"time"
)

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
	perms, channels := a.snapshot()
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
	for ip := range perms {
		d.Permissions = append(d.Permissions, ip.String())
	}
	slices.Sort(d.Permissions)
	for n, peer := range channels {
		d.Channels = append(d.Channels, Channel{Number: n, Peer: peer.String()})
	}
	slices.SortFunc(d.Channels, func(a, b Channel) int { return int(a.Number) - int(b.Number) })
	return d
}
