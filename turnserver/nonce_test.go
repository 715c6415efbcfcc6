package turnserver

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/stun/v4"
)

// TestUnauthorized: a request without MESSAGE-INTEGRITY is 401 with REALM, a NONCE that
// starts with the RFC 8489 cookie and PASSWORD-ALGORITHMS offering MD5 (section 9.2), and
// no MESSAGE-INTEGRITY: there is no key to sign it with.
func TestUnauthorized(t *testing.T) {
	s := newTestServer(t, 27130, 27134)
	resp := newClient(t, s, "udp").roundTrip(t, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport)
	wantCode(t, resp, stun.CodeUnauthorized)
	wantChallenge(t, resp)
	if algs, err := resp.Get(stun.AttrPasswordAlgorithms); err != nil || !bytes.Equal(algs, []byte{0, 1, 0, 0}) {
		t.Fatalf("PASSWORD-ALGORITHMS % x (%v), want MD5 only", algs, err)
	}
	if resp.Contains(stun.AttrMessageIntegrity) {
		t.Fatal("the 401 is signed")
	}
}

// TestStaleNonce: a nonce Ferry issued to another IP, one of another server (another key),
// one an hour old or from the future, and garbage are stale: 438 with REALM and a fresh
// NONCE, which then works (RFC 8489 section 9.2.4). A nonce just under an hour old works.
func TestStaleNonce(t *testing.T) {
	s := newTestServer(t, 27135, 27139)
	c := newClient(t, s, "udp")
	now := time.Now()
	for _, tc := range []struct {
		name  string
		nonce stun.Nonce
	}{
		{"of another IP", s.nonces.issue(netip.MustParseAddr("127.0.0.2"), now)},
		{"of another server", newNonces().issue(loopback4, now)},
		{"an hour old", s.nonces.issue(loopback4, now.Add(-time.Hour))},
		{"from the future", s.nonces.issue(loopback4, now.Add(time.Minute))},
		{"garbage", stun.NewNonce("garbage")},
		{"cookie and garbage", stun.NewNonce(nonceCookie + "garbage")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.nonce = tc.nonce
			resp := c.request(t, stun.MethodRefresh)
			wantCode(t, resp, stun.CodeStaleNonce)
			if c.nonce = wantChallenge(t, resp); !s.nonces.valid(c.nonce, loopback4, time.Now()) {
				t.Fatalf("the 438 gave the nonce %q, which is not valid", c.nonce)
			}
			c.want(t, stun.CodeAllocMismatch, stun.MethodRefresh) // past authentication
		})
	}
	c.nonce = s.nonces.issue(loopback4, now.Add(-time.Hour+time.Minute))
	c.want(t, stun.CodeAllocMismatch, stun.MethodRefresh)
}

// TestIncompleteCredentials: MESSAGE-INTEGRITY without NONCE, USERNAME or REALM is 400 (RFC
// 8489 section 9.2.4).
func TestIncompleteCredentials(t *testing.T) {
	s := newTestServer(t, 27140, 27144)
	c := newClient(t, s, "udp")
	creds := c.credentials(t)
	for i, name := range []string{"USERNAME", "REALM", "NONCE"} {
		t.Run("without "+name, func(t *testing.T) {
			setters := []stun.Setter{stun.NewType(stun.MethodRefresh, stun.ClassRequest)}
			setters = append(append(setters, creds[:i]...), creds[i+1:]...)
			wantCode(t, c.roundTrip(t, append(setters, c.key())...), stun.CodeBadRequest)
		})
	}
}

// TestStaleNonceCounted: each stale nonce counts once as an auth failure, and each 438 once
// as an error response.
func TestStaleNonceCounted(t *testing.T) {
	set := metrics.NewSet()
	s := newTestServer(t, 27145, 27149, withMetrics(set))
	c := newClient(t, s, "udp")
	c.nonce = stun.NewNonce("stale")
	for range 3 {
		wantCode(t, c.request(t, stun.MethodRefresh), stun.CodeStaleNonce)
	}
	if got := metricValue(t, set, `ferry_error_responses_total{code="438"}`); got != 3 {
		t.Errorf("%d 438 responses counted, want 3", got)
	}
	if got := metricValue(t, set, `ferry_auth_failures_total{reason="stale_nonce"}`); got != 3 {
		t.Errorf("%d stale nonces counted, want 3", got)
	}
}

// wantChallenge checks that an unsigned error answer carries REALM and a NONCE with the RFC
// 8489 cookie, and returns the nonce.
func wantChallenge(t *testing.T, resp *stun.Message) stun.Nonce {
	t.Helper()
	var realm stun.Realm
	var nonce stun.Nonce
	if err := realm.GetFrom(resp); err != nil || realm.String() != testRealm {
		t.Fatalf("REALM %q (%v), want %q", realm, err, testRealm)
	}
	if err := nonce.GetFrom(resp); err != nil || !strings.HasPrefix(nonce.String(), "obMatJos2") {
		t.Fatalf("NONCE %q (%v), want one with the cookie obMatJos2", nonce, err)
	}
	return nonce
}
