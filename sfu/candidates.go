package sfu

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
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

// parseOffer reads an SDP offer with pion's parser, the one pion/webrtc reads it with, so
// that the gate sees the candidates exactly as the SFU's ICE would. Lines may end in CRLF
// or LF, as that parser accepts both. A CR anywhere else is refused: the parser keeps it
// inside a line but trims as many bytes as there are CRs, so the same line would read
// differently once encoded again.
func parseOffer(offer string) (*sdp.SessionDescription, error) {
	if strings.Contains(strings.ReplaceAll(offer, "\r\n", ""), "\r") {
		return nil, fmt.Errorf("%w: a CR that does not end a line", errBadOffer)
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadOffer, err)
	}
	return &d, nil
}

// apply drops the candidates of d that the gate refuses, at session level and in every
// media section, and those past maxRemoteCandidates in the whole offer, then encodes d: the
// offer to give pion and the number of candidates kept.
func (g candidateGate) apply(d *sdp.SessionDescription) (string, int, error) {
	kept := 0
	d.Attributes = g.keep(d.Attributes, &kept)
	for _, m := range d.MediaDescriptions {
		m.Attributes = g.keep(m.Attributes, &kept)
	}
	out, err := d.Marshal()
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", errBadOffer, err)
	}
	return string(out), kept, nil
}

// keep filters one level's attributes, counting the candidates kept in *kept. A candidate
// key spelled any other way (" candidate", "Candidate") is dropped too: pion ignores it
// today, and a parser that forgives it tomorrow must not find it unchecked.
func (g candidateGate) keep(attrs []sdp.Attribute, kept *int) []sdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		if strings.EqualFold(strings.TrimSpace(a.Key), "candidate") {
			if a.Key != "candidate" || *kept >= maxRemoteCandidates || !g.allow(a.Value) {
				continue
			}
			*kept++
		}
		out = append(out, a)
	}
	return out
}
