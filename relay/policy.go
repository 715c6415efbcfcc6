package relay

import (
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
)

// Recommended is the keyword in deny_peers that expands to RecommendedDeny.
const Recommended = "recommended"

// RecommendedDeny lists the ranges a TURN server on the internet must not relay to: "this
// network", loopback, private, CGNAT, link-local, multicast, reserved, broadcast, the IPv6
// unspecified and loopback addresses, unique-local, link-local and multicast IPv6, the
// NAT64 prefixes (well-known and local-use), which reach IPv4 hosts through a translator,
// and 6to4 (2002::/16) and Teredo (2001::/32), whose addresses embed IPv4 ones too.
// IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) IPv6 forms are not listed:
// Policy checks every address in its IPv4 form too, which is what CVE-2020-26262 got around
// in coturn with 0.0.0.0, [::] and [::1].
func RecommendedDeny() []netip.Prefix {
	var out []netip.Prefix
	for _, c := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
		"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
		"64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32",
	} {
		out = append(out, netip.MustParsePrefix(c))
	}
	return out
}

// Policy decides which peers a relay may talk to. allow wins over deny. Ferry's own relay
// addresses are always allowed, but only with a port the pool has handed out for the same
// protocol: two clients relaying through the same Ferry reach each other (coturn#584), and
// so do clients and the SFU, while no other service on the host does, even when the relay
// IP lies in a denied range. A port merely inside the pool's range is not enough: the range
// usually overlaps the kernel's ephemeral ports, which other programs' sockets get. Nor is
// a port Ferry holds for the other protocol: a TCP service may listen on the port number of
// a UDP relay or of the SFU's ICE socket.
//
// The deny and allow rules can be replaced while relays run (SetPeers). Every check loads
// them once, so it sees either the old rules or the new ones, never a mix.
type Policy struct {
	rules atomic.Pointer[peerRules]
	own   []netip.Addr // relay IPs, in canonical form
	held  func(port uint16, proto Proto) bool
}

// peerRules are the parsed deny_peers and allow_peers. They are never modified: SetPeers
// swaps in new ones.
type peerRules struct {
	deny, allow []netip.Prefix
}

// NewPolicy parses deny and allow entries (the keyword "recommended", CIDRs or single IPs;
// "recommended" only in deny). own are the relay IPs, and held tells which of their ports
// are Ferry's, by protocol (Pool.Held).
func NewPolicy(deny, allow []string, own []netip.Addr, held func(port uint16, proto Proto) bool) (*Policy, error) {
	p := &Policy{held: held}
	if err := p.SetPeers(deny, allow); err != nil {
		return nil, err
	}
	for _, ip := range own {
		if ip.IsValid() && !ip.IsUnspecified() {
			p.own = append(p.own, canonical(ip))
		}
	}
	return p, nil
}

// SetPeers replaces the deny and allow entries, parsed as NewPolicy does; checks running
// meanwhile finish with the old rules. On an error the old rules stay.
func (p *Policy) SetPeers(deny, allow []string) error {
	r := &peerRules{}
	var err error
	if r.deny, err = parsePeers(deny, true); err != nil {
		return fmt.Errorf("relay: deny_peers: %w", err)
	}
	if r.allow, err = parsePeers(allow, false); err != nil {
		return fmt.Errorf("relay: allow_peers: %w", err)
	}
	p.rules.Store(r)
	return nil
}

func parsePeers(entries []string, recommendedOK bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range entries {
		if e == Recommended && recommendedOK {
			out = append(out, RecommendedDeny()...)
			continue
		}
		if pfx, err := netip.ParsePrefix(e); err == nil {
			out = append(out, pfx.Masked())
			continue
		}
		ip, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", e)
		}
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// canonical gives the IPv4 address hidden in an IPv4-mapped or IPv4-compatible IPv6 address
// (:: and ::1 become 0.0.0.0 and 0.0.0.1), and the address itself otherwise.
func canonical(ip netip.Addr) netip.Addr {
	ip = ip.WithZone("")
	if ip.Is4In6() {
		return ip.Unmap()
	}
	if ip.Is6() {
		b := ip.As16()
		if [12]byte(b[:12]) == [12]byte{} {
			return netip.AddrFrom4([4]byte(b[12:]))
		}
	}
	return ip
}

func matches(prefixes []netip.Prefix, ip, canon netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) || p.Contains(canon) {
			return true
		}
	}
	return false
}

// PermitIP is the check for CreatePermission, which names an IP only.
func (p *Policy) PermitIP(ip netip.Addr) bool {
	r := p.rules.Load()
	canon := canonical(ip)
	if matches(r.allow, ip, canon) || p.isOwn(canon) {
		return true
	}
	return !matches(r.deny, ip, canon)
}

// PermitAddr is the check for a concrete peer transport address reached over proto:
// ChannelBind and Send indications (UDP), Connect (TCP), the SFU's remote candidates (UDP).
func (p *Policy) PermitAddr(proto Proto, peer netip.AddrPort) bool {
	r := p.rules.Load()
	ip := peer.Addr()
	canon := canonical(ip)
	if matches(r.allow, ip, canon) {
		return true
	}
	if p.isOwn(canon) {
		return p.held(peer.Port(), proto)
	}
	return !matches(r.deny, ip, canon)
}

// PermitSource filters datagrams (UDP) and connections (TCP) arriving at a relay: an own
// relay IP is a legitimate source only from a port Ferry holds for that protocol (another
// relay), so nothing else on the host can talk to clients through a permission granted for
// that IP. Other sources are filtered by the allocation's permissions.
func (p *Policy) PermitSource(proto Proto, src netip.AddrPort) bool {
	if len(p.own) == 0 {
		return true
	}
	ip := src.Addr()
	canon := canonical(ip)
	if !p.isOwn(canon) || p.held(src.Port(), proto) {
		return true
	}
	return matches(p.rules.Load().allow, ip, canon)
}

func (p *Policy) isOwn(canon netip.Addr) bool { return slices.Contains(p.own, canon) }
