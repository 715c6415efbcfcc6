package turnserver

import (
	"net/netip"
	"testing"
	"time"
)

func TestIPLimiter(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	now := time.Unix(1_700_000_000, 0)
	l := newIPLimiter(3)
	for i := range 3 {
		if !l.allow(a, now) {
			t.Fatalf("answer %d of the burst refused", i+1)
		}
	}
	if l.allow(a, now) {
		t.Fatal("4th answer in the same instant allowed over a rate of 3")
	}
	if !l.allow(b, now) {
		t.Fatal("another source refused: the cap must be per IP")
	}
	if !l.allow(a, now.Add(time.Second/3+time.Millisecond)) {
		t.Fatal("no answer allowed after a token refilled")
	}

	// Sources back to a full bucket are forgotten at the next sweep.
	later := now.Add(2 * sweepEvery)
	l.allow(b, later)
	if n := len(l.ips); n != 1 {
		t.Fatalf("%d sources tracked after a sweep, want 1 (the one just seen)", n)
	}

	l.set(0)
	for range 100 {
		if !l.allow(a, later) {
			t.Fatal("refused with no cap")
		}
	}
}

func TestIPLimiterBoundedMemory(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newIPLimiter(1)
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range maxLimitedIPs {
		ip := base
		ip[2], ip[3] = byte(i>>8), byte(i)
		l.allow(netip.AddrFrom4(ip), now)
	}
	if l.allow(netip.MustParseAddr("192.0.2.9"), now) {
		t.Fatal("a new source was tracked beyond maxLimitedIPs")
	}
	if !l.allow(netip.MustParseAddr("192.0.2.9"), now.Add(sweepEvery+time.Second)) {
		t.Fatal("a new source is still refused after the sweep freed idle entries")
	}
}
