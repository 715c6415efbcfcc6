package server

import (
	"encoding/hex"
	"slices"
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
// session, so that the credential is revoked when it ends, or when the session of the same
// token that took it over ends (sfuSessionEnded).
type sfuCreds struct {
	mu        sync.Mutex
	bySession map[string][]string // session id → the users it holds: its own, and those it took over
	live      map[string]struct{} // users of sessions not ended
}

func newSFUCreds() *sfuCreds {
	return &sfuCreds{bySession: map[string][]string{}, live: map[string]struct{}{}}
}

// sfuUser is the user part of the credential of cred's session.
func sfuUser(cred sfu.TURNCredential) string {
	return sfuTURNUser + hex.EncodeToString(cred.Token[:6]) + "-" + cred.Session[:min(12, len(cred.Session))]
}

// mint records the credential user of a new session.
func (c *sfuCreds) mint(session, user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bySession[session] = append(c.bySession[session], user)
	c.live[user] = struct{}{}
}

// users are the credential users session holds.
func (c *sfuCreds) users(session string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.bySession[session])
}

// end revokes the credentials an ended session holds and returns their users.
func (c *sfuCreds) end(session string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	users := c.bySession[session]
	delete(c.bySession, session)
	for _, user := range users {
		delete(c.live, user)
	}
	return users
}

// handOver gives the credentials of an ended session to heir, which revokes them when it
// ends; false if heir has ended meanwhile.
func (c *sfuCreds) handOver(session, heir string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.bySession[heir]; !ok {
		return false
	}
	c.bySession[heir] = append(c.bySession[heir], c.bySession[session]...)
	delete(c.bySession, session)
	return true
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
	token, ok := sfuToken(user)
	return token, s.cfg.Load().SFU.TURNAllocationsPerToken, ok
}

// sfuToken is "sfu-TOKEN", the part of an SFU credential user that names its access token.
func sfuToken(user string) (string, bool) {
	rest, ok := strings.CutPrefix(user, sfuTURNUser)
	if !ok {
		return "", false
	}
	token, _, _ := strings.Cut(rest, "-")
	return sfuTURNUser + token, true
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

// sfuSessionEnded revokes the TURN credentials of an SFU session that ended and ends the
// allocations made with them; unless one of those allocations relays another live session
// of the same access token, which takes them over. That is RFC 9725's relay-only client:
// its first POST only learns the TURN server from the Link headers, it never connects and
// ends at the connect timeout, and the session it then opens relays with the first one's
// credential.
func (s *Server) sfuSessionEnded(session string) {
	if s.turn == nil { // a start that failed closes the SFU: no allocation was made
		s.sfuCreds.end(session)
		return
	}
	if heir := s.sfuCredHeir(session); heir != "" && s.sfuCreds.handOver(session, heir) {
		s.log.Info("sfu: session's TURN credential relays another session of its token, which takes it over",
			"session", session, "heir", heir)
		return
	}
	n := 0
	for _, user := range s.sfuCreds.end(session) {
		n += s.turn.KillUser(user)
	}
	if n > 0 {
		s.log.Info("sfu: session's TURN allocations ended", "session", session, "allocations", n)
	}
}

// sfuCredHeir is the live SFU session, of the access token that opened session, whose
// client one of session's TURN credentials relays; "" if there is none.
func (s *Server) sfuCredHeir(session string) string {
	users := s.sfuCreds.users(session)
	if len(users) == 0 {
		return ""
	}
	token, _ := sfuToken(users[0])
	relays := map[string]bool{}
	for _, a := range s.turn.Sessions() {
		if slices.Contains(users, a.User) {
			relays[a.Relay] = true
		}
	}
	if len(relays) == 0 {
		return ""
	}
	for _, other := range s.sfu.sfu.SessionList("") {
		if heirUsers := s.sfuCreds.users(other.ID); other.ID != session && relays[other.Client] &&
			len(heirUsers) > 0 && strings.HasPrefix(heirUsers[0], token+"-") {
			return other.ID
		}
	}
	return ""
}
