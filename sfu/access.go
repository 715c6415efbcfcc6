package sfu

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/ferry-rtc/ferry/internal/iplimit"
)

// bearerToken is the request's access token: Authorization: Bearer, or ?token= where a
// browser cannot set the header (EventSource).
func bearerToken(r *http.Request) string {
	if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return token
	}
	return r.URL.Query().Get("token")
}

// unauthorized answers 401 with the challenge of RFC 6750; errCode is its error parameter
// ("" when no token was sent).
func unauthorized(w http.ResponseWriter, errCode, msg string) {
	challenge := `Bearer realm="ferry"`
	if errCode != "" {
		challenge += `, error="` + errCode + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	http.Error(w, msg, http.StatusUnauthorized)
}

// tokenKey identifies an access token: the SHA-256 of its segments in canonical base64url.
// The JWT parser forgives the unused low bits of a segment's last character, so one token
// has several spellings; each would otherwise count as a token of its own against the
// limits, and only the exact spelling would end its sessions.
func tokenKey(token string) [sha256.Size]byte {
	segments := strings.Split(token, ".")
	for i, seg := range segments {
		if b, err := base64.RawURLEncoding.DecodeString(seg); err == nil {
			segments[i] = base64.RawURLEncoding.EncodeToString(b)
		}
	}
	return sha256.Sum256([]byte(strings.Join(segments, ".")))
}

// owner is who opened a session or an event feed: the access token, by its key, and the
// source address.
type owner struct {
	token  [sha256.Size]byte
	ip     netip.Addr // sourceKey of the TCP peer
	expiry time.Time  // the token's: TURN credentials minted for the session end with it
}

func ownerOf(r *http.Request, token string, expiry time.Time) owner {
	return owner{token: tokenKey(token), ip: sourceKey(r.RemoteAddr), expiry: expiry}
}

// sourceKey is what a request's source counts as: the TCP peer's iplimit.Key. Ferry trusts
// no proxy header: behind a reverse proxy, every request comes from the proxy's address.
func sourceKey(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return iplimit.Key(ap.Addr())
}

// sessionOf returns the session whose secret resource URL the request names, if the
// request carries the token that created the session (RFC 9725: the session is
// authenticated like the endpoint). Its expiry is not checked again: the URL and the token
// together are the capability, and a publication may outlive its token. No token is 401;
// an unknown URL and another token are the same 404, so neither tells anything of the
// other.
func (s *SFU) sessionOf(w http.ResponseWriter, r *http.Request) (*session, bool) {
	token := bearerToken(r)
	if token == "" {
		unauthorized(w, "", "missing access token")
		return nil, false
	}
	key := tokenKey(token)
	sess, ok := s.lookup(r.PathValue("resource"))
	if !ok || subtle.ConstantTimeCompare(key[:], sess.owner.token[:]) != 1 {
		http.Error(w, errNoSession.Error(), http.StatusNotFound)
		return nil, false
	}
	return sess, true
}
