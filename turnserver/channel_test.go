package turnserver

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// TestChannelBind: ChannelBind is 437 without an allocation, 441 from another user, 400
// without a channel number, for one outside 0x4000-0x7FFF, without exactly one peer, for a
// number or a peer bound otherwise and on an RFC 6062 TCP allocation, 403 for a denied peer,
// 443 for a peer of another family (RFC 8656 section 11.2), 508 past Limits.Channels; a
// rebind of the same pair refreshes it and its peer's permission.
func TestChannelBind(t *testing.T) {
	s := newTestServer(t, 27080, 27089, withLimits(Limits{Channels: 2}))
	c := newClient(t, s, "udp")
	c.want(t, stun.CodeAllocMismatch, stun.MethodChannelBind, channelNumber(0x4000), peer("127.0.0.2:5000"))
	c.allocate(t)
	c.want(t, 0, stun.MethodChannelBind, channelNumber(0x4000), peer("127.0.0.2:5000"))
	tcp := newClient(t, s, "tcp")
	tcp.want(t, 0, stun.MethodAllocate, tcpTransport)
	for _, tc := range []struct {
		name  string
		c     *ctlClient
		attrs []stun.Setter
		code  stun.ErrorCode
	}{
		{"another user's allocation", c.as(restUser("bob")), []stun.Setter{channelNumber(0x4001), peer("127.0.0.3:5000")}, stun.CodeWrongCredentials},
		{"no CHANNEL-NUMBER", c, []stun.Setter{peer("127.0.0.3:5000")}, stun.CodeBadRequest},
		{"channel 0x3FFF", c, []stun.Setter{channelNumber(0x3fff), peer("127.0.0.3:5000")}, stun.CodeBadRequest},
		{"channel 0x8000", c, []stun.Setter{channelNumber(0x8000), peer("127.0.0.3:5000")}, stun.CodeBadRequest},
		{"short CHANNEL-NUMBER", c, []stun.Setter{testkit.Attr(stun.AttrChannelNumber, []byte{0x40, 1}), peer("127.0.0.3:5000")}, stun.CodeBadRequest},
		{"no peer", c, []stun.Setter{channelNumber(0x4001)}, stun.CodeBadRequest},
		{"two peers", c, []stun.Setter{channelNumber(0x4001), peer("127.0.0.3:5000"), peer("127.0.0.4:5000")}, stun.CodeBadRequest},
		{"malformed peer", c, []stun.Setter{channelNumber(0x4001), badPeer}, stun.CodeBadRequest},
		{"number bound to another peer", c, []stun.Setter{channelNumber(0x4000), peer("127.0.0.3:5000")}, stun.CodeBadRequest},
		{"number bound to another port of the peer", c, []stun.Setter{channelNumber(0x4000), peer("127.0.0.2:5001")}, stun.CodeBadRequest},
		{"peer bound to another number", c, []stun.Setter{channelNumber(0x4001), peer("127.0.0.2:5000")}, stun.CodeBadRequest},
		{"TCP allocation", tcp, []stun.Setter{channelNumber(0x4001), peer("127.0.0.3:5000")}, stun.CodeBadRequest},
		{"denied peer", c, []stun.Setter{channelNumber(0x4001), peer("10.0.0.1:5000")}, stun.CodeForbidden},
		{"IPv6 peer on an IPv4 allocation", c, []stun.Setter{channelNumber(0x4001), peer("[::1]:5000")}, stun.CodePeerAddrFamilyMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.c.want(t, tc.code, stun.MethodChannelBind, tc.attrs...) })
	}
	if got := sessionOf(t, s, c).Channels; !slices.Equal(got, []Channel{{0x4000, "127.0.0.2:5000"}}) {
		t.Fatalf("channels %v after refused binds", got)
	}

	channelBefore, permBefore := channelExpiry(c.alloc(s), 0x4000), permissionExpiry(c.alloc(s), "127.0.0.2")
	c.want(t, 0, stun.MethodChannelBind, channelNumber(0x4000), peer("127.0.0.2:5000"))
	if !channelExpiry(c.alloc(s), 0x4000).After(channelBefore) || !permissionExpiry(c.alloc(s), "127.0.0.2").After(permBefore) {
		t.Fatal("a rebind of the same pair refreshed neither the channel nor its permission")
	}
	c.want(t, 0, stun.MethodChannelBind, channelNumber(0x4001), peer("127.0.0.3:5000"))
	c.want(t, stun.CodeInsufficientCapacity, stun.MethodChannelBind, channelNumber(0x4002), peer("127.0.0.4:5000"))
	if perms := sessionOf(t, s, c).Permissions; !slices.Equal(perms, []string{"127.0.0.2", "127.0.0.3"}) {
		t.Fatalf("ChannelBind installed permissions %v, want those of its two peers", perms)
	}
}

// TestChannelCooldown: for 5 minutes after a channel binding expires, neither its number nor
// its peer can be bound otherwise (RFC 8656 section 12); after that both can.
func TestChannelCooldown(t *testing.T) {
	s := newTestServer(t, 27090, 27094)
	c := newClient(t, s, "udp")
	c.allocate(t)
	c.want(t, 0, stun.MethodChannelBind, channelNumber(0x4000), peer("127.0.0.2:5000"))
	a := c.alloc(s)

	setChannelExpiry(a, 0x4000, time.Now().Add(-time.Second))
	c.want(t, stun.CodeBadRequest, stun.MethodChannelBind, channelNumber(0x4000), peer("127.0.0.3:5000"))
	c.want(t, stun.CodeBadRequest, stun.MethodChannelBind, channelNumber(0x4001), peer("127.0.0.2:5000"))
	if got := sessionOf(t, s, c).Channels; len(got) != 0 {
		t.Fatalf("an expired channel is listed: %v", got)
	}

	setChannelExpiry(a, 0x4000, time.Now().Add(-channelCooldown-time.Second))
	c.want(t, 0, stun.MethodChannelBind, channelNumber(0x4000), peer("127.0.0.3:5000"))
	c.want(t, 0, stun.MethodChannelBind, channelNumber(0x4001), peer("127.0.0.2:5000"))
}

// channelExpiry and setChannelExpiry read and set when a's channel number expires
// (white-box, under its mutex).
func channelExpiry(a *allocation, number uint16) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.channels[number].expires
}

func setChannelExpiry(a *allocation, number uint16, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.channels[number].expires = at
}
