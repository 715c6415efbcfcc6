package turnserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/stun/v4"
)

// nonceLifetime is how long a nonce stays valid: an hour, as RFC 8656 section 4 suggests.
const nonceLifetime = time.Hour

// nonceCookie starts every nonce (RFC 8489 section 9.2): "obMatJos2" and the security
// feature set, base64 of 24 bits with bit 0, password algorithms, set ("gAAA"). It tells
// RFC 8489 clients that PASSWORD-ALGORITHMS in a 401 is authentic.
const nonceCookie = "obMatJos2gAAA"

// nonces makes and checks nonces without keeping any: a nonce is the cookie, the time it
// was made, and an HMAC of that time and the client's IP under a key of this process. A
// nonce of another client, of a previous run or older than nonceLifetime is stale (438),
// and the client retries with the fresh one that comes with the 438.
type nonces struct {
	key [32]byte
}

func newNonces() *nonces {
	n := &nonces{}
	_, _ = rand.Read(n.key[:])
	return n
}

// nonceMACSize is how much of the HMAC a nonce carries.
const nonceMACSize = 12

// issue returns a fresh nonce for a client at ip.
func (n *nonces) issue(ip netip.Addr, now time.Time) stun.Nonce {
	var raw [8 + nonceMACSize]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.Unix()))
	copy(raw[8:], n.mac(raw[:8], ip))
	return stun.NewNonce(nonceCookie + base64.RawURLEncoding.EncodeToString(raw[:]))
}

// valid reports whether nonce is one issue made for ip less than nonceLifetime ago.
func (n *nonces) valid(nonce stun.Nonce, ip netip.Addr, now time.Time) bool {
	rest, ok := strings.CutPrefix(string(nonce), nonceCookie)
	if !ok {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) != 8+nonceMACSize || !hmac.Equal(raw[8:], n.mac(raw[:8], ip)) {
		return false
	}
	made := time.Unix(int64(binary.BigEndian.Uint64(raw[:8])), 0)
	return !now.Before(made) && now.Sub(made) < nonceLifetime
}

func (n *nonces) mac(stamp []byte, ip netip.Addr) []byte {
	h := hmac.New(sha256.New, n.key[:])
	h.Write(stamp)
	b := ip.Unmap().As16()
	h.Write(b[:])
	return h.Sum(nil)[:nonceMACSize]
}
