package test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// natTURNPort is Ferry's listener in the NAT world (the world is the test's own, so the
// standard port is free).
const natTURNPort = 3478

// TestNAT: two clients, each in a namespace of its own behind a masquerading router, with
// Ferry on the "internet" (see newNATWorld). They cannot reach each other directly — not at
// the other's LAN address, and not at the public address and port the other's NAT mapped
// for it — and they do through Ferry's TURN: each allocates a relay, B permits A's relayed
// address, A sends numbered packets to B's relayed address and B echoes them back, and
// the peer B sees is A's relayed address: the path is relay to relay.
func TestNAT(t *testing.T) {
	if !netnsReexec(t) {
		return
	}
	w := newNATWorld(t)
	s, turnAddr := natSetup(t)
	startFerry(t, s.toml())

	// The clients start (a second or two: each is this test binary again) while the direct
	// paths are tried.
	env := []string{"FERRY_NAT_TURN=" + turnAddr, "FERRY_NAT_USER=" + testUser, "FERRY_NAT_PASS=" + testPass}
	b := w.start(natClientB, "TestNATClient", append(env, "FERRY_NAT_ROLE=echo")...)
	a := w.start(natClientA, "TestNATClient", append(env, "FERRY_NAT_ROLE=send", "FERRY_NAT_COUNT=20")...)

	t.Run("direct", func(t *testing.T) { natNoDirectPath(t, w) })

	aRelayed := a.waitFor("relayed", 30*time.Second)
	bRelayed := b.waitFor("relayed", 30*time.Second)

	// Ferry sees each client as its router's public address (the NAT is in the path), and
	// hands out relayed addresses of its own.
	for _, c := range []struct {
		name, router       string
		mapped, relayed    string
		wantMapped, wantIP string
	}{
		{"A", natRouterA, a.waitFor("mapped", time.Second), aRelayed, natRouterAIP, natInternetIP},
		{"B", natRouterB, b.waitFor("mapped", time.Second), bRelayed, natRouterBIP, natInternetIP},
	} {
		mapped, err := netip.ParseAddrPort(c.mapped)
		if err != nil || mapped.Addr().String() != c.wantMapped {
			t.Fatalf("client %s: Ferry saw it as %q, want its router %s's address %s", c.name, c.mapped, c.router, c.wantMapped)
		}
		relayed, err := netip.ParseAddrPort(c.relayed)
		if err != nil || relayed.Addr().String() != c.wantIP || !s.inPool(relayed) {
			t.Fatalf("client %s: relayed address %q, want %s with a port of the pool %d-%d", c.name, c.relayed, c.wantIP, s.minPort, s.maxPort)
		}
	}

	b.send("permit " + aRelayed)
	b.waitFor("permitted", 10*time.Second)
	a.send("send " + bRelayed)
	if out, err := a.wait(30 * time.Second); err != nil {
		t.Fatalf("client A: %v\n%s", err, out)
	}
	if got, _ := a.report("received"); got != "20" {
		t.Fatalf("client A got %q packets back through the relays, want 20:\n%s", got, a.output())
	}
	b.send("quit")
	if out, err := b.wait(10 * time.Second); err != nil {
		t.Fatalf("client B: %v\n%s", err, out)
	}
	if peers, _ := b.report("peers"); peers != aRelayed {
		t.Fatalf("client B got packets from %q, want only from A's relayed address %s (relay to relay)", peers, aRelayed)
	}
}

// natSetup is a Ferry on the NAT world's "internet": one UDP listener and the relays on
// natInternetIP. allow_peers stays empty: the clients' LANs are not allowed.
func natSetup(t *testing.T) (s *setup, turnAddr string) {
	t.Helper()
	s, _ = newSetup(t, 20)
	turnAddr = addrString(natInternetIP, natTURNPort)
	s.listeners = []listenSpec{{proto: "udp", addr: turnAddr}}
	s.bindIP = natInternetIP
	return s, turnAddr
}

// natNoDirectPath shows that the NAT world has the paths it should: a client reaches the
// internet (as its router's address), but neither client reaches the other directly.
func natNoDirectPath(t *testing.T, w *netnsWorld) {
	const port = 40000
	listen := func(ns, ip string) *net.UDPConn {
		t.Helper()
		var conn *net.UDPConn
		if err := w.do(ns, func() (err error) {
			conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: port})
			return err
		}); err != nil {
			t.Fatalf("listen in %s: %v", ns, err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	aConn, bConn := listen(natClientA, natClientAIP), listen(natClientB, natClientBIP)

	// Control: A reaches a UDP echo on the internet, which sees A's router's address.
	echo, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(natInternetIP)})
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	seen := make(chan netip.AddrPort, 1)
	go func() {
		buf := make([]byte, 1500)
		n, from, err := echo.ReadFromUDPAddrPort(buf)
		if err == nil {
			seen <- from
			_, _ = echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	if _, err := aConn.WriteToUDP([]byte("hello internet"), echo.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	var aMapped netip.AddrPort
	select {
	case aMapped = <-seen:
	case <-time.After(3 * time.Second):
		t.Fatal("client A did not reach the internet through its router")
	}
	if aMapped.Addr().String() != natRouterAIP {
		t.Fatalf("the internet saw client A as %v, want its router's address %s", aMapped, natRouterAIP)
	}
	buf := make([]byte, 1500)
	_ = aConn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, _, err := aConn.ReadFromUDP(buf); err != nil || string(buf[:n]) != "hello internet" {
		t.Fatalf("client A: the echo's reply did not come back through the NAT: %q, %v", buf[:n], err)
	}

	// A to B's LAN address: the internet has no route to a private LAN. B to the public
	// address and port A's NAT just mapped: the mapping is for the echo only (masquerade
	// random, stateful filter), so nothing gets in.
	for range 3 {
		if _, err := aConn.WriteToUDP([]byte("direct A to B"), &net.UDPAddr{IP: net.ParseIP(natClientBIP), Port: port}); err != nil {
			t.Logf("A to B's LAN address: %v", err)
		}
		if _, err := bConn.WriteToUDPAddrPort([]byte("direct B to A"), aMapped); err != nil {
			t.Logf("B to A's public mapping: %v", err)
		}
		if _, err := bConn.WriteToUDP([]byte("direct B to A"), &net.UDPAddr{IP: net.ParseIP(natRouterAIP), Port: port}); err != nil {
			t.Logf("B to A's router: %v", err)
		}
	}
	var wg sync.WaitGroup
	for _, c := range []struct {
		name string
		conn *net.UDPConn
	}{{"client A", aConn}, {"client B", bConn}} {
		wg.Go(func() {
			buf := make([]byte, 1500)
			_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
			n, from, err := c.conn.ReadFromUDP(buf)
			var ne net.Error
			if err == nil {
				t.Errorf("%s received %q from %v directly; the NATs should have kept it out", c.name, buf[:n], from)
			} else if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("%s: %v", c.name, err)
			}
		})
	}
	wg.Wait()
}

// TestNATClient is a role of TestNAT, run by it in a client namespace: a TURN client over
// UDP that reports its server-reflexive ("mapped") and relayed addresses, then either echoes
// what reaches its relay after "permit ADDR" on stdin until "quit" (FERRY_NAT_ROLE=echo), or
// on "send ADDR" sends FERRY_NAT_COUNT numbered packets through its relay to ADDR and
// expects each back (FERRY_NAT_ROLE=send).
func TestNATClient(t *testing.T) {
	role := os.Getenv("FERRY_NAT_ROLE")
	if role == "" {
		t.Skip("a role of TestNAT, which runs it inside a client namespace")
	}
	server := os.Getenv("FERRY_NAT_TURN")
	conn, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	c := turnClient(t, conn, server, os.Getenv("FERRY_NAT_USER"), os.Getenv("FERRY_NAT_PASS"), turn.RequestedAddressFamilyIPv4)
	mapped, err := c.SendBindingRequest()
	if err != nil {
		t.Fatalf("binding request: %v", err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	netnsReport("mapped", mapped.String())
	netnsReport("relayed", relay.LocalAddr().String())
	in := netnsStdin()

	switch role {
	case "echo":
		var mu sync.Mutex
		peers := map[string]int{}
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := relay.ReadFrom(buf)
				if err != nil {
					return
				}
				mu.Lock()
				peers[from.String()]++
				mu.Unlock()
				_, _ = relay.WriteTo(buf[:n], from)
			}
		}()
		for {
			line, ok := netnsNextLine(in, 30*time.Second)
			if !ok {
				t.Fatal("no quit from TestNAT")
			}
			if line == "quit" {
				break
			}
			if addr, ok := strings.CutPrefix(line, "permit "); ok {
				peer, err := net.ResolveUDPAddr("udp4", addr)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.CreatePermission(peer); err != nil {
					t.Fatalf("CreatePermission %v: %v", peer, err)
				}
				netnsReport("permitted", addr)
			}
		}
		mu.Lock()
		var list []string
		total := 0
		for p, n := range peers {
			list = append(list, p)
			total += n
		}
		mu.Unlock()
		slices.Sort(list)
		netnsReport("peers", strings.Join(list, ","))
		netnsReport("echoed", strconv.Itoa(total))
	case "send":
		line, _ := netnsNextLine(in, 30*time.Second)
		addr, ok := strings.CutPrefix(line, "send ")
		if !ok {
			t.Fatalf("got %q from TestNAT, want send ADDR", line)
		}
		peer, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		count, err := strconv.Atoi(os.Getenv("FERRY_NAT_COUNT"))
		if err != nil {
			t.Fatal(err)
		}
		echoAll(t, relay, peer, count)
		netnsReport("received", fmt.Sprint(count))
	default:
		t.Fatalf("unknown FERRY_NAT_ROLE %q", role)
	}
}
