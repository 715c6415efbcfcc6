package server

import (
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/sfu"
)

// sfuTURNUser starts the user part of the TURN credentials minted for SFU sessions, a
// prefix reserved for them. Such a user may relay to the SFU only (see peerLimit): a
// viewer's token must not buy a general purpose relay.
const sfuTURNUser = "sfu-"

// sfuCreds are the TURN credentials minted for live SFU sessions. The user part of one is
// "sfu-TOKEN-SESSION": TOKEN names the access token that opened the session, so that the
// TURN quota counts every credential of one token as one (sfuQuotaGroup), and SESSION the
// session, so that the credential is revoked when it ends.
type sfuCreds struct {
	mu        sync.Mutex
	bySession map[string]string   // session id → user
	live      map[string]struct{} // users of sessions not ended
}

func newSFUCreds() *sfuCreds {
	return &sfuCreds{bySession: map[string]string{}, live: map[string]struct{}{}}
}

// sfuUser is the user part of the credential of cred's session.
func sfuUser(cred sfu.TURNCredential) string {
	return sfuTURNUser + hex.EncodeToString(cred.Token[:6]) + "-" + cred.Session[:min(12, len(cred.Session))]
}

// mint records the credential user of a new session.
func (c *sfuCreds) mint(session, user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bySession[session] = user
	c.live[user] = struct{}{}
}

// end revokes the credential of an ended session and returns its user.
func (c *sfuCreds) end(session string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	user, ok := c.bySession[session]
	delete(c.bySession, session)
	delete(c.live, user)
	return user, ok
}

// revoked reports whether user is an SFU credential user whose session is not live: one
// of an ended session, of a previous run, or made up.
func (c *sfuCreds) revoked(user string) bool {
	if !strings.HasPrefix(user, sfuTURNUser) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, live := c.live[user]
	return !live
}

// sfuQuotaGroup is the TURN quota's GroupFunc: the credentials of one access token share
// sfu.turn_allocations_per_token allocations, apart from allocations_per_user.
func (s *Server) sfuQuotaGroup(user string) (string, int, bool) {
	rest, ok := strings.CutPrefix(user, sfuTURNUser)
	if !ok {
		return "", 0, false
	}
	token, _, _ := strings.Cut(rest, "-")
	return sfuTURNUser + token, s.cfg.Load().SFU.TURNAllocationsPerToken, true
}

// sfuICEServers are the STUN and TURN servers a WHIP/WHEP session is told about, with a
// TURN credential minted for it from the signing secret. The credential expires with the
// session's access token if that comes before turn_credential_ttl.
func (s *Server) sfuICEServers(cred sfu.TURNCredential) []auth.ICEServer {
	cfg := s.cfg.Load()
	stunURIs, turnURIs := auth.URIs(endpoints(cfg, s.relays.v4, s.relays.v6))
	secrets := s.currentCreds().secrets()
	if len(secrets) == 0 {
		return auth.ICEServers(stunURIs, auth.RESTResponse{})
	}
	now := time.Now()
	ttl := min(cfg.SFU.TURNCredentialTTL.Duration, cred.Expiry.Sub(now))
	user := sfuUser(cred)
	s.sfuCreds.mint(cred.Session, user)
	return auth.ICEServers(stunURIs, auth.NewRESTResponse(secrets[0], user, max(ttl, time.Second), now, turnURIs))
}

// sfuSessionEnded revokes the TURN credential of an SFU session that ended and ends the
// allocations made with it.
func (s *Server) sfuSessionEnded(session string) {
	user, ok := s.sfuCreds.end(session)
	if !ok || s.turn == nil {
		return
	}
	if n := s.turn.KillUser(user); n > 0 {
		s.log.Info("sfu: session's TURN allocations ended", "session", session, "allocations", n)
	}
}
