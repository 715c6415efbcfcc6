package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// transportSetup is a server with one listener of every kind on 127.0.0.1, a self-signed
// certificate for tls and dtls, and loopback peers allowed.
func transportSetup(t *testing.T) (s *setup, addrs map[string]string, roots *x509.CertPool) {
	t.Helper()
	// coturn's client reserves a port with EVEN-PORT per run and claims it only sometimes:
	// each reservation holds its port for 30 seconds.
	s, port := newSetup(t, 40)
	s.allowPeers = []string{"127.0.0.1/32"}
	cert, key := testkit.WriteCert(t, t.TempDir(), "ferry")
	securePort := freePort(t, "127.0.0.1")
	addrs = map[string]string{
		"udp":  addrString("127.0.0.1", port),
		"tcp":  addrString("127.0.0.1", port),
		"tls":  addrString("127.0.0.1", securePort),
		"dtls": addrString("127.0.0.1", securePort),
	}
	s.listeners = append(s.listeners,
		listenSpec{proto: "tls", addr: addrs["tls"], cert: cert, key: key},
		listenSpec{proto: "dtls", addr: addrs["dtls"], cert: cert, key: key})
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return s, addrs, roots
}

// dialTransport opens the client side of one listener kind as the net.PacketConn pion's
// TURN client wants.
func dialTransport(t *testing.T, proto, addr string, roots *x509.CertPool) net.PacketConn {
	t.Helper()
	switch proto {
	case "udp":
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return pc
	case "tcp":
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return turn.NewSTUNConn(conn)
	case "tls":
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		return turn.NewSTUNConn(conn)
	case "dtls":
		raddr, _ := net.ResolveUDPAddr("udp", addr)
		conn, err := dtls.DialWithOptions("udp", raddr, dtls.WithRootCAs(roots))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := conn.HandshakeContext(ctx); err != nil {
			t.Fatalf("dtls handshake: %v", err)
		}
		return turn.NewSTUNConn(conn)
	}
	t.Fatalf("unknown proto %s", proto)
	return nil
}

func turnClient(t *testing.T, conn net.PacketConn, addr, user, pass string, family turn.RequestedAddressFamily) *turn.Client {
	t.Helper()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, Realm: testRealm,
		RequestedAddressFamily: family, LoggerFactory: lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	return c
}

// TestTransports relays UDP through an allocation made over each client transport with
// pion's TURN client: the first packets go as Send indications, the rest over the channel
// the client binds.
func TestTransports(t *testing.T) {
	s, addrs, roots := transportSetup(t)
	startFerry(t, s.toml())
	peer := udpPeer(t, "127.0.0.1")
	for _, proto := range []string{"udp", "tcp", "tls", "dtls"} {
		t.Run(proto, func(t *testing.T) {
			c := turnClient(t, dialTransport(t, proto, addrs[proto], roots), addrs[proto], testUser, testPass, turn.RequestedAddressFamilyIPv4)
			relayConn, err := c.Allocate()
			if err != nil {
				t.Fatalf("Allocate over %s: %v", proto, err)
			}
			defer relayConn.Close()
			echoAll(t, relayConn, net.UDPAddrFromAddrPort(peer), 30)
			// The metrics and the sessions list name the listener the allocation came through.
			labels := fmt.Sprintf(`{transport=%q,family="ipv4"}`, proto)
			scrape(t, s.metricsAddr).want(t, "ferry_allocations_active"+labels, 1)
			if got := sessionsJSON(t, s); len(got) != 1 || got[0].Transport != proto {
				t.Fatalf("sessions %+v, want one over %s", got, proto)
			}
		})
	}
}

// echoAll sends n numbered packets to an echo peer through relayConn and expects each back;
// a packet is retried a few times before the test fails (UDP may drop, even on loopback).
func echoAll(t *testing.T, relayConn net.PacketConn, peer net.Addr, n int) {
	t.Helper()
	buf := make([]byte, 1500)
	for i := range n {
		want := fmt.Sprintf("packet %d", i)
		got := false
		for try := 0; try < 3 && !got; try++ {
			if _, err := relayConn.WriteTo([]byte(want), peer); err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			_ = relayConn.SetReadDeadline(time.Now().Add(2 * time.Second))
			for {
				m, from, err := relayConn.ReadFrom(buf)
				if err != nil {
					break
				}
				if string(buf[:m]) == want && from.String() == peer.String() {
					got = true
					break
				}
			}
		}
		if !got {
			t.Fatalf("packet %d did not come back", i)
		}
	}
}

// TestTCPAllocation covers RFC 6062 with pion's client: a connection to a TCP peer through
// Connect/ConnectionBind, and a peer connecting to the relayed address.
func TestTCPAllocation(t *testing.T) {
	s, addrs, _ := transportSetup(t)
	startFerry(t, s.toml())

	peerLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerLn.Close()
	go func() {
		for {
			conn, err := peerLn.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(conn, conn); conn.Close() }()
		}
	}()

	conn, err := net.Dial("tcp", addrs["tcp"])
	if err != nil {
		t.Fatal(err)
	}
	c := turnClient(t, turn.NewSTUNConn(conn), addrs["tcp"], testUser, testPass, turn.RequestedAddressFamilyIPv4)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	defer alloc.Close()

	out, err := alloc.Dial("tcp", peerLn.Addr().String())
	if err != nil {
		t.Fatalf("Dial through the TCP allocation: %v", err)
	}
	defer out.Close()
	expectEcho(t, out, "hello over RFC 6062")

	// Inbound: the peer connects to the relayed address and the client accepts.
	relayed := alloc.Addr().(*net.TCPAddr)
	if err := c.CreatePermission(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatalf("CreatePermission: %v", err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		in, err := alloc.Accept()
		if err == nil {
			accepted <- in
		}
	}()
	peerConn, err := net.DialTimeout("tcp", relayed.String(), 3*time.Second)
	if err != nil {
		t.Fatalf("peer dialling the relayed address %v: %v", relayed, err)
	}
	defer peerConn.Close()
	var in net.Conn
	select {
	case in = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not get the inbound connection")
	}
	defer in.Close()
	if _, err := peerConn.Write([]byte("from the peer")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = in.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := io.ReadAtLeast(in, buf, len("from the peer"))
	if err != nil || string(buf[:n]) != "from the peer" {
		t.Fatalf("client read %q, %v", buf[:n], err)
	}
}

func expectEcho(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: got %q, %v", buf, err)
	}
}

// TestIPv6Relay allocates an IPv6 relay (RFC 6156) on [::1] and relays to an IPv6 peer.
func TestIPv6Relay(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("SKIPPED LOUDLY: this machine has no IPv6 loopback (%v)", err)
	} else {
		ln.Close()
	}
	s, _ := newSetup(t, 10)
	port := freePort(t, "::1")
	s.listeners = []listenSpec{{proto: "udp", addr: addrString("::1", port)}}
	s.bindIP6 = "::1"
	s.allowPeers = []string{"::1/128"}
	startFerry(t, s.toml())

	peer := udpPeer(t, "::1")
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	server := addrString("::1", port)
	c := turnClient(t, pc, server, testUser, testPass, turn.RequestedAddressFamilyIPv6)
	relayConn, err := c.Allocate()
	if err != nil {
		t.Fatalf("IPv6 Allocate: %v", err)
	}
	defer relayConn.Close()
	relayed := relayConn.LocalAddr().(*net.UDPAddr)
	if !relayed.IP.Equal(net.IPv6loopback) || relayed.Port < s.minPort || relayed.Port > s.maxPort {
		t.Fatalf("relayed address %v, want [::1] with a pool port", relayed)
	}
	echoAll(t, relayConn, net.UDPAddrFromAddrPort(peer), 10)
}

// TestMalformedInput throws garbage at every listener kind and checks Ferry keeps serving
// (and, at stop, that nothing panicked or raced).
func TestMalformedInput(t *testing.T) {
	s, port := newSetup(t, 4)
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)

	garbage := [][]byte{
		{},
		{0x00},
		{0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42},                                                                    // truncated STUN header
		append([]byte{0x00, 0x01, 0xff, 0xf0, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...),                                 // length beyond the datagram
		append([]byte{0x00, 0x03, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42}, append(make([]byte, 12), 0x00, 0x08, 0x00, 0x40)...), // attribute longer than the message
		{0x40, 0x00, 0x00, 0x10, 1, 2}, // ChannelData shorter than its length
		{0x7f, 0xff, 0x00, 0x00},       // ChannelData on an unbound channel
		bytes1500(0xee),                // oversized junk
		append([]byte{0x01, 0x01}, bytes1500(0)[:30]...),
	}
	udp, err := net.Dial("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, g := range garbage {
		_, _ = udp.Write(g)
	}
	for _, g := range garbage {
		tcp, err := net.Dial("tcp", server)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = tcp.Write(g)
		_ = tcp.Close()
	}
	// Ferry still answers on both transports, and a normal client still allocates.
	for _, network := range []string{"udp", "tcp"} {
		c := dialRaw(t, network, server, testUser, testPass)
		c.allocate()
	}
}

func bytes1500(b byte) []byte {
	out := make([]byte, 1500)
	for i := range out {
		out[i] = b
	}
	return out
}

// TestZeroConfig runs "ferry serve" with no config: it must print a usable iceServers
// credential and the SFU demo page with tokens. The default advertises the machine's
// address, so the test runs in a namespace world of its own where that is a veth address
// (worldHostIP) and the default's fixed ports are the world's.
func TestZeroConfig(t *testing.T) {
	if !netnsReexec(t) {
		return
	}
	addHostAddress(newNetnsWorld(t), worldHostIP)
	f := startFerry(t, "")
	// stdout and stderr are separate pipes: the banner may reach us after the log line.
	var ice zeroConfig
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ice = parseZeroConfig(f.stdout.String()); ice.stun != "" && ice.turnUDP != "" {
			break
		}
	}
	if ice.stun == "" || ice.turnUDP == "" {
		t.Fatalf("zero-config output lacks stun: or turn:?transport=udp URLs:\n%s", f.stdout.String())
	}
	waitFor(t, "the demo page URL", func() bool {
		return strings.Contains(f.stdout.String(), ":8080/?room=demo&pub=ey") && strings.Contains(f.stdout.String(), "&sub=ey")
	})
	c := dialRaw(t, "udp", "127.0.0.1:3478", ice.username, ice.credential)
	relayed := c.allocate()
	if relayed.Addr().String() != ice.host {
		t.Errorf("relayed address %v, want the advertised host %s", relayed, ice.host)
	}
	mustSucceed(t, "CreatePermission", c.request(stun.MethodCreatePermission, testkit.PeerAddr(netip.MustParseAddrPort("198.51.100.7:5000"))))
	mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
	if _, err := os.Stat(filepath.Join(f.dir, "users.toml")); err == nil {
		t.Errorf("zero-config start wrote a users file")
	}
	// The self-test reaches the detected address (see TestSelfTestPublicIP).
	f.waitLog(t, `msg="self-test passed`, 1)
	if line := selfTestLine(f.stderr.String()); !strings.Contains(line, "listen[0] (udp) at "+worldHostIP+":3478") {
		t.Errorf("the self-test did not reach the listener at the detected address:\n%s", line)
	}
}

// zeroConfig is what "ferry serve" prints without a config.
type zeroConfig struct {
	stun, turnUDP        string
	host                 string
	username, credential string
}

func parseZeroConfig(stdout string) zeroConfig {
	var out zeroConfig
	for _, line := range lines(stdout) {
		var doc struct {
			ICEServers []struct {
				URLs       []string `json:"urls"`
				Username   string   `json:"username"`
				Credential string   `json:"credential"`
			} `json:"iceServers"`
		}
		if json.Unmarshal([]byte(line), &doc) != nil {
			continue
		}
		for _, srv := range doc.ICEServers {
			for _, u := range srv.URLs {
				switch {
				case strings.HasPrefix(u, "stun:"):
					out.stun = u
					out.host, _, _ = net.SplitHostPort(strings.TrimPrefix(u, "stun:"))
				case strings.HasPrefix(u, "turn:") && strings.HasSuffix(u, "?transport=udp"):
					out.turnUDP = u
					out.username, out.credential = srv.Username, srv.Credential
				}
			}
		}
	}
	return out
}
