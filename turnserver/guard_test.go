package turnserver

import (
	"net/netip"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
	"github.com/ferry-rtc/ferry/relay"
)

func benchGuard(b *testing.B) *guard {
	policy, err := relay.NewPolicy([]string{relay.Recommended}, nil, nil, func(uint16, relay.Proto) bool { return false })
	if err != nil {
		b.Fatal(err)
	}
	return &guard{policy: policy, sessions: newSessions(), meters: newMeters(metrics.NewSet(), nil)}
}

// Every response pion sends passes guard.sent, which counts error responses.
func BenchmarkGuardSent(b *testing.B) {
	g := benchGuard(b)
	refused, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		stun.NewRealm("ferry.test"), stun.CodeUnauthorized)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		g.sent(refused.Raw)
	}
}

func TestPeerAddr(t *testing.T) {
	for _, want := range []string{"198.51.100.7:5000", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:9", "0.0.0.0:0"} {
		ap := netip.MustParseAddrPort(want)
		m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication), testkit.PeerAddr(ap))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := peerAddr(m)
		// pion encodes an IPv4-mapped address as IPv4.
		if !ok || got != netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) {
			t.Errorf("peerAddr of %s = %v, %v", want, got, ok)
		}
	}
	for _, v := range [][]byte{nil, {0, 1, 0}, {0, 1, 0, 0, 1, 2, 3}, {0, 3, 0, 0, 1, 2, 3, 4}, make([]byte, 19)} {
		m := stun.New()
		m.Add(stun.AttrXORPeerAddress, v)
		if got, ok := peerAddr(m); ok {
			t.Errorf("peerAddr accepted the value %x as %v", v, got)
		}
	}
}
