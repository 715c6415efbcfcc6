package turnserver

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestCreatePermission: CreatePermission is 437 without an allocation, 441 from another
// user, 400 without a peer or with a malformed one, 403 if any peer is denied (and then
// installs none), 443 for a peer of a family the allocation does not relay (RFC 8656
// section 9.2), 508 past Limits.Permissions; refreshing a permission always works.
func TestCreatePermission(t *testing.T) {
	s := newTestServer(t, 27070, 27079, withLimits(Limits{Permissions: 2}))
	c := newClient(t, s, "udp")
	c.want(t, stun.CodeAllocMismatch, stun.MethodCreatePermission, peer("127.0.0.2:9"))
	c.allocate(t)
	bob := c.as(restUser("bob"))
	for _, tc := range []struct {
		name  string
		c     *ctlClient
		attrs []stun.Setter
		code  stun.ErrorCode
	}{
		{"another user's allocation", bob, []stun.Setter{peer("127.0.0.2:9")}, stun.CodeWrongCredentials},
		{"no peer", c, nil, stun.CodeBadRequest},
		{"malformed peer", c, []stun.Setter{badPeer}, stun.CodeBadRequest},
		{"allowed and malformed peer", c, []stun.Setter{peer("127.0.0.2:9"), badPeer}, stun.CodeBadRequest},
		{"denied peer", c, []stun.Setter{peer("10.0.0.1:9")}, stun.CodeForbidden},
		{"allowed and denied peer", c, []stun.Setter{peer("127.0.0.2:9"), peer("10.0.0.1:9")}, stun.CodeForbidden},
		{"IPv6 peer on an IPv4 allocation", c, []stun.Setter{peer("[::1]:9")}, stun.CodePeerAddrFamilyMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.c.want(t, tc.code, stun.MethodCreatePermission, tc.attrs...) })
	}
	if perms := sessionOf(t, s, c).Permissions; len(perms) != 0 {
		t.Fatalf("refused requests installed permissions %v", perms)
	}

	c.want(t, 0, stun.MethodCreatePermission, peer("127.0.0.2:9"), peer("127.0.0.3:9"))
	c.want(t, stun.CodeInsufficientCapacity, stun.MethodCreatePermission, peer("127.0.0.4:9"))
	before := permissionExpiry(c.alloc(s), "127.0.0.2")
	c.want(t, 0, stun.MethodCreatePermission, peer("127.0.0.2:10")) // another port of the same IP
	if after := permissionExpiry(c.alloc(s), "127.0.0.2"); !after.After(before) {
		t.Fatalf("the refresh left the permission to expire at %v (was %v)", after, before)
	}
	if perms := sessionOf(t, s, c).Permissions; !slices.Equal(perms, []string{"127.0.0.2", "127.0.0.3"}) {
		t.Fatalf("permissions %v", perms)
	}
}

// permissionExpiry is when a's permission for ip expires (white-box).
func permissionExpiry(a *allocation, ip string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.perms[netip.MustParseAddr(ip)]
}
