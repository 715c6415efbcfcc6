package turnserver

import (
	"testing"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
)

// TestMessageIntegritySHA256: a request signed only with MESSAGE-INTEGRITY-SHA256 (under the
// MD5 long-term key) works, and its answer is signed alike and only so (RFC 8489 section
// 9.2.4); a wrong one is 401.
func TestMessageIntegritySHA256(t *testing.T) {
	s := newTestServer(t, 27150, 27154)
	c := newClient(t, s, "udp")
	key := turnwire.MessageIntegritySHA256(c.key())
	resp := c.roundTrip(t, append(append([]stun.Setter{stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport},
		c.credentials(t)...), key)...)
	wantCode(t, resp, 0)
	if err := key.Check(resp); err != nil || resp.Contains(stun.AttrMessageIntegrity) {
		t.Fatalf("answer to a MESSAGE-INTEGRITY-SHA256 request: %v (MESSAGE-INTEGRITY too: %v)", err, resp.Contains(stun.AttrMessageIntegrity))
	}
	wrong := turnwire.MessageIntegritySHA256(stun.NewLongTermIntegrity(alice, testRealm, "wrong"))
	resp = c.roundTrip(t, append(append([]stun.Setter{stun.NewType(stun.MethodRefresh, stun.ClassRequest)}, c.credentials(t)...), wrong)...)
	wantCode(t, resp, stun.CodeUnauthorized)
}

// TestPasswordAlgorithms: PASSWORD-ALGORITHMS and PASSWORD-ALGORITHM come both or neither,
// the list as offered (MD5 only) and the choice from it, or the request is 400 (RFC 8489
// section 9.2.4, which checks this before the credentials: a client that chose SHA-256
// signs with the SHA-256 key).
func TestPasswordAlgorithms(t *testing.T) {
	s := newTestServer(t, 27155, 27159)
	c := newClient(t, s, "udp")
	md5Key := c.key()
	sha256Key := stun.MessageIntegrity(turnwire.KeySHA256(alice, testRealm, alicePass))
	offered := turnwire.PasswordAlgorithmsAttr{turnwire.AlgorithmMD5}
	md5, sha256 := turnwire.PasswordAlgorithmAttr(turnwire.AlgorithmMD5), turnwire.PasswordAlgorithmAttr(turnwire.AlgorithmSHA256)
	for _, tc := range []struct {
		name  string
		attrs []stun.Setter
		key   stun.MessageIntegrity
		code  stun.ErrorCode
	}{
		{"as offered, MD5 chosen", []stun.Setter{offered, md5}, md5Key, stun.CodeAllocMismatch},
		{"another list", []stun.Setter{turnwire.PasswordAlgorithmsAttr{turnwire.AlgorithmSHA256, turnwire.AlgorithmMD5}, md5}, md5Key, stun.CodeBadRequest},
		{"SHA-256 chosen, MD5 key", []stun.Setter{offered, sha256}, md5Key, stun.CodeBadRequest},
		{"SHA-256 chosen, SHA-256 key", []stun.Setter{offered, sha256}, sha256Key, stun.CodeBadRequest},
		{"list without a choice", []stun.Setter{offered}, md5Key, stun.CodeBadRequest},
		{"choice without a list", []stun.Setter{md5}, md5Key, stun.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setters := append([]stun.Setter{stun.NewType(stun.MethodRefresh, stun.ClassRequest)}, tc.attrs...)
			resp := c.roundTrip(t, append(append(setters, c.credentials(t)...), tc.key)...)
			wantCode(t, resp, tc.code)
		})
	}
}
