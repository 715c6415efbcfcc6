package auth

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// independentRESTPassword recomputes the TURN REST password without RESTPassword.
func independentRESTPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestRESTPassword(t *testing.T) {
	tests := []struct {
		secret, username string
		want             string // printf USERNAME | openssl dgst -sha1 -hmac SECRET -binary | base64
	}{
		{"north", "1700000000:alice", "Cd/49soE35ICqcJF/bCTn8Z4OyE="},
		{"north", "1700000000", "CWyHi3zCeWqXBir9thl4m+iZPRY="},
		{"", "", independentRESTPassword("", "")},
		{"south", "1700000000:bob", independentRESTPassword("south", "1700000000:bob")},
	}
	for _, tt := range tests {
		t.Run(tt.secret+"/"+tt.username, func(t *testing.T) {
			if got := RESTPassword(tt.secret, tt.username); got != tt.want {
				t.Errorf("RESTPassword(%q, %q) = %q, want %q", tt.secret, tt.username, got, tt.want)
			}
		})
	}
}

func TestRESTCredential(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		user         string
		ttl          time.Duration
		wantUsername string
	}{
		{"alice", 24 * time.Hour, "1700086400:alice"},
		{"", time.Hour, "1700003600"},
		{"bob", 0, "1700000000:bob"},
	}
	for _, tt := range tests {
		t.Run(tt.wantUsername, func(t *testing.T) {
			username, password := RESTCredential("north", tt.user, tt.ttl, now)
			if username != tt.wantUsername {
				t.Errorf("username = %q, want %q", username, tt.wantUsername)
			}
			if want := independentRESTPassword("north", username); password != want {
				t.Errorf("password = %q, want %q", password, want)
			}
		})
	}
}

// TestRESTCredentialMatchesPion checks that what Ferry mints has the same shape and password as
// pion's own TURN REST helper, so pion-side clients and servers interoperate.
func TestRESTCredentialMatchesPion(t *testing.T) {
	const ttl = time.Hour
	before := time.Now()
	pionUser, pionPass, err := turn.GenerateLongTermTURNRESTCredentials("north", "alice", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if got := RESTPassword("north", pionUser); got != pionPass {
		t.Errorf("RESTPassword(pion username %q) = %q, pion password %q", pionUser, got, pionPass)
	}
	ts, user, ok := strings.Cut(pionUser, ":")
	if !ok || user != "alice" {
		t.Fatalf("pion username %q: not EXPIRY:alice", pionUser)
	}
	expiry, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	// Mint with the same expiry as pion: identical username and password.
	username, password := RESTCredential("north", "alice", time.Unix(expiry, 0).Sub(before.Truncate(time.Second)), before.Truncate(time.Second))
	if username != pionUser || password != pionPass {
		t.Errorf("RESTCredential = %q/%q, pion %q/%q", username, password, pionUser, pionPass)
	}
}

func TestParseRESTUsername(t *testing.T) {
	tests := []struct {
		username   string
		wantOK     bool
		wantExpiry int64
		wantUserID string
	}{
		{"1700000000:alice", true, 1700000000, "alice"},
		{"1700000000", true, 1700000000, "1700000000"},
		{"1700000000:", true, 1700000000, "1700000000:"},
		{"1700000000:a:b", true, 1700000000, "a:b"},
		{"0", true, 0, "0"},
		{"", false, 0, ""},
		{":alice", false, 0, ""},
		{"alice", false, 0, ""},
		{"-1:alice", false, 0, ""},
		{"+1:alice", false, 0, ""},
		{" 1:alice", false, 0, ""},
		{"17e9:alice", false, 0, ""},
		{"99999999999999999999:alice", false, 0, ""}, // 20 digits
		{"9999999999999999999:alice", false, 0, ""},  // 19 digits, overflows int64
	}
	for _, tt := range tests {
		t.Run(tt.username, func(t *testing.T) {
			expiry, userID, ok := parseRESTUsername(tt.username)
			if ok != tt.wantOK || expiry != tt.wantExpiry || userID != tt.wantUserID {
				t.Errorf("parseRESTUsername(%q) = %d, %q, %v; want %d, %q, %v",
					tt.username, expiry, userID, ok, tt.wantExpiry, tt.wantUserID, tt.wantOK)
			}
		})
	}
}
