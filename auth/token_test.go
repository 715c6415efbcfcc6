package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const tokenSecret = "0123456789abcdef0123"

func TestTokenRoundTrip(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, c := range []Claims{
		{Room: "demo", Publish: true, Expiry: now.Add(time.Hour)},
		{Room: "demo", Subscribe: true, Expiry: now.Add(time.Second)},
		{Room: "a room/with ünïcode", Publish: true, Subscribe: true, Expiry: now.Add(30 * 24 * time.Hour)},
		{Room: "r", Expiry: now.Add(time.Minute)},
	} {
		token, err := NewToken(tokenSecret, c)
		if err != nil {
			t.Fatalf("NewToken(%+v): %v", c, err)
		}
		if strings.Count(token, ".") != 2 || strings.ContainsAny(token, " \n=") {
			t.Errorf("NewToken(%+v) = %q: not a compact JWS", c, token)
		}
		got, err := ParseToken(tokenSecret, token, now)
		if err != nil {
			t.Fatalf("ParseToken of %+v: %v", c, err)
		}
		if got.Room != c.Room || got.Publish != c.Publish || got.Subscribe != c.Subscribe || !got.Expiry.Equal(c.Expiry) {
			t.Errorf("round trip of %+v = %+v", c, got)
		}
	}
}

// TestTokenPayload pins the JSON claim names: other implementations (the demo page, a
// customer's backend) mint and read them.
func TestTokenPayload(t *testing.T) {
	exp := time.Unix(1_700_003_600, 0)
	token, err := NewToken(tokenSecret, Claims{Room: "demo", Publish: true, Expiry: exp})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if want := `{"alg":"HS256","typ":"JWT"}`; string(header) != want {
		t.Errorf("header = %s, want %s", header, want)
	}
	if want := `{"room":"demo","publish":true,"subscribe":false,"exp":1700003600}`; string(payload) != want {
		t.Errorf("payload = %s, want %s", payload, want)
	}
}

func TestNewTokenErrors(t *testing.T) {
	exp := time.Unix(1_700_003_600, 0)
	tests := []struct {
		name   string
		secret string
		c      Claims
		want   string
	}{
		{"empty secret", "", Claims{Room: "demo", Publish: true, Expiry: exp}, "empty secret"},
		{"empty room", tokenSecret, Claims{Publish: true, Expiry: exp}, "empty room"},
		{"no expiry", tokenSecret, Claims{Room: "demo", Publish: true}, "no expiry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, err := NewToken(tt.secret, tt.c)
			if err == nil || !strings.Contains(err.Error(), tt.want) || token != "" {
				t.Errorf("NewToken = %q, %v; want an error containing %q", token, err, tt.want)
			}
		})
	}
}

func TestParseTokenErrors(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	exp := jwt.NewNumericDate(now.Add(time.Hour))
	sign := func(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
		t.Helper()
		s, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hs256 := func(t *testing.T, claims jwt.Claims) string {
		t.Helper()
		return sign(t, jwt.SigningMethodHS256, []byte(tokenSecret), claims)
	}
	good := jwt.MapClaims{"room": "demo", "publish": true, "exp": exp}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		secret string // "" = tokenSecret
		token  func(t *testing.T) string
		want   string // in the error, after "invalid access token: "
	}{
		{
			"expired", "",
			func(t *testing.T) string {
				return hs256(t, jwt.MapClaims{"room": "demo", "publish": true, "exp": now.Add(-time.Second).Unix()})
			},
			"token is expired",
		},
		{
			"expiring this second", "",
			func(t *testing.T) string {
				return hs256(t, jwt.MapClaims{"room": "demo", "publish": true, "exp": now.Unix()})
			},
			"token is expired",
		},
		{
			"not valid yet", "",
			func(t *testing.T) string {
				return hs256(t, jwt.MapClaims{"room": "demo", "publish": true, "exp": exp, "nbf": now.Add(time.Minute).Unix()})
			},
			"token is not valid yet",
		},
		{
			"wrong secret", "another secret of 20b",
			func(t *testing.T) string { return hs256(t, good) },
			"signature is invalid",
		},
		{
			"alg none", "",
			func(t *testing.T) string {
				return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good)
			},
			"signing method none is invalid",
		},
		{
			"RS256", "",
			func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, rsaKey, good) },
			"signing method RS256 is invalid",
		},
		{
			"HS512 under the same secret", "",
			func(t *testing.T) string { return sign(t, jwt.SigningMethodHS512, []byte(tokenSecret), good) },
			"signing method HS512 is invalid",
		},
		{
			"missing room", "",
			func(t *testing.T) string { return hs256(t, jwt.MapClaims{"publish": true, "exp": exp}) },
			"no room",
		},
		{
			"empty room", "",
			func(t *testing.T) string { return hs256(t, jwt.MapClaims{"room": "", "publish": true, "exp": exp}) },
			"no room",
		},
		{
			"room is a number", "",
			func(t *testing.T) string { return hs256(t, jwt.MapClaims{"room": 42, "publish": true, "exp": exp}) },
			"token is malformed",
		},
		{
			"publish is a string", "",
			func(t *testing.T) string {
				return hs256(t, jwt.MapClaims{"room": "demo", "publish": "true", "exp": exp})
			},
			"token is malformed",
		},
		{
			"missing exp", "",
			func(t *testing.T) string { return hs256(t, jwt.MapClaims{"room": "demo", "publish": true}) },
			"exp claim is required",
		},
		{
			"exp is a string", "",
			func(t *testing.T) string {
				return hs256(t, jwt.MapClaims{"room": "demo", "publish": true, "exp": "tomorrow"})
			},
			"token is malformed",
		},
		{
			"payload swapped under the signature", "",
			func(t *testing.T) string {
				a := strings.Split(hs256(t, good), ".")
				b := strings.Split(hs256(t, jwt.MapClaims{"room": "other", "publish": true, "exp": exp}), ".")
				return a[0] + "." + b[1] + "." + a[2]
			},
			"signature is invalid",
		},
		{"garbage", "", func(*testing.T) string { return "not a token" }, "token is malformed"},
		{"three garbage parts", "", func(*testing.T) string { return "a.b.c" }, "token is malformed"},
		{"empty", "", func(*testing.T) string { return "" }, "token is malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := tt.secret
			if secret == "" {
				secret = tokenSecret
			}
			c, err := ParseToken(secret, tt.token(t), now)
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("ParseToken = %+v, %v; want an ErrBadToken", c, err)
			}
			if c != (Claims{}) {
				t.Errorf("claims %+v returned with the error", c)
			}
			if want := "invalid access token: "; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q followed by something containing %q", err, want, tt.want)
			}
		})
	}
}

// TestParseTokenEmptySecret: with no secret there is nothing to verify against, even a token
// whose HMAC was computed under the empty key.
func TestParseTokenEmptySecret(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	claims := jwt.MapClaims{"room": "demo", "publish": true, "exp": now.Add(time.Hour).Unix()}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseToken("", token, now); !errors.Is(err, ErrBadToken) {
		t.Errorf("ParseToken with an empty secret = %v, want an ErrBadToken", err)
	}
}
