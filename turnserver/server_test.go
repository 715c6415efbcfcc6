package turnserver

import (
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/testkit"
	"github.com/ferry-rtc/ferry/relay"
)

const (
	realm    = "ferry.test"
	user     = "alice"
	password = "pw"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// newTestServer runs a server in process with UDP and TCP listeners on 127.0.0.1, the
// recommended deny list and 127.0.0.0/8 allowed as peer.
func newTestServer(t testing.TB, minPort, maxPort int) *Server {
	t.Helper()
	pool, err := relay.NewPool(minPort, maxPort)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := relay.NewPolicy([]string{relay.Recommended}, []string{"127.0.0.0/8"}, []netip.Addr{loopback}, pool.Held)
	if err != nil {
		t.Fatal(err)
	}
	addrs := relay.Addrs{Bind: loopback, Public: loopback}
	users := []auth.User{{Name: user, Realm: realm, HA1: hex.EncodeToString(auth.HA1(user, realm, password))}}
	s, err := New(Config{
		Realm:     realm,
		Listeners: []Listener{{Proto: "udp", Addr: netip.AddrPortFrom(loopback, 0)}, {Proto: "tcp", Addr: netip.AddrPortFrom(loopback, 0)}},
		Auth:      auth.New(realm, users, nil),
		Allocator: relay.NewAllocator(pool, policy, addrs, relay.Addrs{}),
		Policy:    policy,
		Quota:     relay.NewQuota(0, 0),
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestDeniedSendIndicationsCounted: a Send indication to a denied peer is dropped and
// counted; one to an allowed peer is not counted.
func TestDeniedSendIndicationsCounted(t *testing.T) {
	s := newTestServer(t, 45300, 45309)
	conn, err := net.Dial("udp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, peer := range []string{"10.0.0.1:9", "127.0.0.1:9", "[::ffff:192.168.1.1]:9"} {
		ap := netip.MustParseAddrPort(peer)
		send, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
			testkit.PeerAddr(ap), testkit.Attr(stun.AttrData, []byte("x")))
		if _, err := conn.Write(send.Raw); err != nil {
			t.Fatal(err)
		}
	}
	// The listener handles datagrams in order: once a Binding sent after them is answered,
	// the indications have been seen.
	binding, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	if _, err := conn.Write(binding.Raw); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Read(make([]byte, 1500)); err != nil {
		t.Fatalf("no Binding response: %v", err)
	}
	if got := s.DeniedSends(); got != 2 {
		t.Fatalf("DeniedSends = %d, want 2 (10.0.0.1 and the mapped 192.168.1.1)", got)
	}
}

// TestConnectResponsesSigned walks RFC 6062 on raw messages and checks that the
// ConnectionBind success response and a Connect error response carry MESSAGE-INTEGRITY
// under the user's key, which pion/turn v5.1.0 leaves out (see streamConn.Write).
func TestConnectResponsesSigned(t *testing.T) {
	s := newTestServer(t, 45310, 45319)
	server := s.Addrs()[1].String()
	peer, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := peer.Accept(); err == nil {
			accepted <- c
		}
	}()

	control := dialStream(t, server)
	key := stun.NewLongTermIntegrity(user, realm, password)
	signed := control.signer(t)
	resp := control.roundTrip(t, signed(stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		testkit.Attr(stun.AttrRequestedTransport, []byte{6, 0, 0, 0}))...)
	if resp.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("TCP Allocate: %v", resp)
	}

	peerAddr := peer.Addr().(*net.TCPAddr).AddrPort()
	resp = control.roundTrip(t, signed(stun.NewType(stun.MethodConnect, stun.ClassRequest), testkit.PeerAddr(peerAddr))...)
	cid, err := resp.Get(stun.AttrConnectionID)
	if resp.Type.Class != stun.ClassSuccessResponse || err != nil {
		t.Fatalf("Connect: %v", resp)
	}

	data := dialStream(t, server)
	resp = data.roundTrip(t, signed(stun.NewType(stun.MethodConnectionBind, stun.ClassRequest),
		testkit.Attr(stun.AttrConnectionID, cid))...)
	if resp.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ConnectionBind: %v", resp)
	}
	if err := key.Check(resp); err != nil {
		t.Fatalf("ConnectionBind response MESSAGE-INTEGRITY: %v", err)
	}
	// The data connection now carries the peer's bytes, unframed.
	peerConn := <-accepted
	defer peerConn.Close()
	if _, err := data.conn.Write([]byte("raw bytes")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 9)
	_ = peerConn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(peerConn, buf); err != nil || string(buf) != "raw bytes" {
		t.Fatalf("peer read %q, %v", buf, err)
	}

	// A denied peer is 403, signed (the guard answers it).
	resp = control.roundTrip(t, signed(stun.NewType(stun.MethodConnect, stun.ClassRequest),
		testkit.PeerAddr(netip.MustParseAddrPort("10.0.0.1:80")))...)
	if code := errorCode(resp); code != stun.CodeForbidden {
		t.Fatalf("Connect to 10.0.0.1: %v, want 403", resp)
	}
	if err := key.Check(resp); err != nil {
		t.Fatalf("Connect 403 MESSAGE-INTEGRITY: %v", err)
	}

	// Connecting twice to the same peer is 446, signed too.
	resp = control.roundTrip(t, signed(stun.NewType(stun.MethodConnect, stun.ClassRequest), testkit.PeerAddr(peerAddr))...)
	if code := errorCode(resp); code != stun.CodeConnAlreadyExists {
		t.Fatalf("second Connect: %v, want 446", resp)
	}
	if err := key.Check(resp); err != nil {
		t.Fatalf("Connect error response MESSAGE-INTEGRITY: %v", err)
	}
}

// ctlClient sends raw STUN requests over UDP or TCP and reads their responses.
type ctlClient struct {
	conn net.Conn
	tb   testing.TB
}

func dialCtl(tb testing.TB, network, addr string) *ctlClient {
	tb.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return &ctlClient{conn: conn, tb: tb}
}

func dialStream(t *testing.T, addr string) *ctlClient { return dialCtl(t, "tcp", addr) }

func (c *ctlClient) roundTrip(t testing.TB, setters ...stun.Setter) *stun.Message {
	t.Helper()
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		m := &stun.Message{Raw: c.readMessage(t)}
		if err := m.Decode(); err != nil {
			t.Fatalf("bad response to %v: %v", req.Type, err)
		}
		if m.TransactionID == req.TransactionID {
			return m
		}
	}
}

// readMessage reads one STUN message: a datagram, or a header and its body from a stream.
func (c *ctlClient) readMessage(t testing.TB) []byte {
	t.Helper()
	if _, ok := c.conn.(*net.UDPConn); ok {
		buf := make([]byte, 1600)
		n, err := c.conn.Read(buf)
		if err != nil {
			t.Fatalf("reading a response: %v", err)
		}
		return buf[:n]
	}
	hdr := make([]byte, stunHeaderSize)
	if _, err := io.ReadFull(c.conn, hdr); err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	raw := make([]byte, stunHeaderSize+int(binary.BigEndian.Uint16(hdr[2:4])))
	copy(raw, hdr)
	if _, err := io.ReadFull(c.conn, raw[stunHeaderSize:]); err != nil {
		t.Fatal(err)
	}
	return raw
}

// signer learns a nonce and returns what signs a request as alice with it.
func (c *ctlClient) signer(tb testing.TB) func(setters ...stun.Setter) []stun.Setter {
	tb.Helper()
	nonce := c.unauthorizedNonce(tb)
	key := stun.NewLongTermIntegrity(user, realm, password)
	return func(setters ...stun.Setter) []stun.Setter {
		return append(setters, stun.NewUsername(user), stun.NewRealm(realm), nonce, key)
	}
}

// unauthorizedNonce sends an unauthenticated Allocate and returns the nonce of the 401.
func (c *ctlClient) unauthorizedNonce(t testing.TB) stun.Nonce {
	t.Helper()
	resp := c.roundTrip(t, stun.NewType(stun.MethodAllocate, stun.ClassRequest), testkit.Attr(stun.AttrRequestedTransport, []byte{6, 0, 0, 0}))
	var nonce stun.Nonce
	if err := nonce.GetFrom(resp); err != nil {
		t.Fatalf("401 without a nonce: %v", resp)
	}
	return nonce
}

func errorCode(m *stun.Message) stun.ErrorCode {
	var ec stun.ErrorCodeAttribute
	if m.Type.Class != stun.ClassErrorResponse || ec.GetFrom(m) != nil {
		return 0
	}
	return ec.Code
}
