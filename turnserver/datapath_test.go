package turnserver

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

const testChannel = 0x4000

// relayedClient is a client with a UDP allocation, a peer on 127.0.0.1 bound to
// testChannel, and a peer on 127.0.0.2 with a permission only.
type relayedClient struct {
	*ctlClient
	relay              netip.AddrPort
	channel, permitted *net.UDPConn
}

func newRelayed(tb testing.TB, s *Server, network string) *relayedClient {
	tb.Helper()
	c := newClient(tb, s, network)
	r := &relayedClient{ctlClient: c, relay: c.allocate(tb), channel: listenPeer(tb, "127.0.0.1"), permitted: listenPeer(tb, "127.0.0.2")}
	c.want(tb, 0, stun.MethodChannelBind, channelNumber(testChannel), peerAt(r.channel.LocalAddr()))
	c.want(tb, 0, stun.MethodCreatePermission, peerAt(r.permitted.LocalAddr()))
	return r
}

// TestDataPlane: over UDP and over TCP, ChannelData and Send indications reach the peers,
// and the peers' datagrams come back as ChannelData (padded on TCP, RFC 8656 section 12.5)
// from the peer with a channel and as Data indications from the one with a permission only;
// a stranger gets nothing through either way.
func TestDataPlane(t *testing.T) {
	for i, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			set := metrics.NewSet()
			s := newTestServer(t, 27200+10*i, 27209+10*i, withMetrics(set))
			r := newRelayed(t, s, network)
			r.write(t, channelDataFrame(testChannel, "via the channel", r.stream()))
			expectFrom(t, r.channel, "via the channel", r.relay)
			r.write(t, sendIndication(t, addrOf(r.permitted), "via Send"))
			expectFrom(t, r.permitted, "via Send", r.relay)

			writeTo(t, r.channel, "odd-sized", r.relay) // 9 bytes: 3 of padding on a stream
			r.expectChannelData(t, "odd-sized")
			writeTo(t, r.permitted, "as Data", r.relay)
			r.expectData(t, addrOf(r.permitted), "as Data")

			// Permissions are per IP: the stranger on 127.0.0.3 has none.
			stranger := listenPeer(t, "127.0.0.3")
			writeTo(t, stranger, "from the stranger", r.relay)
			r.write(t, sendIndication(t, addrOf(stranger), "to the stranger"))
			waitMetric(t, set, dropped("no_permission"), 1)
			waitMetric(t, set, dropped("unrelayable"), 1)
			writeTo(t, r.channel, "after", r.relay)
			r.expectChannelData(t, "after") // not the stranger's datagram
			expectSilence(t, stranger)
		})
	}
}

// TestStreamBurst: frames that reach a stream in one read go to the peers together, and
// each arrives whole and in order: 40 ChannelData frames of growing sizes with Send
// indications and signed requests among them in one write (checking a MESSAGE-INTEGRITY
// must not write into the frames behind it), then a burst larger than the connection's
// read buffer.
func TestStreamBurst(t *testing.T) {
	s := newTestServer(t, 27230, 27234)
	r := newRelayed(t, s, "tcp")
	var want []string
	var requests []*stun.Message
	burst := func(n, size int) []byte {
		var b []byte
		for i := range n {
			payload := fmt.Sprintf("%03d:%s", len(want), strings.Repeat("x", size+i*7))
			want = append(want, payload)
			switch i % 10 {
			case 9:
				b = append(b, sendIndication(t, addrOf(r.channel), payload)...)
				continue
			case 4:
				req := r.signed(t, stun.MethodCreatePermission, peerAt(r.permitted.LocalAddr()))
				requests = append(requests, req)
				b = append(b, req.Raw...)
			}
			b = append(b, channelDataFrame(testChannel, payload, true)...)
		}
		return b
	}
	r.write(t, burst(40, 10))
	r.write(t, burst(60, 200)) // ~ 24 KiB: past the 4 KiB read buffer
	for _, payload := range want {
		expectFrom(t, r.channel, payload, r.relay)
	}
	for _, req := range requests {
		wantCode(t, r.await(t, req), 0)
	}
}

// TestReadFrame: readFrame returns every frame whole, from the read buffer when a read
// brought it whole and copied when it came a byte at a time, and a frame larger than the
// read buffer too.
func TestReadFrame(t *testing.T) {
	var stream []byte
	var want [][]byte
	for _, size := range []int{1, 203, 5000, 0, 64} {
		frame := channelDataFrame(testChannel, strings.Repeat("y", size), true)
		stream, want = append(stream, frame...), append(want, frame)
	}
	for name, r := range map[string]io.Reader{
		"whole":       bytes.NewReader(stream),
		"byte a time": iotest.OneByteReader(bytes.NewReader(stream)),
	} {
		c := &streamConn{r: bufio.NewReader(r)}
		out := &relayBatch{}
		for i, w := range want {
			got, err := c.readFrame(out)
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("%s: frame %d = %d bytes (%v), want %d", name, i, len(got), err, len(w))
			}
		}
		if _, err := c.readFrame(out); err != io.EOF {
			t.Fatalf("%s: past the last frame: %v, want EOF", name, err)
		}
	}
}

// TestExpiredPermission: once a peer's permission has expired, nothing goes through to or
// from it, on its channel neither, even before the sweep forgets it: the data plane checks
// the expiry of every packet.
func TestExpiredPermission(t *testing.T) {
	set := metrics.NewSet()
	s := newTestServer(t, 27220, 27224, withMetrics(set))
	r := newRelayed(t, s, "udp")
	a := r.alloc(s)

	expirePermission(a, "127.0.0.2")
	r.write(t, sendIndication(t, addrOf(r.permitted), "late Send"))
	writeTo(t, r.permitted, "late reply", r.relay)
	writeTo(t, r.channel, "after", r.relay)
	r.expectChannelData(t, "after") // not the late reply
	expectSilence(t, r.permitted)

	expirePermission(a, "127.0.0.1")
	r.write(t, channelDataFrame(testChannel, "late ChannelData", false))
	writeTo(t, r.channel, "late on the channel", r.relay)
	waitMetric(t, set, dropped("unrelayable"), 2)
	waitMetric(t, set, dropped("no_permission"), 2)
	expectSilence(t, r.channel)
}

// TestSendIndicationDrops: a Send indication to a peer without a permission, with a bad
// FINGERPRINT, with an unknown comprehension-required attribute (RFC 8489 section 6.3) or
// with a malformed XOR-PEER-ADDRESS is dropped and counted by its reason; one to a denied
// peer is counted as a denial.
func TestSendIndicationDrops(t *testing.T) {
	set := metrics.NewSet()
	s := newTestServer(t, 27225, 27229, withMetrics(set))
	r := newRelayed(t, s, "udp")
	to := addrOf(r.permitted)
	stranger := listenPeer(t, "127.0.0.3")
	badFingerprint := sendIndication(t, to, "x", stun.Fingerprint)
	badFingerprint[len(badFingerprint)-1] ^= 1
	for _, tc := range []struct {
		series string
		msg    []byte
		peer   *net.UDPConn
	}{
		{dropped("unrelayable"), sendIndication(t, addrOf(stranger), "x"), stranger},
		{dropped("fingerprint"), badFingerprint, r.permitted},
		{dropped("unknown_attribute"), sendIndication(t, to, "x", testkit.Attr(0x7ffe, []byte{1})), r.permitted},
		{dropped("malformed"), indication(t, badPeer, testkit.Attr(stun.AttrData, []byte("x"))), r.permitted},
		{`ferry_peer_denied_total{op="send"}`, sendIndication(t, netip.MustParseAddrPort("10.0.0.1:9"), "x"), r.permitted},
	} {
		before := metricValue(t, set, tc.series)
		r.write(t, tc.msg)
		waitMetric(t, set, tc.series, before+1)
		expectSilence(t, tc.peer)
	}
}

// TestDroppedNotCountedAsRelayed: a datagram the relay drops, from a source without a
// permission, is not traffic the allocation carried.
func TestDroppedNotCountedAsRelayed(t *testing.T) {
	set := metrics.NewSet()
	s := newTestServer(t, 27230, 27234, withMetrics(set))
	r := newRelayed(t, s, "udp")
	writeTo(t, listenPeer(t, "127.0.0.3"), "from a stranger", r.relay)
	waitMetric(t, set, dropped("no_permission"), 1)
	if got := sessionOf(t, s, r.ctlClient).FromPeerPackets; got != 0 {
		t.Errorf("the session counts %d packets from peers, none relayed", got)
	}
	if got := metricValue(t, set, `ferry_relay_packets_total{direction="peer_to_client"}`); got != 0 {
		t.Errorf("%d packets counted as relayed to clients, none relayed", got)
	}
}

// TestKillAndSessions: Sessions describes each allocation (user, transport, relay,
// permissions, channels, expiry, traffic); Kill ends one and KillUser all of a user's, and
// their clients get 437 after.
func TestKillAndSessions(t *testing.T) {
	s := newTestServer(t, 27235, 27249)
	r := newRelayed(t, s, "udp")
	r.write(t, channelDataFrame(testChannel, "12345", false))
	expectFrom(t, r.channel, "12345", r.relay)
	waitFor(t, "the packet in the session's counters", func() bool { return sessionOf(t, s, r.ctlClient).ToPeerPackets == 1 })
	sess := sessionOf(t, s, r.ctlClient)
	left := sess.Expires.Sub(sess.Created)
	if sess.User != alice || sess.Transport != "udp" || sess.Relay != r.relay.String() || sess.ToPeerBytes != 5 ||
		left > defaultLifetime || left < defaultLifetime-5*time.Second {
		t.Fatalf("session %+v", sess)
	}
	if want := []Channel{{testChannel, addrOf(r.channel).String()}}; !slices.Equal(sess.Channels, want) {
		t.Fatalf("channels %v, want %v", sess.Channels, want)
	}
	if want := []string{"127.0.0.1", "127.0.0.2"}; !slices.Equal(sess.Permissions, want) {
		t.Fatalf("permissions %v, want %v", sess.Permissions, want)
	}

	if !s.Kill(sess.ID) || s.Kill(sess.ID) || s.Kill("nonsense") {
		t.Fatal("Kill ends exactly the live allocation it names")
	}
	r.want(t, stun.CodeAllocMismatch, stun.MethodRefresh)

	mine := []*ctlClient{newClient(t, s, "udp"), newClient(t, s, "tcp")}
	bob := newClient(t, s, "udp").as(restUser("bob"))
	for _, c := range append(mine, bob) {
		c.allocate(t)
	}
	if n := s.KillUser(alice); n != 2 {
		t.Fatalf("KillUser ended %d allocations, want 2", n)
	}
	for _, c := range mine {
		c.want(t, stun.CodeAllocMismatch, stun.MethodRefresh)
	}
	bob.want(t, 0, stun.MethodRefresh)
	if n, ports := s.Allocations(), s.cfg.Pool.InUse(); n != 1 || ports != 1 {
		t.Fatalf("%d allocations and %d relay ports left, want bob's", n, ports)
	}
}

// expirePermission makes a's permission for ip expired, as the data plane sees it, without
// waiting for the sweep (white-box).
func expirePermission(a *allocation, ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	a.perms[netip.MustParseAddr(ip)] = now.Add(-time.Second)
	a.publish(now)
}

// indication is a Send indication made of setters.
func indication(tb testing.TB, setters ...stun.Setter) []byte {
	tb.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication)}, setters...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return m.Raw
}

// sendIndication is a Send indication of payload to peer, with extra attributes after DATA.
func sendIndication(tb testing.TB, to netip.AddrPort, payload string, extra ...stun.Setter) []byte {
	tb.Helper()
	return indication(tb, append([]stun.Setter{testkit.PeerAddr(to), testkit.Attr(stun.AttrData, []byte(payload))}, extra...)...)
}

// channelDataFrame is a ChannelData message, padded to 4 bytes for a stream.
func channelDataFrame(number uint16, payload string, padded bool) []byte {
	b := binary.BigEndian.AppendUint16(nil, number)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, payload...)
	for padded && len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// expectChannelData reads ChannelData of payload on testChannel, exactly as RFC 8656
// section 12.4 frames it for the client's transport.
func (c *ctlClient) expectChannelData(tb testing.TB, payload string) {
	tb.Helper()
	if got, want := c.readFrame(tb), channelDataFrame(testChannel, payload, c.stream()); !bytes.Equal(got, want) {
		tb.Fatalf("client read % x, want ChannelData % x", got, want)
	}
}

// expectData reads a Data indication of payload from peer, decoded by pion.
func (c *ctlClient) expectData(tb testing.TB, from netip.AddrPort, payload string) {
	tb.Helper()
	m := &stun.Message{Raw: c.readFrame(tb)}
	var peer stun.XORMappedAddress
	if err := m.Decode(); err != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) ||
		peer.GetFromAs(m, stun.AttrXORPeerAddress) != nil {
		tb.Fatalf("client read % x (%v), want a Data indication", m.Raw, err)
	}
	data, err := m.Get(stun.AttrData)
	if ip, _ := netip.AddrFromSlice(peer.IP); err != nil || string(data) != payload || netip.AddrPortFrom(ip.Unmap(), uint16(peer.Port)) != from {
		tb.Fatalf("Data indication of %q from %v, want %q from %v", data, peer, payload, from)
	}
}

// TestInboundFromOwnAddress: a permission for Ferry's own relay IP, which the policy denies,
// lets in datagrams only from the ports Ferry holds (another relay's), not from another
// program on that IP; those are dropped and counted as inbound denials.
func TestInboundFromOwnAddress(t *testing.T) {
	set := metrics.NewSet()
	s := newTestServer(t, 27280, 27284, withMetrics(set), allowOnly(t, "127.0.0.2/32"))
	a, b := newClient(t, s, "udp"), newClient(t, s, "udp")
	relayA, relayB := a.allocate(t), b.allocate(t)
	a.want(t, 0, stun.MethodCreatePermission, testkit.PeerAddr(relayB))
	b.want(t, 0, stun.MethodCreatePermission, testkit.PeerAddr(relayA))
	writeTo(t, listenPeer(t, "127.0.0.1"), "from another program", relayA)
	waitMetric(t, set, `ferry_peer_denied_total{op="inbound"}`, 1)
	b.write(t, sendIndication(t, relayA, "from the other relay"))
	a.expectData(t, relayB, "from the other relay") // not the other program's datagram
}
