package sfu

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferry-rtc/ferry/auth"
)

// TestTokenKey: a token spelled another way, which the JWT parser accepts as the same
// token (the unused low bits of its last character set), has the same key; another token
// has another.
func TestTokenKey(t *testing.T) {
	const secret = "token-key-secret-0123456789"
	exp := time.Now().Add(time.Hour)
	token, err := auth.NewToken(secret, auth.Claims{Room: "r", Subscribe: true, Expiry: exp})
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, token[len(token)-1])
	variant := token[:len(token)-1] + string(alphabet[last^1]) // a 32-byte signature leaves 4 bits unused
	if _, err := auth.ParseToken(secret, variant, time.Now()); err != nil {
		t.Fatalf("the parser refuses the variant (%v): the premise of tokenKey is gone", err)
	}
	if tokenKey(variant) != tokenKey(token) {
		t.Error("two spellings of one token have different keys")
	}
	other, err := auth.NewToken(secret, auth.Claims{Room: "r", Publish: true, Expiry: exp})
	if err != nil {
		t.Fatal(err)
	}
	if tokenKey(other) == tokenKey(token) || tokenKey("not.a.token") == tokenKey(token) {
		t.Error("different tokens have the same key")
	}
}

func TestSourceKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:5000":                 "192.0.2.7",
		"[::ffff:192.0.2.7]:5000":        "192.0.2.7",
		"[2001:db8:1:2:aaaa::1]:443":     "2001:db8:1:2::",
		"[2001:db8:1:2:bbbb:cccc::9]:80": "2001:db8:1:2::",
		"garbage":                        "invalid IP",
	} {
		if got := sourceKey(addr).String(); got != want {
			t.Errorf("sourceKey(%q) = %s, want %s", addr, got, want)
		}
	}
}

// TestSlots: a token and an address each hold at most their limit, 0 is no limit, and a
// released slot can be taken again.
func TestSlots(t *testing.T) {
	sl := newSlots("sessions")
	a := owner{token: tokenKey("a"), ip: netip.MustParseAddr("192.0.2.1")}
	b := owner{token: tokenKey("b"), ip: a.ip}
	c := owner{token: tokenKey("b"), ip: netip.MustParseAddr("192.0.2.2")}
	steps := []struct {
		o    owner
		want string
	}{
		{a, ""}, {a, ""}, {a, "sessions_per_token"}, // two per token
		{b, ""}, {b, "sessions_per_ip"}, // three per address
		{c, ""}, {c, "sessions_per_token"}, // b's token holds two, from two addresses
	}
	for i, st := range steps {
		if got := sl.take(st.o, 2, 3); got != st.want {
			t.Fatalf("step %d: take = %q, want %q", i, got, st.want)
		}
	}
	sl.release(a)
	if got := sl.take(b, 2, 3); got != "sessions_per_token" {
		t.Fatalf("after a release of a: take for b = %q, want sessions_per_token", got)
	}
	if got := sl.take(a, 2, 3); got != "" {
		t.Fatalf("after a release of a: take for a = %q, want a slot", got)
	}
	for range 100 {
		if got := sl.take(c, 0, 0); got != "" {
			t.Fatalf("no limits: take = %q", got)
		}
	}
	for range 100 + 2 {
		sl.release(c)
	}
	sl.release(a)
	sl.release(a)
	sl.release(b)
	if len(sl.tokens) != 0 || len(sl.ips) != 0 {
		t.Errorf("every slot released, still held: %v %v", sl.tokens, sl.ips)
	}
}
