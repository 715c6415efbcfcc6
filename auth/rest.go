package auth

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // The TURN REST API defines the password as HMAC-SHA1.
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// RESTPassword is base64(HMAC-SHA1(secret, username)), the TURN REST API password
// (draft-uberti-behave-turn-rest-00, as coturn's use-auth-secret).
func RESTPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username)) // hash.Hash.Write never returns an error.
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// RESTCredential mints a time-limited credential: username "EXPIRY:user" (EXPIRY = unix seconds of
// now+ttl; just "EXPIRY" when user is empty) and its password under secret.
//
// now is a parameter rather than time.Now so that callers (and tests) control the clock.
func RESTCredential(secret, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10)
	if user != "" {
		username += ":" + user
	}
	return username, RESTPassword(secret, username)
}

// maxExpiryDigits bounds EXPIRY so that it always fits an int64 (19 digits may still overflow,
// which strconv reports) and a long run of digits is not parsed for nothing.
const maxExpiryDigits = 19

// parseRESTUsername splits a TURN REST username "EXPIRY" or "EXPIRY:USER". ok is false when the
// username does not have that shape (EXPIRY must be plain decimal digits: no sign, no spaces), so
// that the caller can answer "unknown user" rather than guess.
//
// userID is USER, or the whole username when there is no USER (no ':' or nothing after it): an
// empty user ID would make every such credential share one quota bucket with nothing to tell
// them apart in logs.
func parseRESTUsername(username string) (expiry int64, userID string, ok bool) {
	ts, user, _ := strings.Cut(username, ":")
	if ts == "" || len(ts) > maxExpiryDigits {
		return 0, "", false
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return 0, "", false
		}
	}
	expiry, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "", false
	}
	if user == "" {
		user = username
	}
	return expiry, user, true
}
