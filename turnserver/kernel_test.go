package turnserver

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/relay"
	"github.com/ferry-rtc/ferry/turnserver/offload"
)

// fakeKernel records what the table tells the kernel fast path: per allocation (by its
// relay), the channels it relays now, and whether it ended.
type fakeKernel struct {
	mu     sync.Mutex
	allocs map[netip.AddrPort]*fakeKernelAlloc
}

type fakeKernelAlloc struct {
	k       *fakeKernel
	client  netip.AddrPort
	chans   []offload.Channel
	ended   bool
	relayed relay.Usage
}

func (k *fakeKernel) Track(client, listener, relay netip.AddrPort) KernelAlloc {
	k.mu.Lock()
	defer k.mu.Unlock()
	a := &fakeKernelAlloc{k: k, client: client}
	k.allocs[relay] = a
	return a
}

func (a *fakeKernelAlloc) Publish(chans []offload.Channel) {
	a.k.mu.Lock()
	defer a.k.mu.Unlock()
	if a.ended {
		panic("Publish after End")
	}
	a.chans = slices.Clone(chans)
	slices.SortFunc(a.chans, func(x, y offload.Channel) int { return int(x.Number) - int(y.Number) })
}

func (a *fakeKernelAlloc) End() relay.Usage {
	a.k.mu.Lock()
	defer a.k.mu.Unlock()
	a.ended, a.chans = true, nil
	return a.relayed
}

func (a *fakeKernelAlloc) Usage() relay.Usage {
	a.k.mu.Lock()
	defer a.k.mu.Unlock()
	return a.relayed
}

// state describes what the kernel relays for the allocation at relay: "ended", or its
// channels as "number>peer" in number order.
func (k *fakeKernel) state(relay netip.AddrPort) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	a := k.allocs[relay]
	switch {
	case a == nil:
		return "untracked"
	case a.ended:
		return "ended"
	}
	out := ""
	for _, c := range a.chans {
		out += fmt.Sprintf("%#x>%s ", c.Number, c.Peer)
	}
	return out
}

func withKernel(k *fakeKernel) func(*Config) { return func(c *Config) { c.Offload = k } }

// TestKernelFollowsTable: the kernel relays exactly the live channels of the table: a
// channel enters only once its ChannelBind passed every check (not a refused one, not a
// permission alone), with the lifetime of its channel and permission; it leaves on expiry
// (before the sweep), on a reload of a policy that denies its peer, on Refresh 0 and on
// Kill; stream clients are never tracked; what the kernel relayed counts in the session.
func TestKernelFollowsTable(t *testing.T) {
	k := &fakeKernel{allocs: map[netip.AddrPort]*fakeKernelAlloc{}}
	s := newTestServer(t, 27200, 27219, withKernel(k), withLimits(Limits{Channels: 2}))
	c := newClient(t, s, "udp")
	rl := c.allocate(t)
	if got := k.state(rl); got != "" {
		t.Fatalf("a new allocation: kernel has %q, want no channels", got)
	}
	c.want(t, 0, stun.MethodCreatePermission, peer("127.0.0.2:5000"))
	c.want(t, stun.CodeForbidden, stun.MethodChannelBind, channelNumber(0x4000), peer("10.0.0.1:5000"))
	c.want(t, 0, stun.MethodChannelBind, channelNumber(0x4001), peer("127.0.0.3:5000"))
	c.want(t, 0, stun.MethodChannelBind, channelNumber(0x4002), peer("127.0.0.4:5000"))
	c.want(t, stun.CodeInsufficientCapacity, stun.MethodChannelBind, channelNumber(0x4003), peer("127.0.0.5:5000"))
	if got, want := k.state(rl), "0x4001>127.0.0.3:5000 0x4002>127.0.0.4:5000 "; got != want {
		t.Fatalf("kernel has %q, want %q: only channels that passed every check", got, want)
	}
	a := c.alloc(s)
	k.mu.Lock()
	until := k.allocs[rl].chans[0].Until
	k.mu.Unlock()
	if want := permissionExpiry(a, "127.0.0.3"); !until.Equal(want) {
		t.Errorf("channel until %v, want its permission's expiry %v (the earlier of the two)", until, want)
	}

	// Expiry: the sweep takes the channel out.
	setChannelExpiry(a, 0x4002, time.Now().Add(-time.Second))
	waitFor(t, "the sweep to take the expired channel out of the kernel", func() bool {
		return k.state(rl) == "0x4001>127.0.0.3:5000 "
	})

	// A reload whose policy denies the peer takes its channel out, and its permission.
	if err := s.cfg.Policy.SetPeers([]string{relay.Recommended}, []string{"127.0.0.2/32", "127.0.0.4/32"}); err != nil {
		t.Fatal(err)
	}
	s.Apply(Settings{Auth: s.auth.Load(), Limits: *s.limits.Load()})
	if got := k.state(rl); got != "" {
		t.Fatalf("after a reload that denies the peer, kernel has %q", got)
	}
	if perms := sessionOf(t, s, c).Permissions; !slices.Equal(perms, []string{"127.0.0.2", "127.0.0.4"}) {
		t.Fatalf("permissions %v after the reload, want the allowed 127.0.0.2 and 127.0.0.4, not the denied 127.0.0.3", perms)
	}
	if err := s.cfg.Policy.SetPeers([]string{relay.Recommended}, []string{"127.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}

	// What the kernel relayed counts in the session and the end.
	k.mu.Lock()
	k.allocs[rl].relayed = relay.Usage{ToPeerPackets: 3, ToPeerBytes: 300, FromPeerPackets: 2, FromPeerBytes: 20}
	k.mu.Unlock()
	if sess := sessionOf(t, s, c); sess.ToPeerPackets != 3 || sess.FromPeerBytes != 20 {
		t.Errorf("session counts %d packets to peers, %d bytes from them; want the kernel's 3 and 20", sess.ToPeerPackets, sess.FromPeerBytes)
	}

	// Refresh 0 ends it in the kernel.
	c.want(t, 0, stun.MethodRefresh, lifetime(0))
	if got := k.state(rl); got != "ended" {
		t.Fatalf("after Refresh 0: %q", got)
	}

	// Kill.
	c2 := newClient(t, s, "udp")
	rl2 := c2.allocate(t)
	c2.want(t, 0, stun.MethodChannelBind, channelNumber(0x4000), peer("127.0.0.3:5000"))
	if !s.Kill(strconv.FormatUint(c2.alloc(s).id, 10)) {
		t.Fatal("kill failed")
	}
	if got := k.state(rl2); got != "ended" {
		t.Fatalf("after Kill: %q", got)
	}

	// Stream clients stay in user space.
	tcp := newClient(t, s, "tcp")
	rl3 := tcp.allocate(t)
	if got := k.state(rl3); got != "untracked" {
		t.Fatalf("a TCP client's allocation: %q", got)
	}
}
