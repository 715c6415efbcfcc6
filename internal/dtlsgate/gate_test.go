package dtlsgate

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
)

// counts records the gate's events.
type counts struct {
	helloVerify, started atomic.Int64
	refused              [Refusals]atomic.Int64
	ended                [Results]atomic.Int64
	dropped              [Drops]atomic.Int64
}

func (c *counts) HelloVerify()            { c.helloVerify.Add(1) }
func (c *counts) Refused(r Refusal)       { c.refused[r].Add(1) }
func (c *counts) HandshakeStarted()       { c.started.Add(1) }
func (c *counts) HandshakeEnded(r Result) { c.ended[r].Add(1) }
func (c *counts) Dropped(d Drop)          { c.dropped[d].Add(1) }

// gateConfig is what a test changes of a gate's config.
type gateConfig struct {
	limits                 Limits
	timeout, cookieTimeout time.Duration
}

var defaults = gateConfig{timeout: 10 * time.Second, cookieTimeout: 10 * time.Second}

// newGate starts a gate on 127.0.0.1 with a self-signed certificate, closed when the test
// ends.
func newGate(t *testing.T, gc gateConfig) (*Listener, *counts) {
	t.Helper()
	return newGateOn(t, "127.0.0.1", gc)
}

func newGateOn(t *testing.T, ip string, gc gateConfig) (*Listener, *counts) {
	t.Helper()
	sock, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	c := &counts{}
	l, err := New(sock, Config{
		Options: []dtls.ServerOption{dtls.WithCertificates(cert)},
		Limits:  func() Limits { return gc.limits },
		Timeout: gc.timeout, CookieTimeout: gc.cookieTimeout, Events: c,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, c
}

// table returns the gate's peers, handshakes in progress and IPs with handshakes.
func (l *Listener) table() (peers, handshaking, ips int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.peers), l.handshaking, len(l.perIP)
}

func (l *Listener) wantTable(t *testing.T, peers, handshaking, ips int) {
	t.Helper()
	waitFor(t, "the gate's table", func() bool {
		p, h, i := l.table()
		return p == peers && h == handshaking && i == ips
	})
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// client is a raw UDP socket on ip talking to the gate.
type client struct {
	t    *testing.T
	conn *net.UDPConn
	gate netip.AddrPort
}

func newClient(t *testing.T, l *Listener, ip string) *client {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &client{t: t, conn: conn, gate: l.Addr().(*net.UDPAddr).AddrPort()}
}

func (c *client) send(b []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(b, c.gate); err != nil {
		c.t.Fatal(err)
	}
}

// receive returns the next datagram from the gate, within 5 s.
func (c *client) receive() []byte {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, maxDatagram)
	n, err := c.conn.Read(b)
	if err != nil {
		c.t.Fatalf("reading from the gate: %v", err)
	}
	return b[:n]
}

// cookie reads a HelloVerifyRequest and returns its cookie.
func (c *client) cookie() []byte {
	c.t.Helper()
	b := c.receive()
	r, _, ok := nextRecord(b)
	if !ok {
		c.t.Fatalf("not a DTLS record: %x", b)
	}
	f, ok := parseFragment(r.fragment)
	body := f.body
	if !ok || f.typ != typeHelloVerifyRequest || len(body) != f.length || len(body) < 3 || len(body) < 3+int(body[2]) {
		c.t.Fatalf("not a HelloVerifyRequest: %x", b)
	}
	return body[3 : 3+int(body[2])]
}

// clientHello builds a ClientHello pion accepts: message and record sequence number seq,
// with cookie, offering ECDHE-ECDSA with AES-128-GCM on P-256.
func clientHello(seq uint16, cookie []byte) []byte {
	return handshakeRecord(typeClientHello, seq, helloBody(cookie))
}

func helloBody(cookie []byte) []byte {
	body := append([]byte{0xfe, 0xfd}, make([]byte, 32)...) // client_version, random
	body = append(body, 0, byte(len(cookie)))               // no session ID, the cookie
	body = append(body, cookie...)
	body = append(body, 0, 2, 0xc0, 0x2b, 1, 0) // one cipher suite, null compression
	ext := []byte{
		0x00, 0x0a, 0, 4, 0, 2, 0, 0x17, // supported_groups: secp256r1
		0x00, 0x0b, 0, 2, 1, 0, // ec_point_formats: uncompressed
		0x00, 0x0d, 0, 4, 0, 2, 0x04, 0x03, // signature_algorithms: ecdsa_secp256r1_sha256
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
	return append(body, ext...)
}

// handshakeRecord wraps a whole handshake message in an epoch-0 record.
func handshakeRecord(typ byte, seq uint16, body []byte) []byte {
	return fragmentRecord(typ, seq, seq, len(body), 0, body)
}

// fragmentRecord wraps the part of a handshake message of length that starts at offset
// in an epoch-0 record with sequence number recSeq.
func fragmentRecord(typ byte, seq, recSeq uint16, length, offset int, part []byte) []byte {
	u24 := func(n int) []byte { return []byte{byte(n >> 16), byte(n >> 8), byte(n)} }
	msg := append([]byte{typ}, u24(length)...)
	msg = append(append(msg, byte(seq>>8), byte(seq)), u24(offset)...)
	msg = append(append(msg, u24(len(part))...), part...)
	rec := []byte{contentHandshake, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, byte(recSeq >> 8), byte(recSeq)}
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(msg)))
	return append(rec, msg...)
}

// TestPionClient: pion's client completes a handshake through the gate, after a
// HelloVerifyRequest, over IPv4 and IPv6; the connection carries data both ways, and
// closing it frees its peer.
func TestPionClient(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) { testPionClient(t, ip) })
	}
}

func testPionClient(t *testing.T, ip string) {
	l, c := newGateOn(t, ip, defaults)
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := l.Accept()
		if err == nil {
			accepted <- conn
		}
		close(accepted)
	}()
	cconn := dialPion(t, l)
	sconn := <-accepted
	if sconn == nil {
		t.Fatal("Accept failed")
	}
	if _, err := cconn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := sconn.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("server read %q, %v; want ping", buf[:n], err)
	}
	if _, err := sconn.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if n, err := cconn.Read(buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("client read %q, %v; want pong", buf[:n], err)
	}
	if c.helloVerify.Load() == 0 || c.started.Load() != 1 || c.ended[HandshakeOK].Load() != 1 {
		t.Fatalf("%d HelloVerifyRequests, %d handshakes started, %d ok; want at least 1, 1, 1",
			c.helloVerify.Load(), c.started.Load(), c.ended[HandshakeOK].Load())
	}
	l.wantTable(t, 1, 0, 0) // established: a peer, no handshake in progress
	_ = sconn.Close()
	l.wantTable(t, 0, 0, 0)
}

// dialPion handshakes with the gate as pion's client, which the test closes at its end.
func dialPion(t *testing.T, l *Listener) *dtls.Conn {
	t.Helper()
	conn, err := dtls.DialWithOptions("udp", l.Addr().(*net.UDPAddr), dtls.WithInsecureSkipVerify(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return conn
}

// TestCookielessHello: a ClientHello without a cookie is answered with a
// HelloVerifyRequest; a client that never returns the cookie (a spoofed source) holds its
// peer for the cookie timeout only.
func TestCookielessHello(t *testing.T) {
	gc := defaults
	gc.cookieTimeout = 300 * time.Millisecond
	l, c := newGate(t, gc)
	cl := newClient(t, l, "127.0.0.1")
	cl.send(clientHello(0, nil))
	if cookie := cl.cookie(); len(cookie) == 0 {
		t.Fatal("HelloVerifyRequest with an empty cookie")
	}
	if c.helloVerify.Load() != 1 {
		t.Fatalf("%d HelloVerifyRequests counted, want 1", c.helloVerify.Load())
	}
	l.wantTable(t, 0, 0, 0)
	if got := c.ended[HandshakeCookieTimeout].Load(); got != 1 {
		t.Fatalf("%d handshakes ended for want of the cookie, want 1", got)
	}
}

// TestUnknownSources: from a source with no peer, only a ClientHello that can open a
// handshake makes one; the rest is dropped and counted, and leaves nothing behind.
func TestUnknownSources(t *testing.T) {
	l, c := newGate(t, defaults)
	hello := clientHello(0, nil)
	body := helloBody(nil)
	withSeq := clientHello(1, nil)
	epoch1 := append([]byte(nil), hello...)
	epoch1[4] = 1
	bad := map[string][]byte{
		"garbage":                    []byte("GET / HTTP/1.1\r\n\r\n"),
		"a truncated ClientHello":    hello[:len(hello)-5],
		"a forged cookie":            clientHello(1, []byte("0123456789abcdef0123")),
		"a ClientHello of seq 1":     withSeq,
		"a later fragment":           fragmentRecord(typeClientHello, 0, 0, len(body), 10, body[10:]),
		"a first fragment too short": fragmentRecord(typeClientHello, 0, 0, len(body), 0, body[:helloFixedLen]),
		"a fragment past its length": fragmentRecord(typeClientHello, 0, 0, 10, 0, body[:20]),
		"a record of epoch 1":        epoch1,
		"an empty datagram":          {},
		"a ServerHello":              handshakeRecord(typeServerHello, 0, make([]byte, 40)),
		"a header and nothing after": hello[:recordHeaderLen],
	}
	cl := newClient(t, l, "127.0.0.1")
	for _, b := range bad {
		cl.send(b)
	}
	waitFor(t, "every datagram dropped", func() bool { return c.dropped[DroppedUnknown].Load() == int64(len(bad)) })
	if c.started.Load() != 0 {
		t.Fatalf("%d handshakes started, want none", c.started.Load())
	}
	l.wantTable(t, 0, 0, 0)
}

// TestFragmentedHello: a ClientHello in two fragments, each in a datagram of its own,
// makes a peer with its first and gets its HelloVerifyRequest once whole.
func TestFragmentedHello(t *testing.T) {
	l, c := newGate(t, defaults)
	cl := newClient(t, l, "127.0.0.1")
	body := helloBody(nil)
	cl.send(fragmentRecord(typeClientHello, 0, 0, len(body), 0, body[:60]))
	cl.send(fragmentRecord(typeClientHello, 0, 1, len(body), 60, body[60:]))
	if len(cl.cookie()) == 0 || c.started.Load() != 1 {
		t.Fatalf("%d handshakes started, want 1 with a cookie", c.started.Load())
	}
}

// TestOtherVersion: pion refuses a DTLS 1.0 ClientHello with an alert, and the peer made
// for it is gone at once.
func TestOtherVersion(t *testing.T) {
	l, c := newGate(t, defaults)
	cl := newClient(t, l, "127.0.0.1")
	body := helloBody(nil)
	body[1] = 0xff // client_version DTLS 1.0
	cl.send(handshakeRecord(typeClientHello, 0, body))
	if r, _, ok := nextRecord(cl.receive()); !ok || r.contentType != 21 {
		t.Fatal("no alert for a DTLS 1.0 ClientHello")
	}
	l.wantTable(t, 0, 0, 0)
	if got := c.ended[HandshakeFailed].Load(); got != 1 {
		t.Fatalf("%d handshakes failed, want 1", got)
	}
}

// TestForgedCookie: a peer that returns a cookie other than the one pion sent fails its
// handshake and is freed; the right cookie after that finds no peer and is dropped.
func TestForgedCookie(t *testing.T) {
	l, c := newGate(t, defaults)
	cl := newClient(t, l, "127.0.0.1")
	cl.send(clientHello(0, nil))
	cookie := cl.cookie()
	forged := append([]byte(nil), cookie...)
	forged[0] ^= 0xff
	cl.send(clientHello(1, forged))
	l.wantTable(t, 0, 0, 0)
	if got := c.ended[HandshakeFailed].Load(); got != 1 {
		t.Fatalf("%d handshakes failed, want 1", got)
	}
	cl.send(clientHello(1, cookie))
	waitFor(t, "the late cookie dropped", func() bool { return c.dropped[DroppedUnknown].Load() == 1 })
	l.wantTable(t, 0, 0, 0)
}

// TestHandshakeTimeout: a client that returns its cookie and then stalls holds its peer
// until the handshake timeout, not longer.
func TestHandshakeTimeout(t *testing.T) {
	gc := defaults
	gc.timeout = 500 * time.Millisecond
	l, c := newGate(t, gc)
	cl := newClient(t, l, "127.0.0.1")
	cl.send(clientHello(0, nil))
	cl.send(clientHello(1, cl.cookie()))
	if r, _, ok := nextRecord(cl.receive()); !ok || r.fragment[0] != typeServerHello {
		t.Fatal("no ServerHello after the cookie")
	}
	l.wantTable(t, 0, 0, 0)
	if got := c.ended[HandshakeTimeout].Load(); got != 1 {
		t.Fatalf("%d handshakes timed out, want 1", got)
	}
}

// TestPerIPCap: handshakes in progress from one IP stop at the cap; another IP still gets
// in, and the IP gets in again once its handshakes are gone.
func TestPerIPCap(t *testing.T) {
	const perIP = 3
	gc := defaults
	gc.limits.HandshakesPerIP = perIP
	gc.cookieTimeout = 300 * time.Millisecond
	l, c := newGate(t, gc)
	for range perIP + 2 {
		newClient(t, l, "127.0.0.1").send(clientHello(0, nil))
	}
	waitFor(t, "the ClientHellos seen", func() bool { return c.started.Load()+c.refused[RefusedPerIP].Load() == perIP+2 })
	if c.started.Load() != perIP {
		t.Fatalf("%d handshakes from one IP, want the cap %d", c.started.Load(), perIP)
	}
	newClient(t, l, "127.0.0.2").send(clientHello(0, nil))
	waitFor(t, "another IP admitted", func() bool { return c.started.Load() == perIP+1 })
	l.wantTable(t, 0, 0, 0) // the cookie timeout frees them all
	newClient(t, l, "127.0.0.1").send(clientHello(0, nil))
	waitFor(t, "the IP admitted again", func() bool { return c.started.Load() == perIP+2 })
}

// TestTotalCap: handshakes in progress stop at the cap whatever their IPs.
func TestTotalCap(t *testing.T) {
	const total = 4
	gc := defaults
	gc.limits = Limits{Handshakes: total, HandshakesPerIP: 2}
	l, c := newGate(t, gc)
	for i := range total + 3 {
		newClient(t, l, netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)}).String()).send(clientHello(0, nil))
	}
	waitFor(t, "the ClientHellos seen", func() bool { return c.started.Load()+c.refused[RefusedTotal].Load() == total+3 })
	if c.started.Load() != total {
		t.Fatalf("%d handshakes, want the cap %d", c.started.Load(), total)
	}
	l.wantTable(t, total, total, total)
}

// TestQueueFull: a peer whose reader is behind drops what does not fit its queue, and
// its Close gives the queued buffers back.
func TestQueueFull(t *testing.T) {
	l, _ := newGate(t, defaults)
	p := newPeer(l, netip.MustParseAddrPort("127.0.0.1:9"))
	for i := range queueLen {
		if !p.deliver([]byte{byte(i)}) {
			t.Fatalf("datagram %d dropped, queue holds %d", i, queueLen)
		}
	}
	if p.deliver([]byte{1}) {
		t.Fatal("a datagram past the queue was taken")
	}
	_ = p.Close()
	if len(p.in) != 0 || p.deliver([]byte{1}) {
		t.Fatal("a closed peer keeps or takes datagrams")
	}
	if _, _, err := p.ReadFrom(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed peer: %v, want net.ErrClosed", err)
	}
}

// TestClose: Close ends a handshake in progress and an accepted connection's reads,
// Accept returns net.ErrClosed, and every goroutine of the gate is gone.
func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	l, _ := newGate(t, defaults)
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, _ := l.Accept()
		accepted <- conn
	}()
	client := dialPion(t, l)
	sconn := <-accepted
	half := newClient(t, l, "127.0.0.1")
	half.send(clientHello(0, nil))
	half.cookie()
	l.wantTable(t, 2, 1, 1)

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if _, err := sconn.Read(make([]byte, 8)); err == nil {
		t.Fatal("an accepted connection still reads after Close")
	}
	l.wantTable(t, 0, 0, 0)
	_ = sconn.Close()
	_ = client.Close()
	waitFor(t, "the goroutines gone", func() bool { return runtime.NumGoroutine() <= before })
}
