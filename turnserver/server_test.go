package turnserver

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/testkit"
	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/relay"
)

// The test server's realm and credentials: alice is in the users file; REST credentials
// under restSecret make any other user (restUser).
const (
	testRealm  = "ferry.test"
	alice      = "alice"
	alicePass  = "alice-pw"
	restSecret = "rest-secret"
)

var (
	loopback4 = netip.MustParseAddr("127.0.0.1")
	loopback6 = netip.IPv6Loopback()
)

// newTestServer runs a Server in process with a UDP and a TCP listener on 127.0.0.1 (in
// that order in Addrs), IPv4 relays on 127.0.0.1 with the ports minPort-maxPort, the
// recommended deny list with 127.0.0.0/8 and ::1 allowed, alice in the users file and a REST
// secret. opts change the config before the server starts; it closes with the test.
func newTestServer(t testing.TB, minPort, maxPort int, opts ...func(*Config)) *Server {
	t.Helper()
	pool, err := relay.NewPool(minPort, maxPort)
	if err != nil {
		t.Fatal(err)
	}
	users := []auth.User{{Name: alice, Realm: testRealm, HA1: hex.EncodeToString(auth.HA1(alice, testRealm, alicePass))}}
	cfg := Config{
		Realm: testRealm,
		Listeners: []Listener{
			{Proto: "udp", Addr: netip.AddrPortFrom(loopback4, 0)},
			{Proto: "tcp", Addr: netip.AddrPortFrom(loopback4, 0)},
		},
		Auth:   auth.New(testRealm, users, []string{restSecret}),
		Pool:   pool,
		Policy: testPolicy(t, pool, "127.0.0.0/8", "::1/128"),
		V4:     relay.Addrs{Bind: loopback4, Public: loopback4},
		Log:    slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testPolicy denies the recommended ranges but allow, with 127.0.0.1 and ::1 as Ferry's own
// relay addresses.
func testPolicy(t testing.TB, pool *relay.Pool, allow ...string) *relay.Policy {
	t.Helper()
	p, err := relay.NewPolicy([]string{relay.Recommended}, allow, []netip.Addr{loopback4, loopback6}, pool.Held)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Options of newTestServer.

func withLimits(l Limits) func(*Config) { return func(c *Config) { c.Limits = l } }

func withMetrics(set *metrics.Set) func(*Config) { return func(c *Config) { c.Metrics = set } }

// allowOnly replaces the peers allowed past the recommended deny list.
func allowOnly(t testing.TB, cidrs ...string) func(*Config) {
	return func(c *Config) { c.Policy = testPolicy(t, c.Pool, cidrs...) }
}

// withIPv6 adds IPv6 relays on ::1, from the same pool; without ::1 the test is skipped.
func withIPv6(t testing.TB) func(*Config) {
	t.Helper()
	probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("SKIPPED LOUDLY: this machine has no IPv6 loopback (%v), so no IPv6 relay can be tested", err)
	}
	_ = probe.Close()
	return func(c *Config) { c.V6 = relay.Addrs{Bind: loopback6, Public: loopback6} }
}

// restUser returns REST API credentials of user under restSecret, valid for an hour.
func restUser(user string) (username, password string) {
	return auth.RESTCredential(restSecret, user, time.Hour, time.Now())
}

// ctlClient is a raw STUN/TURN client over UDP or TCP: it learns the nonce from a 401, signs
// requests with its user's long-term key, matches answers by transaction ID, and reads
// whatever else the server sends.
type ctlClient struct {
	conn       net.Conn
	user, pass string
	nonce      stun.Nonce
}

// readTimeout bounds every read from the server: a test that waits longer has failed.
const readTimeout = 3 * time.Second

func dialCtl(tb testing.TB, network, addr string) *ctlClient {
	tb.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return &ctlClient{conn: conn, user: alice, pass: alicePass}
}

// newClient connects as alice to s's UDP ("udp") or TCP ("tcp") listener.
func newClient(tb testing.TB, s *Server, network string) *ctlClient {
	tb.Helper()
	addr := s.Addrs()[0]
	if network == "tcp" {
		addr = s.Addrs()[1]
	}
	return dialCtl(tb, network, addr.String())
}

// as returns the client on the same connection (and 5-tuple) with other credentials.
func (c *ctlClient) as(user, pass string) *ctlClient {
	d := *c
	d.user, d.pass = user, pass
	return &d
}

func (c *ctlClient) stream() bool {
	_, udp := c.conn.(*net.UDPConn)
	return !udp
}

func (c *ctlClient) local() netip.AddrPort { return addrPortOf(c.conn.LocalAddr()) }

// alloc is the allocation of c's 5-tuple in s's table, nil if none (white-box).
func (c *ctlClient) alloc(s *Server) *allocation {
	five := fiveTuple{client: c.local(), server: addrPortOf(c.conn.RemoteAddr()), stream: c.stream()}
	for _, a := range s.table.all() {
		if a.five == five {
			return a
		}
	}
	return nil
}

func (c *ctlClient) write(tb testing.TB, b []byte) {
	tb.Helper()
	mustWrite(tb, c.conn, b)
}

// readFrame returns the next datagram from the server, or the next STUN message or
// ChannelData frame (with its padding) of the stream.
func (c *ctlClient) readFrame(tb testing.TB) []byte {
	tb.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(readTimeout))
	if !c.stream() {
		buf := make([]byte, 2048)
		n, err := c.conn.Read(buf)
		if err != nil {
			tb.Fatalf("reading from the server: %v", err)
		}
		return buf[:n]
	}
	hdr := make([]byte, turnwire.ChannelHeaderSize)
	if _, err := io.ReadFull(c.conn, hdr); err != nil {
		tb.Fatalf("reading from the server: %v", err)
	}
	size, err := turnwire.StreamFrameSize(hdr)
	if err != nil {
		tb.Fatalf("the server's stream lost its framing: %v", err)
	}
	frame := append(hdr, make([]byte, size-len(hdr))...)
	if _, err := io.ReadFull(c.conn, frame[len(hdr):]); err != nil {
		tb.Fatalf("reading from the server: %v", err)
	}
	return frame
}

// roundTrip sends the message setters build, with a new transaction ID, and returns its
// answer.
func (c *ctlClient) roundTrip(tb testing.TB, setters ...stun.Setter) *stun.Message {
	tb.Helper()
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return c.exchange(tb, req)
}

// exchange sends req as it is and returns the answer with its transaction ID, skipping
// whatever else arrives first.
func (c *ctlClient) exchange(tb testing.TB, req *stun.Message) *stun.Message {
	tb.Helper()
	c.write(tb, req.Raw)
	return c.await(tb, req)
}

// await returns the answer to req, which was sent, skipping whatever else arrives first.
func (c *ctlClient) await(tb testing.TB, req *stun.Message) *stun.Message {
	tb.Helper()
	for {
		m := &stun.Message{Raw: c.readFrame(tb)}
		if stun.IsMessage(m.Raw) && m.Decode() == nil && m.TransactionID == req.TransactionID {
			return m
		}
	}
}

func (c *ctlClient) key() stun.MessageIntegrity {
	return stun.NewLongTermIntegrity(c.user, testRealm, c.pass)
}

// credentials are USERNAME, REALM and NONCE, the nonce learnt from a 401 the first time: an
// unsigned Refresh, since an unsigned Allocate is answered 508 or 300 while draining.
func (c *ctlClient) credentials(tb testing.TB) []stun.Setter {
	tb.Helper()
	if len(c.nonce) == 0 {
		resp := c.roundTrip(tb, stun.NewType(stun.MethodRefresh, stun.ClassRequest))
		if respCode(resp) != stun.CodeUnauthorized || c.nonce.GetFrom(resp) != nil {
			tb.Fatalf("an unsigned request got %v, want 401 with a NONCE", resp)
		}
	}
	return []stun.Setter{stun.NewUsername(c.user), stun.NewRealm(testRealm), c.nonce}
}

// signed builds a request of method with attrs, signed with MESSAGE-INTEGRITY.
func (c *ctlClient) signed(tb testing.TB, method stun.Method, attrs ...stun.Setter) *stun.Message {
	tb.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
	setters = append(setters, c.credentials(tb)...)
	req, err := stun.Build(append(setters, c.key())...)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// request sends a signed request and returns its answer.
func (c *ctlClient) request(tb testing.TB, method stun.Method, attrs ...stun.Setter) *stun.Message {
	tb.Helper()
	return c.exchange(tb, c.signed(tb, method, attrs...))
}

// want sends a signed request and checks that its answer is a success (code 0) or an error
// response with code, signed with the client's key either way.
func (c *ctlClient) want(tb testing.TB, code stun.ErrorCode, method stun.Method, attrs ...stun.Setter) *stun.Message {
	tb.Helper()
	resp := c.request(tb, method, attrs...)
	wantCode(tb, resp, code)
	if err := c.key().Check(resp); err != nil {
		tb.Fatalf("%v answer without a valid MESSAGE-INTEGRITY: %v", resp.Type, err)
	}
	return resp
}

// allocate makes a UDP allocation with attrs and returns its (first) relayed address.
func (c *ctlClient) allocate(tb testing.TB, attrs ...stun.Setter) netip.AddrPort {
	tb.Helper()
	resp := c.want(tb, 0, stun.MethodAllocate, append([]stun.Setter{udpTransport}, attrs...)...)
	return relayed(tb, resp)[0]
}

// respCode is the ERROR-CODE of an error response, 0 for any other message.
func respCode(m *stun.Message) stun.ErrorCode {
	var ec stun.ErrorCodeAttribute
	if m.Type.Class == stun.ClassErrorResponse && ec.GetFrom(m) == nil {
		return ec.Code
	}
	return 0
}

// wantCode checks that resp is a success response (code 0) or an error with code.
func wantCode(tb testing.TB, resp *stun.Message, code stun.ErrorCode) {
	tb.Helper()
	got := respCode(resp)
	if got != code || (code == 0 && resp.Type.Class != stun.ClassSuccessResponse) {
		tb.Fatalf("answer %v with code %d, want %d", resp, got, code)
	}
}

// relayed returns the XOR-RELAYED-ADDRESSes of an answer, decoded by pion.
func relayed(tb testing.TB, m *stun.Message) []netip.AddrPort {
	tb.Helper()
	var out []netip.AddrPort
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORRelayedAddress {
			continue
		}
		one := &stun.Message{TransactionID: m.TransactionID}
		one.Add(a.Type, a.Value)
		var x stun.XORMappedAddress
		if err := x.GetFromAs(one, a.Type); err != nil {
			tb.Fatalf("XOR-RELAYED-ADDRESS % x: %v", a.Value, err)
		}
		ip, _ := netip.AddrFromSlice(x.IP)
		out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(x.Port)))
	}
	if len(out) == 0 {
		tb.Fatalf("no XOR-RELAYED-ADDRESS in %v", m)
	}
	return out
}

// lifetimeOf is the LIFETIME of an answer.
func lifetimeOf(tb testing.TB, m *stun.Message) time.Duration {
	tb.Helper()
	v, err := m.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 {
		tb.Fatalf("no LIFETIME in %v", m)
	}
	return time.Duration(binary.BigEndian.Uint32(v)) * time.Second
}

// Attributes of requests, encoded here rather than with turnwire's encoders, whose
// decoders the server uses.

func transport(proto byte) stun.Setter {
	return testkit.Attr(stun.AttrRequestedTransport, []byte{proto, 0, 0, 0})
}

var udpTransport, tcpTransport = transport(turnwire.ProtoUDP), transport(turnwire.ProtoTCP)

func addrFamily(t stun.AttrType, family byte) stun.Setter {
	return testkit.Attr(t, []byte{family, 0, 0, 0})
}

func requestedFamily(family byte) stun.Setter {
	return addrFamily(stun.AttrRequestedAddressFamily, family)
}

func additionalFamily(family byte) stun.Setter {
	return addrFamily(turnwire.AttrAdditionalAddressFamily, family)
}

func lifetime(seconds uint32) stun.Setter {
	return testkit.Attr(stun.AttrLifetime, binary.BigEndian.AppendUint32(nil, seconds))
}

func channelNumber(n uint16) stun.Setter {
	return testkit.Attr(stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0})
}

func evenPort(reserve bool) stun.Setter {
	if reserve {
		return testkit.Attr(stun.AttrEvenPort, []byte{0x80})
	}
	return testkit.Attr(stun.AttrEvenPort, []byte{0})
}

func peer(ap string) stun.Setter { return testkit.PeerAddr(netip.MustParseAddrPort(ap)) }

// peerAt is XOR-PEER-ADDRESS of a socket's or relay's address.
func peerAt(a net.Addr) stun.Setter { return testkit.PeerAddr(addrPortOf(a)) }

// badPeer is an XOR-PEER-ADDRESS of family IPv4 two bytes short.
var badPeer = testkit.Attr(stun.AttrXORPeerAddress, []byte{0, turnwire.FamilyIPv4, 0x12, 0x34, 1, 2})

// Peers.

func listenPeer(tb testing.TB, ip string) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return addrPortOf(c.LocalAddr()) }

func writeTo(tb testing.TB, c *net.UDPConn, payload string, to netip.AddrPort) {
	tb.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(payload), to); err != nil {
		tb.Fatal(err)
	}
}

// expectFrom reads the next datagram of a peer's socket or a pion relay: want, from from.
func expectFrom(tb testing.TB, c net.PacketConn, want string, from netip.AddrPort) {
	tb.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	n, src, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != want || addrPortOf(src) != from {
		tb.Fatalf("%v read %q from %v (%v), want %q from %v", c.LocalAddr(), buf[:n], src, err, want, from)
	}
}

// expectSilence checks that nothing reaches a peer within a short while.
func expectSilence(tb testing.TB, c *net.UDPConn) {
	tb.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, src, err := c.ReadFromUDPAddrPort(buf); err == nil {
		tb.Fatalf("peer %v received %q from %v", addrOf(c), buf[:n], src)
	}
}

// Polling and metrics.

// waitFor polls cond until it holds, failing the test after a few seconds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

// metricValue reads one series of set as Prometheus text, such as
// `ferry_stun_dropped_total{reason="fingerprint"}`.
func metricValue(tb testing.TB, set *metrics.Set, series string) uint64 {
	tb.Helper()
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for line := range strings.Lines(buf.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				tb.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	tb.Fatalf("no series %s in\n%s", series, buf.String())
	return 0
}

// waitMetric polls a series until it reaches want, which it must not pass.
func waitMetric(tb testing.TB, set *metrics.Set, series string, want uint64) {
	tb.Helper()
	waitFor(tb, series+" to reach "+strconv.FormatUint(want, 10), func() bool { return metricValue(tb, set, series) >= want })
	if got := metricValue(tb, set, series); got != want {
		tb.Fatalf("%s = %d, want %d", series, got, want)
	}
}

func dropped(reason string) string { return `ferry_stun_dropped_total{reason="` + reason + `"}` }

// sessionOf is the admin API's view of c's allocation.
func sessionOf(tb testing.TB, s *Server, c *ctlClient) Session {
	tb.Helper()
	for _, sess := range s.Sessions() {
		if sess.Client == c.local().String() {
			return sess
		}
	}
	tb.Fatalf("no session of %v", c.local())
	return Session{}
}

func mustWrite(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}
