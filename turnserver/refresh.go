package turnserver

import (
	"net/netip"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/relay"
)

// refresh handles a Refresh request (RFC 8656 section 8): a new lifetime, or LIFETIME 0
// to delete the allocation. A REQUESTED-ADDRESS-FAMILY must name a family the allocation
// relays (443 otherwise); the lifetime is the whole allocation's.
func (s *Server) refresh(r *request) (stun.ErrorCode, []stun.Setter) {
	a := r.alloc
	if v, err := r.msg.Get(stun.AttrRequestedAddressFamily); err == nil {
		fam, err := turnwire.AddressFamily(v)
		if err != nil {
			return stun.CodeBadRequest, nil
		}
		if !a.reaches(fam == turnwire.FamilyIPv6) {
			return stun.CodePeerAddrFamilyMismatch, nil
		}
	}
	d := s.lifetime(r.msg)
	if d == 0 {
		s.end(a, "deleted")
	} else {
		a.refresh(d, r.now)
	}
	s.succeed(r, turnwire.LifetimeAttr(d))
	return 0, nil
}

// checkPeer checks a peer a request names against the peer policy and the user's one-peer
// limit, 403 if refused (counted under op): by IP only for CreatePermission (byIP), by
// transport address over proto for the others. A peer of a family the allocation does not
// relay is 443.
func (s *Server) checkPeer(a *allocation, peer netip.AddrPort, proto relay.Proto, byIP bool, op int) stun.ErrorCode {
	var ok bool
	if byIP {
		ok = (!a.only.IsValid() || peer.Addr() == a.only.Addr()) && s.cfg.Policy.PermitIP(peer.Addr())
	} else {
		ok = (!a.only.IsValid() || peer == a.only) && s.cfg.Policy.PermitAddr(proto, peer)
	}
	switch {
	case !ok:
		s.meters.peerDenied[op].Inc()
		return stun.CodeForbidden
	case !a.reaches(peer.Addr().Is6()):
		return stun.CodePeerAddrFamilyMismatch
	}
	return 0
}
