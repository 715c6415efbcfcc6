package turnserver

import (
	"net"
	"net/netip"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
	"github.com/ferry-rtc/ferry/relay"
)

type discard struct{}

func (discard) respond([]byte, net.Addr) {}

func benchGuard(b *testing.B) *guard {
	policy, err := relay.NewPolicy([]string{relay.Recommended}, nil, nil, func(uint16) bool { return false })
	if err != nil {
		b.Fatal(err)
	}
	return &guard{policy: policy, sessions: newSessions(), meters: newMeters(metrics.NewSet(), nil)}
}

// Everything Ferry sends to clients passes guard.sent, which counts error responses.
func BenchmarkGuardSent(b *testing.B) {
	g := benchGuard(b)
	data, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
		testkit.PeerAddr(netip.MustParseAddrPort("198.51.100.7:5000")), testkit.Attr(stun.AttrData, make([]byte, 100)))
	if err != nil {
		b.Fatal(err)
	}
	refused, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		stun.NewRealm("ferry.test"), stun.CodeUnauthorized)
	if err != nil {
		b.Fatal(err)
	}
	channelData := append([]byte{0x40, 0x00, 0x00, 0x64}, make([]byte, 100)...)
	for _, bc := range []struct {
		name string
		msg  []byte
	}{{"ChannelData", channelData}, {"DataIndication", data.Raw}, {"401", refused.Raw}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				g.sent(bc.msg)
			}
		})
	}
}

// The guard is on the per-packet path: ChannelData and Send indications must pass it
// without allocating.
func BenchmarkGuardChannelData(b *testing.B) {
	g := benchGuard(b)
	frame := append([]byte{0x40, 0x00, 0x00, 0x64}, make([]byte, 100)...)
	client := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5000}
	server := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 3478}
	var st connState
	b.ReportAllocs()
	for b.Loop() {
		if _, pass := g.inspect(frame, client, server, discard{}, &st); !pass {
			b.Fatal("ChannelData stopped")
		}
	}
}

func BenchmarkGuardSendIndication(b *testing.B) {
	g := benchGuard(b)
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		testkit.PeerAddr(netip.MustParseAddrPort("198.51.100.7:5000")), testkit.Attr(stun.AttrData, make([]byte, 100)))
	if err != nil {
		b.Fatal(err)
	}
	client := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5000}
	server := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 3478}
	var st connState
	b.ReportAllocs()
	for b.Loop() {
		if _, pass := g.inspect(m.Raw, client, server, discard{}, &st); !pass {
			b.Fatal("Send indication stopped")
		}
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
