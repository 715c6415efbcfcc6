package iplimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestIPLimiter(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	now := time.Unix(1_700_000_000, 0)
	l := New(3)
	for i := range 3 {
		if !l.Allow(a, now) {
			t.Fatalf("answer %d of the burst refused", i+1)
		}
	}
	if l.Allow(a, now) {
		t.Fatal("4th answer in the same instant allowed over a rate of 3")
	}
	if !l.Allow(b, now) {
		t.Fatal("another source refused: the cap must be per IP")
	}
	if !l.Allow(a, now.Add(time.Second/3+time.Millisecond)) {
		t.Fatal("no answer allowed after a token refilled")
	}

	// Sources back to a full bucket are forgotten at the next sweep.
	later := now.Add(2 * sweepEvery)
	l.Allow(b, later)
	if n := len(l.ips); n != 1 {
		t.Fatalf("%d sources tracked after a sweep, want 1 (the one just seen)", n)
	}

	l.Set(0)
	for range 100 {
		if !l.Allow(a, later) {
			t.Fatal("refused with no cap")
		}
	}
}

// TestIPLimiterFull: a flood from more sources than the table holds neither grows it nor
// locks new sources out; idle entries go at the next sweep, at most a second later.
func TestIPLimiterFull(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := New(1)
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range maxLimitedIPs + 100 {
		ip := base
		ip[1], ip[2], ip[3] = byte(i>>16), byte(i>>8), byte(i)
		l.Allow(netip.AddrFrom4(ip), now)
	}
	if n := len(l.ips); n != maxLimitedIPs {
		t.Fatalf("%d sources tracked, want the cap %d", n, maxLimitedIPs)
	}
	newcomer := netip.MustParseAddr("192.0.2.9")
	if !l.Allow(newcomer, now) {
		t.Fatal("a new source was refused while the table is full")
	}
	later := now.Add(sweepFullEvery + 10*time.Millisecond)
	l.Allow(newcomer, later)
	if n := len(l.ips); n != 1 {
		t.Fatalf("%d sources tracked after the sweep of a full table, want 1 (the newcomer)", n)
	}
}

func TestIPLimiterIPv6Slash64(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := New(2)
	for i, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"} {
		if got := l.Allow(netip.MustParseAddr(ip), now); got != (i < 2) {
			t.Fatalf("answer %d from %s in one /64: %v", i+1, ip, got)
		}
	}
	if !l.Allow(netip.MustParseAddr("2001:db8:1:3::1"), now) {
		t.Fatal("another /64 shares the limit")
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7":             "198.51.100.7",
		"::ffff:198.51.100.7":      "198.51.100.7",
		"2001:db8:1:2:aa:bb:cc:dd": "2001:db8:1:2::",
		"2001:db8:1:2::1":          "2001:db8:1:2::",
		"::1":                      "::",
	} {
		if got := Key(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
}
