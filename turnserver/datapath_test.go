package turnserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
	"github.com/ferry-rtc/ferry/relay"
)

const testChannel = 0x4000

// relayed is a client with a UDP allocation, a peer bound to a channel, and a second peer
// with only a permission.
type relayed struct {
	client   *ctlClient
	relay    netip.AddrPort
	channel  *net.UDPConn // the peer on testChannel
	permOnly *net.UDPConn // a peer with a permission and no channel
}

// newRelayed allocates over network ("udp" or "tcp") and binds the peers.
func newRelayed(tb testing.TB, s *Server, network string) *relayed {
	tb.Helper()
	server := s.Addrs()[0].String()
	if network == "tcp" {
		server = s.Addrs()[1].String()
	}
	r := &relayed{client: dialCtl(tb, network, server), channel: listenPeer(tb), permOnly: listenPeer(tb)}
	signed := r.client.signer(tb)
	resp := r.client.roundTrip(tb, signed(stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		testkit.Attr(stun.AttrRequestedTransport, []byte{17, 0, 0, 0}))...)
	var relayAddr stun.XORMappedAddress
	if resp.Type.Class != stun.ClassSuccessResponse || relayAddr.GetFromAs(resp, stun.AttrXORRelayedAddress) != nil {
		tb.Fatalf("Allocate: %v", resp)
	}
	r.relay = netip.AddrPortFrom(netip.MustParseAddr(relayAddr.IP.String()), uint16(relayAddr.Port))
	channel := make([]byte, 4)
	binary.BigEndian.PutUint16(channel, testChannel)
	resp = r.client.roundTrip(tb, signed(stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		testkit.Attr(stun.AttrChannelNumber, channel), testkit.PeerAddr(addrOf(r.channel)))...)
	if resp.Type.Class != stun.ClassSuccessResponse {
		tb.Fatalf("ChannelBind: %v", resp)
	}
	resp = r.client.roundTrip(tb, signed(stun.NewType(stun.MethodCreatePermission, stun.ClassRequest),
		testkit.PeerAddr(addrOf(r.permOnly)))...)
	if resp.Type.Class != stun.ClassSuccessResponse {
		tb.Fatalf("CreatePermission: %v", resp)
	}
	deadline := time.Now().Add(time.Minute)
	for _, c := range []net.Conn{r.client.conn, r.channel, r.permOnly} {
		_ = c.SetReadDeadline(deadline)
	}
	return r
}

func listenPeer(tb testing.TB) *net.UDPConn { return listenPeerOn(tb, loopback) }

func listenPeerOn(tb testing.TB, ip netip.Addr) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func addrPortOf(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, ok := addrPort(a)
	if !ok {
		t.Fatalf("no address in %v", a)
	}
	return ap
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func channelData(n uint16, payload []byte, pad bool) []byte {
	b := binary.BigEndian.AppendUint16(nil, n)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, payload...)
	for pad && len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func sendIndicationTo(tb testing.TB, peer netip.AddrPort, payload []byte) []byte {
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		testkit.PeerAddr(peer), testkit.Attr(stun.AttrData, payload))
	if err != nil {
		tb.Fatal(err)
	}
	return m.Raw
}

// TestDataPlane relays both ways over a UDP and a TCP client: ChannelData and Send
// indications to peers, ChannelData (padded on TCP) and Data indications back, and nothing
// to or from a peer without a permission.
func TestDataPlane(t *testing.T) {
	s := newTestServer(t, 45320, 45329)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r := newRelayed(t, s, network)
			stream := network == "tcp"
			buf := make([]byte, 2048)

			mustWrite(t, r.client.conn, channelData(testChannel, []byte("via channel"), stream))
			mustReadFrom(t, r.channel, buf, "via channel", r.relay)

			// That was the data plane's doing, not pion's: it takes the allocation's
			// ChannelData, and leaves an unbound channel to the guard (which drops it).
			key := routeKey{client: addrPortOf(t, r.client.conn.LocalAddr()),
				server: addrPortOf(t, r.client.conn.RemoteAddr()), stream: stream}
			var st connState
			if !s.guard.fromClient(key, channelData(testChannel, []byte("direct"), stream), &st) {
				t.Fatal("the data plane did not take ChannelData on a bound channel")
			}
			mustReadFrom(t, r.channel, buf, "direct", r.relay)
			if s.guard.fromClient(key, channelData(testChannel+1, []byte("unbound"), stream), &st) {
				t.Fatal("the data plane took ChannelData on an unbound channel")
			}

			mustWrite(t, r.client.conn, sendIndicationTo(t, addrOf(r.permOnly), []byte("via send")))
			mustReadFrom(t, r.permOnly, buf, "via send", r.relay)

			mustWriteTo(t, r.channel, []byte("odd-sized"), r.relay)
			want := channelData(testChannel, []byte("odd-sized"), stream)
			if got := readClientFrame(t, r.client.conn, buf, len(want)); !bytes.Equal(got, want) {
				t.Fatalf("peer → client on the channel: % x, want % x", got, want)
			}

			// A burst is read and sent on in batches (recvmmsg, then sendmmsg or writev):
			// every datagram arrives, in order.
			for i := range 20 {
				mustWriteTo(t, r.channel, []byte(fmt.Sprintf("burst %02d", i)), r.relay)
			}
			for i := range 20 {
				want := channelData(testChannel, []byte(fmt.Sprintf("burst %02d", i)), stream)
				if got := readClientFrame(t, r.client.conn, buf, len(want)); !bytes.Equal(got, want) {
					t.Fatalf("burst datagram %d: % x, want % x", i, got, want)
				}
			}

			mustWriteTo(t, r.permOnly, []byte("as data"), r.relay)
			msg := &stun.Message{Raw: r.client.readMessage(t)}
			var peer stun.XORMappedAddress
			if msg.Decode() != nil || msg.Type != stun.NewType(stun.MethodData, stun.ClassIndication) ||
				peer.GetFromAs(msg, stun.AttrXORPeerAddress) != nil {
				t.Fatalf("peer → client without a channel: %v", msg)
			}
			data, _ := msg.Get(stun.AttrData)
			if string(data) != "as data" || peer.Port != int(addrOf(r.permOnly).Port()) {
				t.Fatalf("Data indication carries %q from %v", data, peer)
			}

			// A stranger's datagram and a Send to a peer without a permission go nowhere:
			// permissions are per IP, so the stranger has another one.
			stranger := listenPeerOn(t, netip.MustParseAddr("127.0.0.2"))
			mustWriteTo(t, stranger, []byte("stranger"), r.relay)
			mustWrite(t, r.client.conn, sendIndicationTo(t, addrOf(stranger), []byte("no permission")))
			mustWriteTo(t, r.channel, []byte("after"), r.relay)
			want = channelData(testChannel, []byte("after"), stream)
			if got := readClientFrame(t, r.client.conn, buf, len(want)); !bytes.Equal(got, want) {
				t.Fatalf("after the stranger the client got % x, want % x", got, want)
			}
			_ = stranger.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, _, err := stranger.ReadFrom(buf); err == nil {
				t.Fatalf("a peer without a permission received %q", buf[:n])
			}
		})
	}
}

func mustWrite(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func mustWriteTo(t testing.TB, c *net.UDPConn, b []byte, to netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

func mustReadFrom(t *testing.T, c *net.UDPConn, buf []byte, want string, from netip.AddrPort) {
	t.Helper()
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != want || src != from {
		t.Fatalf("peer read %q from %v (%v), want %q from %v", buf[:n], src, err, want, from)
	}
}

// readClientFrame reads a datagram, or size bytes of a stream.
func readClientFrame(t testing.TB, c net.Conn, buf []byte, size int) []byte {
	t.Helper()
	if _, ok := c.(*net.UDPConn); ok {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
	n := 0
	for n < size {
		m, err := c.Read(buf[n:size])
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	return buf[:size]
}

// TestDataIndicationWire checks the in-place Data indication against pion's decoder, for
// both families and every padding.
func TestDataIndicationWire(t *testing.T) {
	for _, peer := range []string{"198.51.100.7:5000", "[2001:db8::7]:6000"} {
		for size := range 5 {
			ap := netip.MustParseAddrPort(peer)
			payload := bytes.Repeat([]byte{0xab}, size)
			frame := make([]byte, relay.Headroom+size, relay.Headroom+size+relay.Tailroom)
			for i := range frame[:cap(frame)] {
				frame[:cap(frame)][i] = 0xff // dirty, as a reused buffer is
			}
			copy(frame[relay.Headroom:], payload)
			out := dataIndication(frame, ap)
			m := &stun.Message{Raw: out}
			var got stun.XORMappedAddress
			if m.Decode() != nil || got.GetFromAs(m, stun.AttrXORPeerAddress) != nil {
				t.Fatalf("%s/%d: pion cannot decode % x", peer, size, out)
			}
			if data, err := m.Get(stun.AttrData); err != nil || !bytes.Equal(data, payload) {
				t.Fatalf("%s/%d: DATA % x, want % x", peer, size, data, payload)
			}
			if got.String() != ap.String() || len(out)%4 != 0 {
				t.Fatalf("%s/%d: XOR-PEER-ADDRESS %v, size %d", peer, size, got, len(out))
			}
			if pad := out[len(out)-((size+3)&^3-size):]; bytes.Count(pad, []byte{0}) != len(pad) {
				t.Fatalf("%s/%d: padding % x", peer, size, pad)
			}
		}
	}
}

// BenchmarkDataPlane sends one datagram per op through a live server: client → server →
// peer, or peer → server → client. It counts the allocations of the whole process, server
// included: the per-packet path must make none.
func BenchmarkDataPlane(b *testing.B) {
	s := newTestServer(b, 45330, 45339)
	for _, network := range []string{"udp", "tcp"} {
		r := newRelayed(b, s, network)
		stream := network == "tcp"
		payload := make([]byte, 200)
		buf := make([]byte, 2048)
		toChannel := channelData(testChannel, payload, stream)
		send := sendIndicationTo(b, addrOf(r.permOnly), payload)
		fromChannel := len(channelData(testChannel, payload, stream))
		run := func(name string, op func()) {
			b.Run(network+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					op()
				}
			})
		}
		run("ChannelDataToPeer", func() {
			mustWrite(b, r.client.conn, toChannel)
			mustRead(b, r.channel, buf)
		})
		run("SendToPeer", func() {
			mustWrite(b, r.client.conn, send)
			mustRead(b, r.permOnly, buf)
		})
		run("PeerToChannelData", func() {
			mustWriteTo(b, r.channel, payload, r.relay)
			readClientFrame(b, r.client.conn, buf, fromChannel)
		})
		run("PeerToChannelDataBurst8", func() {
			for range 8 {
				mustWriteTo(b, r.channel, payload, r.relay)
			}
			for range 8 {
				readClientFrame(b, r.client.conn, buf, fromChannel)
			}
		})
		run("PeerToDataIndication", func() {
			mustWriteTo(b, r.permOnly, payload, r.relay)
			readClientFrame(b, r.client.conn, buf, stunHeaderSize+12+4+len(payload))
		})
	}
}

func mustRead(tb testing.TB, c *net.UDPConn, buf []byte) {
	if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
		tb.Fatal(err)
	}
}
