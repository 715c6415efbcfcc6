package turnserver

import (
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/relay"
)

// channelBind handles a ChannelBind request (RFC 8656 section 11.2): one channel number in
// 0x4000-0x7FFF and one peer; binding a number or a peer that is bound otherwise (or was,
// during the 5 minutes after its binding expired) is 400; the peer's permission is
// installed or refreshed with it.
func (s *Server) channelBind(r *request) (stun.ErrorCode, []stun.Setter) {
	a := r.alloc
	v, err := r.msg.Get(stun.AttrChannelNumber)
	if err != nil || len(r.peers) != 1 || a.tcp != nil {
		return stun.CodeBadRequest, nil
	}
	number, err := turnwire.ChannelNumber(v)
	if err != nil {
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
