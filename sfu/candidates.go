package sfu

import (
	"net/netip"
	"strings"

	"github.com/pion/ice/v4"
)

// maxRemoteCandidates bounds the candidates one session may give the SFU, in its offer and
// its PATCHes together: the SFU sends connectivity checks to every one.
const maxRemoteCandidates = 32

// candidateGate decides which remote candidates the SFU's ICE may check. Candidates are
// addresses the SFU will send to, chosen by the client: the peer policy that keeps TURN
// relays off loopback and private networks applies to them too. A client that cannot be
// reached at an allowed address still connects through the address its own checks come
// from (a peer-reflexive candidate), which is what a NATed client does anyway.
type candidateGate struct {
	permit func(netip.AddrPort) bool // nil: every address
}

// allow reports whether candidate (with or without its "candidate:" prefix) is an IPv4 UDP
// candidate at a permitted address. mDNS names are dropped: the SFU does not resolve them.
func (g candidateGate) allow(candidate string) bool {
	c, err := ice.UnmarshalCandidate(strings.TrimPrefix(candidate, "a="))
	if err != nil || c.NetworkType() != ice.NetworkTypeUDP4 {
		return false
	}
	ip, err := netip.ParseAddr(c.Address())
	if err != nil || c.Port() <= 0 || c.Port() > 65535 {
		return false
	}
	return g.permit == nil || g.permit(netip.AddrPortFrom(ip.Unmap(), uint16(c.Port())))
}

// filterOffer drops the offer's candidate lines the gate refuses, and those past the
// limit; it returns the offer and the number of candidates kept.
func (g candidateGate) filterOffer(offer string) (string, int) {
	lines := strings.Split(offer, "\r\n")
	out := lines[:0]
	kept := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "a=candidate:") {
			if kept >= maxRemoteCandidates || !g.allow(l) {
				continue
			}
			kept++
		}
		out = append(out, l)
	}
	return strings.Join(out, "\r\n"), kept
}
