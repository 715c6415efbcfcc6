package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the rights an SFU access token grants.
type Claims struct {
	Room      string // the room the token is for; never ""
	Publish   bool   // may publish (WHIP)
	Subscribe bool   // may subscribe (WHEP, rooms API, room events)
	Expiry    time.Time
}

// ErrBadToken is returned, wrapped with the reason, by ParseToken for every token it refuses.
var ErrBadToken = errors.New("invalid access token")

// tokenAlg is the only signing algorithm tokens are made and accepted with. Pinning it keeps
// "none" and the asymmetric algorithms out: a key confusion attack cannot apply to a token
// that must be an HMAC under the shared secret.
const tokenAlg = "HS256"

// tokenClaims is the JSON payload of an access token: "room", "publish", "subscribe" and
// the registered claims, of which NewToken sets only "exp".
type tokenClaims struct {
	Room      string `json:"room"`
	Publish   bool   `json:"publish"`
	Subscribe bool   `json:"subscribe"`
	jwt.RegisteredClaims
}

// NewToken signs c as a JWT (HS256) under secret. The expiry is kept to the second, as JWT
// numeric dates are. An empty secret (an HMAC anyone could compute), an empty room or a
// zero expiry is an error.
func NewToken(secret string, c Claims) (string, error) {
	switch {
	case secret == "":
		return "", errors.New("auth: access token: empty secret")
	case c.Room == "":
		return "", errors.New("auth: access token: empty room")
	case c.Expiry.IsZero():
		return "", errors.New("auth: access token: no expiry")
	}
	claims := tokenClaims{
		Room:             c.Room,
		Publish:          c.Publish,
		Subscribe:        c.Subscribe,
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(c.Expiry)},
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("auth: access token: %w", err)
	}
	return token, nil
}

// ParseToken verifies token under secret at time now and returns its claims.
//
// The token must be signed with HS256 (any other algorithm, "none" included, is refused), carry
// an "exp" later than now (a token is expired from its exp second on) and a non-empty string
// "room"; "nbf" and "iat", if present, are checked as well. Every failure, an empty secret
// included, wraps ErrBadToken with the reason.
func ParseToken(secret, token string, now time.Time) (Claims, error) {
	if secret == "" {
		return Claims{}, fmt.Errorf("%w: no secret to verify it with", ErrBadToken)
	}
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(token, &claims,
		func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{tokenAlg}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if claims.Room == "" {
		return Claims{}, fmt.Errorf("%w: no room", ErrBadToken)
	}
	return Claims{
		Room:      claims.Room,
		Publish:   claims.Publish,
		Subscribe: claims.Subscribe,
		Expiry:    claims.ExpiresAt.Time, // set: WithExpirationRequired
	}, nil
}
