package turnserver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/pion/stun/v4"
)

const (
	// pendingFor is how long a permission or channel the guard let through counts against
	// the limits before pion reports it created. Requests wait in a queue for pion, so
	// without it a burst would pass, each request checked against the same old count; one
	// pion refuses stops counting after this.
	pendingFor = 5 * time.Second

	// pionDefaultLifetime is what pion gives an allocation or refresh without LIFETIME,
	// pionMaxLifetime the longest LIFETIME it grants (it gives longer ones the default).
	pionDefaultLifetime = 10 * time.Minute
	pionMaxLifetime     = time.Hour - time.Second
)

// Which per-allocation limit refused a request, for the metrics.
const (
	limitPermissions = iota
	limitChannels
	limitKinds
)

var limitLabels = [limitKinds]string{"permissions", "channels"}

// peerAsk is what a CreatePermission or ChannelBind asks an allocation to hold.
type peerAsk struct {
	ips     []netip.Addr // peer IPs to have permissions for
	channel uint16       // with bind: the channel number to bind
	bind    bool
}

// roomForPeers applies the per-allocation limits to a CreatePermission or ChannelBind
// whose sender owns the allocation: false means it would go past one of them.
func (g *guard) roomForPeers(m *stun.Message, peers []netip.AddrPort, client, server net.Addr) bool {
	lim := g.limits.Load()
	if lim.Permissions == 0 && lim.Channels == 0 {
		return true
	}
	var ask peerAsk
	switch m.Type.Method {
	case stun.MethodCreatePermission:
	case stun.MethodChannelBind:
		v, err := m.Get(stun.AttrChannelNumber)
		if err != nil || len(v) < 2 {
			return true // pion answers 400
		}
		ask.channel, ask.bind = binary.BigEndian.Uint16(v), true
	default:
		return true
	}
	for _, peer := range peers {
		ask.ips = append(ask.ips, peer.Addr().Unmap())
	}
	kind, ok := g.sessions.admitPeers(client, server, ask, lim, time.Now())
	if !ok {
		g.meters.limitRejections[kind].Inc()
	}
	return ok
}

// admitPeers reports whether the allocation of a 5-tuple has room for what ask adds under
// lim, and which limit it would pass if not. What it admits counts as pending until pion
// reports it created, or for pendingFor. Refreshing a permission or channel the allocation
// has needs no room.
func (s *sessions) admitPeers(client, server net.Addr, ask peerAsk, lim *Limits, now time.Time) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byFive[fiveTuple(client, server)]
	if !ok {
		return 0, true // gone meanwhile: pion answers
	}
	sess.expirePending(now)
	var fresh []netip.Addr
	for _, ip := range ask.ips {
		if !sess.hasPermission(ip) && !slices.Contains(fresh, ip) {
			fresh = append(fresh, ip)
		}
	}
	if lim.Permissions > 0 && len(sess.perms)+len(sess.pendingPerms)+len(fresh) > lim.Permissions {
		return limitPermissions, false
	}
	newChannel := ask.bind && !sess.hasChannel(ask.channel)
	if newChannel && lim.Channels > 0 && len(sess.channels)+len(sess.pendingChannels) >= lim.Channels {
		return limitChannels, false
	}
	until := now.Add(pendingFor)
	for _, ip := range fresh {
		if sess.pendingPerms == nil {
			sess.pendingPerms = map[netip.Addr]time.Time{}
		}
		sess.pendingPerms[ip] = until
	}
	if newChannel {
		if sess.pendingChannels == nil {
			sess.pendingChannels = map[uint16]time.Time{}
		}
		sess.pendingChannels[ask.channel] = until
	}
	return 0, true
}

func (sess *session) hasPermission(ip netip.Addr) bool {
	_, ok := sess.perms[ip]
	_, pending := sess.pendingPerms[ip]
	return ok || pending
}

func (sess *session) hasChannel(n uint16) bool {
	_, ok := sess.channels[n]
	_, pending := sess.pendingChannels[n]
	return ok || pending
}

// expirePending forgets what pion did not create in time: it refused it.
func (sess *session) expirePending(now time.Time) {
	for ip, until := range sess.pendingPerms {
		if now.After(until) {
			delete(sess.pendingPerms, ip)
		}
	}
	for n, until := range sess.pendingChannels {
		if now.After(until) {
			delete(sess.pendingChannels, n)
		}
	}
}

// capLifetime cuts the LIFETIME an authenticated Allocate or Refresh asks for (pion's
// default when it asks for none) to the maximum: the request is rebuilt with the shorter
// LIFETIME and signed again with key, since pion checks its integrity again. pion's answer
// then tells the client the LIFETIME it got, as RFC 8656 section 7.2 has it. false: m
// stands as it is.
func (g *guard) capLifetime(m *stun.Message, key []byte) ([]byte, bool) {
	if m.Type.Method != stun.MethodAllocate && m.Type.Method != stun.MethodRefresh {
		return nil, false
	}
	limit := g.limits.Load().MaxLifetime
	if limit <= 0 {
		return nil, false
	}
	limit = min(limit, pionMaxLifetime)
	asked := pionDefaultLifetime
	if v, err := m.Get(stun.AttrLifetime); err == nil && len(v) == 4 {
		asked = time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	}
	if asked <= limit {
		return nil, false
	}
	out, err := withLifetime(m, limit, key)
	if err != nil {
		return nil, false
	}
	return out, true
}

// withLifetime is m with LIFETIME d, signed with key: its attributes up to
// MESSAGE-INTEGRITY (those after it, bar FINGERPRINT, are ignored anyway), the new
// LIFETIME, MESSAGE-INTEGRITY, and FINGERPRINT if m had one.
func withLifetime(m *stun.Message, d time.Duration, key []byte) ([]byte, error) {
	out := &stun.Message{Type: m.Type, TransactionID: m.TransactionID}
	out.WriteHeader()
	for _, a := range m.Attributes {
		if a.Type == stun.AttrMessageIntegrity {
			break
		}
		if a.Type != stun.AttrLifetime {
			out.Add(a.Type, a.Value)
		}
	}
	out.Add(stun.AttrLifetime, binary.BigEndian.AppendUint32(nil, uint32(d/time.Second)))
	if err := stun.MessageIntegrity(key).AddTo(out); err != nil {
		return nil, err
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.AddTo(out); err != nil {
			return nil, err
		}
	}
	return out.Raw, nil
}
