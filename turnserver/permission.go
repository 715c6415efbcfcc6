package turnserver

import (
	"net/netip"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/relay"
)

// createPermission handles a CreatePermission request (RFC 8656 section 9): every peer is
// checked before any is installed, so one refused peer leaves the allocation as it was.
func (s *Server) createPermission(r *request) (stun.ErrorCode, []stun.Setter) {
	a := r.alloc
	if len(r.peers) == 0 {
		return stun.CodeBadRequest, nil
	}
	ips := make([]netip.Addr, 0, len(r.peers))
	for _, peer := range r.peers {
		if code := s.checkPeer(a, peer, relay.UDP, true, deniedCreatePermission); code != 0 {
			return code, nil
		}
		ips = append(ips, peer.Addr())
	}
	if !a.permit(ips, s.limits.Load().Permissions, r.now) {
		s.meters.limitRejections[limitPermissions].Inc()
		return stun.CodeInsufficientCapacity, nil
	}
	s.succeed(r)
	return 0, nil
}

// channelBind handles a ChannelBind request (RFC 8656 section 11.2): one channel number in
// 0x4000-0x7FFF and one peer; binding a number or a peer that is bound otherwise (or was,
// during the 5 minutes after its binding expired) is 400; the peer's permission is
// installed or refreshed with it.
func (s *Server) channelBind(r *request) (stun.ErrorCode, []stun.Setter) {
	a := r.alloc
	v, _ := r.msg.Get(stun.AttrChannelNumber) // absent: no bytes, which the decoder refuses
	number, err := turnwire.ChannelNumber(v)
	if err != nil || len(r.peers) != 1 || a.tcp != nil {
		return stun.CodeBadRequest, nil
	}
	peer := r.peers[0]
	if code := s.checkPeer(a, peer, relay.UDP, false, deniedChannelBind); code != 0 {
		return code, nil
	}
	lim := s.limits.Load()
	code, limit := a.bind(number, peer, lim.Channels, lim.Permissions, r.now)
	if code == stun.CodeInsufficientCapacity {
		s.meters.limitRejections[limit].Inc()
	}
	if code != 0 {
		return code, nil
	}
	s.succeed(r)
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
