package test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// sfuTURN publishes to room with token and returns the session and the TURN credential
// (username, password) of its Link headers.
func sfuTURN(t *testing.T, s *setup, room, token string) (sfuSession, string, string) {
	t.Helper()
	p := newPublisher(t, peerOptions{}, "")
	sess, status := signal(t, p.pc, "http://"+s.sfuAddr+"/whip/"+room, token)
	if status != http.StatusCreated {
		t.Fatalf("WHIP: %d", status)
	}
	for _, srv := range iceServersFromLinks(t, sess.links) {
		if srv.Username != "" {
			return sess, srv.Username, srv.Credential.(string)
		}
	}
	t.Fatalf("no TURN credential in %q", sess.links)
	return sess, "", ""
}

// TestSFUCredentialScope: the TURN credential of an SFU session is the session's: it
// expires no later than the access token, it is revoked when the session ends (and its
// allocations end with it), and the credentials of all sessions of one token share one
// small quota. The attacker's review took a 200-port pool with 21 WHIP posts of one token.
func TestSFUCredentialScope(t *testing.T) {
	s, port := sfuSetup(t)
	s.sfuTURNPerToken = 2
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)

	tokenTTL := 10 * time.Minute
	token := accessToken(t, "scope", true, false, tokenTTL)
	first, user1, pass1 := sfuTURN(t, s, "scope", token)
	expiry, err := strconv.ParseInt(user1[:strings.IndexByte(user1, ':')], 10, 64)
	if err != nil || time.Unix(expiry, 0).After(time.Now().Add(tokenTTL)) {
		t.Fatalf("credential %q expires after its token (in %v)", user1, tokenTTL)
	}
	_, user2, pass2 := sfuTURN(t, s, "scope", token)

	a := dialRaw(t, "udp", server, user1, pass1)
	a.allocate()
	b := dialRaw(t, "udp", server, user2, pass2)
	b.allocate()
	c := dialRaw(t, "udp", server, user1, pass1)
	mustCode(t, "a third allocation of one token's credentials", c.request(stun.MethodAllocate, requestedTransportUDP),
		stun.CodeAllocQuotaReached)
	_, user3, pass3 := sfuTURN(t, s, "scope", accessToken(t, "scope", true, true, tokenTTL))
	dialRaw(t, "udp", server, user3, pass3).allocate() // another token has a quota of its own

	const active = `ferry_allocations_active{transport="udp",family="ipv4"}`
	if got := scrape(t, s.metricsAddr)[active]; got != 3 {
		t.Fatalf("%s = %v, want 3", active, got)
	}
	if resp := first.do(t, http.MethodDelete, "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	waitFor(t, "the ended session's allocation to end", func() bool { return scrape(t, s.metricsAddr)[active] == 2 })
	mustCode(t, "Refresh with an ended session's credential", a.request(stun.MethodRefresh), stun.CodeUnauthorized)
	mustCode(t, "Allocate with an ended session's credential", c.request(stun.MethodAllocate, requestedTransportUDP),
		stun.CodeUnauthorized)
	if got := scrape(t, s.metricsAddr)[`ferry_auth_failures_total{reason="revoked"}`]; got < 1 {
		t.Fatalf("revoked credentials counted %v times", got)
	}
	// The ended session's place in the token's quota came back.
	_, user4, pass4 := sfuTURN(t, s, "scope", token)
	dialRaw(t, "udp", server, user4, pass4).allocate()
}
