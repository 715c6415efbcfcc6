package turnserver

import (
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
)

// TestRefresh: Refresh is 437 without an allocation (none yet, or deleted), 441 from
// another user, 443 for a family the allocation does not relay; it grants and returns the
// lifetime asked for within the maximum (the default without LIFETIME), and LIFETIME 0
// deletes the allocation and frees its port (RFC 8656 section 8).
func TestRefresh(t *testing.T) {
	s := newTestServer(t, 27055, 27064, withLimits(Limits{MaxLifetime: 30 * time.Minute}))
	c := newClient(t, s, "udp")
	c.want(t, stun.CodeAllocMismatch, stun.MethodRefresh)
	c.allocate(t)
	c.as(restUser("bob")).want(t, stun.CodeWrongCredentials, stun.MethodRefresh)
	c.want(t, stun.CodePeerAddrFamilyMismatch, stun.MethodRefresh, requestedFamily(turnwire.FamilyIPv6))
	for _, tc := range []struct {
		attrs []stun.Setter
		want  time.Duration
	}{
		{nil, defaultLifetime},
		{[]stun.Setter{lifetime(1200)}, 20 * time.Minute},
		{[]stun.Setter{lifetime(3600)}, 30 * time.Minute},
		{[]stun.Setter{lifetime(900), requestedFamily(turnwire.FamilyIPv4)}, 15 * time.Minute},
	} {
		resp := c.want(t, 0, stun.MethodRefresh, tc.attrs...)
		if got := lifetimeOf(t, resp); got != tc.want {
			t.Fatalf("Refresh granted LIFETIME %v, want %v", got, tc.want)
		}
		if left := time.Until(c.alloc(s).expiry()); left > tc.want || left < tc.want-5*time.Second {
			t.Fatalf("the allocation expires in %v, want %v", left, tc.want)
		}
	}
	inUse := s.cfg.Pool.InUse()
	if got := lifetimeOf(t, c.want(t, 0, stun.MethodRefresh, lifetime(0))); got != 0 {
		t.Fatalf("Refresh 0 answered LIFETIME %v", got)
	}
	if s.Allocations() != 0 || s.cfg.Pool.InUse() != inUse-1 {
		t.Fatalf("after Refresh 0: %d allocations, %d ports in use (was %d)", s.Allocations(), s.cfg.Pool.InUse(), inUse)
	}
	c.want(t, stun.CodeAllocMismatch, stun.MethodRefresh)
}

// TestRefreshAfterExpiry: an allocation whose lifetime ran out is ended by the sweep, and a
// Refresh then is 437.
func TestRefreshAfterExpiry(t *testing.T) {
	s := newTestServer(t, 27065, 27069)
	c := newClient(t, s, "udp")
	c.allocate(t, lifetime(1))
	waitFor(t, "the sweep to end the expired allocation", func() bool { return s.Allocations() == 0 })
	c.want(t, stun.CodeAllocMismatch, stun.MethodRefresh)
}
