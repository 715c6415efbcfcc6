package turnserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// limitedServer is a test server with limits applied the way a reload applies them.
func limitedServer(t *testing.T, minPort, maxPort int, lim Limits) *Server {
	t.Helper()
	s := newTestServer(t, minPort, maxPort)
	s.Apply(Settings{Auth: s.guard.auth.Load(), Limits: lim})
	return s
}

var allocateUDP = []stun.Setter{stun.NewType(stun.MethodAllocate, stun.ClassRequest),
	testkit.Attr(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})}

// allocated dials network and makes an allocation; it returns the client and its signer.
func allocated(t *testing.T, s *Server, network string, extra ...stun.Setter) (*ctlClient, func(...stun.Setter) []stun.Setter) {
	t.Helper()
	addr := s.Addrs()[0].String()
	if network == "tcp" {
		addr = s.Addrs()[1].String()
	}
	c := dialCtl(t, network, addr)
	signed := c.signer(t)
	if resp := c.roundTrip(t, signed(append(append([]stun.Setter{}, allocateUDP...), extra...)...)...); resp.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Allocate: %v", resp)
	}
	return c, signed
}

func peersAttr(peers ...string) []stun.Setter {
	out := []stun.Setter{stun.NewType(stun.MethodCreatePermission, stun.ClassRequest)}
	for _, p := range peers {
		out = append(out, testkit.PeerAddr(netip.MustParseAddrPort(p)))
	}
	return out
}

func channelBind(n uint16, peer string) []stun.Setter {
	return []stun.Setter{stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		testkit.Attr(stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0}),
		testkit.PeerAddr(netip.MustParseAddrPort(peer))}
}

// TestPeerLimits: an allocation holds at most Permissions peer IPs and Channels channels;
// what it has can always be refreshed, and ChannelBind's own permission counts too.
func TestPeerLimits(t *testing.T) {
	s := limitedServer(t, 45360, 45369, Limits{Permissions: 3, Channels: 3})
	c, signed := allocated(t, s, "udp")
	steps := []struct {
		what    string
		request []stun.Setter
		code    stun.ErrorCode // 0: success
	}{
		{"two permissions", peersAttr("127.0.0.2:1", "127.0.0.3:1"), 0},
		{"two more: one too many", peersAttr("127.0.0.4:1", "127.0.0.5:1"), stun.CodeInsufficientCapacity},
		{"a refresh and one more", peersAttr("127.0.0.2:7", "127.0.0.4:1"), 0},
		{"a fourth IP", peersAttr("127.0.0.5:1"), stun.CodeInsufficientCapacity},
		{"refresh all three", peersAttr("127.0.0.2:1", "127.0.0.3:1", "127.0.0.4:1"), 0},
		{"channel to a permitted IP", channelBind(0x4000, "127.0.0.2:1000"), 0},
		{"second channel", channelBind(0x4001, "127.0.0.3:1000"), 0},
		{"channel to a fourth IP", channelBind(0x4002, "127.0.0.9:1000"), stun.CodeInsufficientCapacity},
		{"third channel", channelBind(0x4002, "127.0.0.4:1000"), 0},
		{"fourth channel", channelBind(0x4003, "127.0.0.4:1001"), stun.CodeInsufficientCapacity},
		{"channel refresh", channelBind(0x4000, "127.0.0.2:1000"), 0},
		{"a denied peer among new ones: 403, not 508", peersAttr("127.0.0.7:1", "10.0.0.1:1"), stun.CodeForbidden},
	}
	for _, st := range steps {
		resp := c.roundTrip(t, signed(st.request...)...)
		if got := errorCode(resp); got != st.code || (st.code == 0 && resp.Type.Class != stun.ClassSuccessResponse) {
			t.Fatalf("%s: got %v (code %d), want code %d", st.what, resp.Type, got, st.code)
		}
	}
	if got := s.meters.limitRejections[limitPermissions].Get(); got != 3 {
		t.Errorf("permission limit rejections = %d, want 3", got)
	}
	if got := s.meters.limitRejections[limitChannels].Get(); got != 1 {
		t.Errorf("channel limit rejections = %d, want 1", got)
	}
	sess := s.Sessions()[0]
	if len(sess.Permissions) != 3 || len(sess.Channels) != 3 {
		t.Fatalf("session holds %v and %v, want 3 permissions and 3 channels", sess.Permissions, sess.Channels)
	}
}

// TestChannelNumberRange: ChannelBind takes the numbers ChannelData can carry, 0x4000
// through 0x7FFF, and answers others 400 (pion alone binds them).
func TestChannelNumberRange(t *testing.T) {
	s := newTestServer(t, 45430, 45439)
	c, signed := allocated(t, s, "udp")
	for i, tc := range []struct {
		number uint16
		code   stun.ErrorCode // 0: success
	}{
		{0x0001, stun.CodeBadRequest},
		{0x3FFF, stun.CodeBadRequest},
		{0x4000, 0},
		{0x4FFF, 0},
		{0x7FFF, 0},
		{0x8000, stun.CodeBadRequest},
		{0xFFFF, stun.CodeBadRequest},
	} {
		resp := c.roundTrip(t, signed(channelBind(tc.number, fmt.Sprintf("127.0.0.2:%d", 1000+i))...)...)
		if got := errorCode(resp); got != tc.code || (tc.code == 0 && resp.Type.Class != stun.ClassSuccessResponse) {
			t.Errorf("ChannelBind %#04x: got %v (code %d), want code %d", tc.number, resp.Type, got, tc.code)
		}
	}
}

// TestPeerLimitBurst: requests wait in a queue for pion, so a burst sent without waiting
// for answers must not pass the limit by each being checked against the same count.
func TestPeerLimitBurst(t *testing.T) {
	const limit, burst = 4, 40
	s := limitedServer(t, 45370, 45379, Limits{Permissions: limit, Channels: limit})
	c, signed := allocated(t, s, "udp")
	ids := map[[stun.TransactionIDSize]byte]bool{}
	for i := range burst {
		req := stun.MustBuild(append([]stun.Setter{stun.TransactionID},
			signed(peersAttr(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i), 1}), 9).String())...)...)...)
		ids[req.TransactionID] = true
		if _, err := c.conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	granted := 0
	for answered := 0; answered < burst; {
		m := &stun.Message{Raw: c.readMessage(t)}
		if m.Decode() != nil || !ids[m.TransactionID] {
			continue
		}
		answered++
		if m.Type.Class == stun.ClassSuccessResponse {
			granted++
		} else if code := errorCode(m); code != stun.CodeInsufficientCapacity {
			t.Fatalf("CreatePermission in a burst: code %d, want success or 508", code)
		}
	}
	if granted != limit {
		t.Fatalf("%d of a burst of %d CreatePermissions granted, want the limit %d", granted, burst, limit)
	}
	if n := len(s.Sessions()[0].Permissions); n != limit {
		t.Fatalf("the allocation has %d permissions, want %d", n, limit)
	}
}

// TestLifetimeCap: a LIFETIME over MaxLifetime, or none when pion's default is longer, is
// cut to it; shorter ones and 0 (delete) stand.
func TestLifetimeCap(t *testing.T) {
	const max = 30 * time.Second
	s := limitedServer(t, 45380, 45389, Limits{MaxLifetime: max})
	lifetime := func(d time.Duration) stun.Setter {
		return testkit.Attr(stun.AttrLifetime, binary.BigEndian.AppendUint32(nil, uint32(d/time.Second)))
	}
	granted := func(resp *stun.Message) time.Duration {
		v, err := resp.Get(stun.AttrLifetime)
		if resp.Type.Class != stun.ClassSuccessResponse || err != nil || len(v) != 4 {
			t.Fatalf("want a success response with LIFETIME, got %v", resp)
		}
		return time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	}
	c := dialCtl(t, "udp", s.Addrs()[0].String())
	signed := c.signer(t)
	if got := granted(c.roundTrip(t, signed(append(append([]stun.Setter{}, allocateUDP...), lifetime(50*time.Minute))...)...)); got != max {
		t.Fatalf("Allocate asking 50m got %s, want %s", got, max)
	}
	refresh := stun.NewType(stun.MethodRefresh, stun.ClassRequest)
	for _, tc := range []struct {
		ask  []stun.Setter
		want time.Duration
	}{
		{nil, max}, // pion's default is 10 minutes
		{[]stun.Setter{lifetime(10 * time.Second)}, 10 * time.Second},
		{[]stun.Setter{lifetime(2 * time.Hour)}, max}, // pion alone would give its default
	} {
		if got := granted(c.roundTrip(t, signed(append([]stun.Setter{refresh}, tc.ask...)...)...)); got != tc.want {
			t.Fatalf("Refresh %v got %s, want %s", tc.ask, got, tc.want)
		}
	}
	if resp := c.roundTrip(t, signed(refresh, lifetime(0))...); resp.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Refresh 0: %v", resp)
	}
	if n := s.Allocations(); n != 0 {
		t.Fatalf("%d allocations after Refresh 0", n)
	}
}

// TestWithLifetime: the rebuilt request keeps every attribute before MESSAGE-INTEGRITY,
// has the new LIFETIME, and valid MESSAGE-INTEGRITY and FINGERPRINT.
func TestWithLifetime(t *testing.T) {
	key := stun.NewLongTermIntegrity(user, realm, password)
	for _, tc := range []struct {
		name        string
		setters     []stun.Setter
		fingerprint bool
	}{
		{"lifetime and fingerprint", []stun.Setter{testkit.Attr(stun.AttrLifetime, []byte{0, 0, 0x1c, 0x20}), key, stun.Fingerprint}, true},
		{"no lifetime, no fingerprint", []stun.Setter{key}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
				stun.NewUsername(user), stun.NewRealm(realm), stun.NewNonce("n")}, tc.setters...)...)
			raw, err := withLifetime(in, 42*time.Second, key)
			if err != nil {
				t.Fatal(err)
			}
			out := &stun.Message{Raw: raw}
			if err := out.Decode(); err != nil {
				t.Fatal(err)
			}
			if err := key.Check(out); err != nil {
				t.Fatalf("MESSAGE-INTEGRITY: %v", err)
			}
			if err := stun.Fingerprint.Check(out); (err == nil) != tc.fingerprint {
				t.Fatalf("FINGERPRINT check %v, want present: %v", err, tc.fingerprint)
			}
			var username stun.Username
			if username.GetFrom(out) != nil || username.String() != user || out.TransactionID != in.TransactionID || out.Type != in.Type {
				t.Fatalf("rebuilt %v lost the request's identity", out)
			}
			if v, _ := out.Get(stun.AttrLifetime); binary.BigEndian.Uint32(v) != 42 {
				t.Fatalf("LIFETIME %x, want 42 s", v)
			}
		})
	}
}

// TestAllocateTimeout: a TCP connection without an allocation is closed after
// AllocateTimeout; one with an allocation stays open past it, until the allocation ends.
func TestAllocateTimeout(t *testing.T) {
	const timeout = time.Second
	s := limitedServer(t, 45390, 45399, Limits{AllocateTimeout: timeout})

	idle := dialCtl(t, "tcp", s.Addrs()[1].String())
	start := time.Now()
	if waited := closedWithin(t, idle.conn, 5*time.Second); waited < timeout-100*time.Millisecond {
		t.Fatalf("idle connection closed after %s, before the %s timeout", time.Since(start), timeout)
	}

	c, signed := allocated(t, s, "tcp")
	time.Sleep(2 * timeout)
	refresh := stun.NewType(stun.MethodRefresh, stun.ClassRequest)
	if resp := c.roundTrip(t, signed(refresh)...); resp.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Refresh on a connection with an allocation, past the timeout: %v", resp)
	}
	if resp := c.roundTrip(t, signed(refresh, testkit.Attr(stun.AttrLifetime, []byte{0, 0, 0, 0}))...); resp.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Refresh 0: %v", resp)
	}
	closedWithin(t, c.conn, 5*time.Second)
}

// closedWithin waits for the server to close conn and returns how long that took.
func closedWithin(t *testing.T, conn net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(limit))
	for {
		_, err := conn.Read(make([]byte, 1500))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection still open after %s", limit)
		}
		if err != nil {
			return time.Since(start)
		}
	}
}

// TestAnswerRates: Binding answers are capped by BindingRate, and 400 answers (credentials
// incomplete) by UnauthenticatedRate; the drops are counted.
func TestAnswerRates(t *testing.T) {
	const rate, sent = 3, 30
	s := limitedServer(t, 45400, 45409, Limits{BindingRate: rate, UnauthenticatedRate: rate})
	incomplete := []stun.Setter{stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.NewUsername(user),
		stun.NewLongTermIntegrity(user, realm, password)} // no REALM, no NONCE: 400
	for _, tc := range []struct {
		name    string
		setters []stun.Setter
		dropped func() uint64
	}{
		{"binding", []stun.Setter{stun.BindingRequest}, s.meters.bindingDropped.Get},
		{"bad request", incomplete, s.meters.unauthDropped.Get},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialCtl(t, "udp", s.Addrs()[0].String()).conn
			for range sent {
				req := stun.MustBuild(append([]stun.Setter{stun.TransactionID}, tc.setters...)...)
				if _, err := conn.Write(req.Raw); err != nil {
					t.Fatal(err)
				}
			}
			answers := 0
			for {
				_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				if _, err := conn.Read(make([]byte, 1500)); err != nil {
					break
				}
				answers++
			}
			// A burst of 3, then 3 a second: the requests take far less than a second.
			if answers < rate || answers > rate+2 {
				t.Fatalf("%d answers to %d requests at %d/s", answers, sent, rate)
			}
			if got := tc.dropped(); got != uint64(sent-answers) {
				t.Fatalf("%d counted dropped, want %d", got, sent-answers)
			}
		})
	}
}

// TestAnnouncedFrames: connections announcing 64 KiB frames and sending none of it cost
// the server no 64 KiB buffers.
func TestAnnouncedFrames(t *testing.T) {
	const conns = 100
	s := limitedServer(t, 45410, 45419, Limits{AllocateTimeout: time.Minute})
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for range conns {
		c := dialCtl(t, "tcp", s.Addrs()[1].String())
		if _, err := c.conn.Write([]byte{0x40, 0x00, 0xff, 0xff, 1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
	}
	// The server has read the headers once a Binding on a new connection is answered.
	dialCtl(t, "tcp", s.Addrs()[1].String()).roundTrip(t, stun.BindingRequest)
	time.Sleep(100 * time.Millisecond)
	grown := int64(heap()) - int64(before)
	// Each connection's reader (4 KiB) and first frame chunk (2 KiB) and pion's read
	// buffer are expected; 64 KiB frames would be 6.4 MB.
	if perConn := grown / conns; perConn > 16<<10 {
		t.Fatalf("heap grew %d bytes per connection announcing a 64 KiB frame", perConn)
	}
	t.Logf("heap grew %d bytes per connection", grown/conns)
}

// TestStreamRefusedOverRate: over TCP, a request the unauthenticated rate leaves
// unanswered closes the connection, whose client would otherwise wait forever (it does not
// retransmit); the answers within the rate come first.
func TestStreamRefusedOverRate(t *testing.T) {
	const rate = 3
	s := limitedServer(t, 45420, 45429, Limits{UnauthenticatedRate: rate})
	c := dialCtl(t, "tcp", s.Addrs()[1].String())
	for range 2 * rate {
		if _, err := c.conn.Write(stun.MustBuild(append([]stun.Setter{stun.TransactionID}, allocateUDP...)...).Raw); err != nil {
			break // closed already
		}
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	answers := 0
	hdr := make([]byte, stunHeaderSize)
	for {
		if _, err := io.ReadFull(c.conn, hdr); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open after %d answers to %d requests at %d/s", answers, 2*rate, rate)
			}
			break
		}
		if _, err := io.ReadFull(c.conn, make([]byte, binary.BigEndian.Uint16(hdr[2:4]))); err != nil {
			t.Fatal(err)
		}
		answers++
	}
	if answers != rate {
		t.Fatalf("%d answers before the close, want %d", answers, rate)
	}
}
