package turnserver

import (
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
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
