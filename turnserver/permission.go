package turnserver

import (
	"net/netip"

	"github.com/pion/stun/v4"

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
