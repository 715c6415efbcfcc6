package relay

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

var loopback4 = netip.MustParseAddr("127.0.0.1")

// TestListenUDPSkipsBusyPort: a port another program holds is skipped and stays free in the
// pool; the socket binds the next one, which the pool then holds for UDP.
func TestListenUDPSkipsBusyPort(t *testing.T) {
	pool := mustPool(t, 31930, 31933)
	occupy(t, 31930)
	conn, err := ListenUDP(pool, loopback4)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	port := conn.LocalAddr().(*net.UDPAddr).Port
	if port != 31931 || !pool.Held(uint16(port), UDP) || pool.Held(31930, UDP) {
		t.Fatalf("bound %d; held 31930 %v, %d %v", port, pool.Held(31930, UDP), port, pool.Held(uint16(port), UDP))
	}
}

// occupy binds UDP port on 127.0.0.1 as another program would, for the rest of the test.
func occupy(t *testing.T, port uint16) {
	busy, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback4, port)))
	if err != nil {
		t.Skipf("port %d is taken: %v", port, err)
	}
	t.Cleanup(func() { _ = busy.Close() })
}

// TestListenExhaustsPool: once every port is held, binding fails with ErrPoolExhausted, for
// either protocol.
func TestListenExhaustsPool(t *testing.T) {
	pool := mustPool(t, 31934, 31935)
	for range 2 {
		c, err := ListenUDP(pool, loopback4)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if _, err := ListenUDP(pool, loopback4); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("ListenUDP on a full pool: %v, want ErrPoolExhausted", err)
	}
	if _, err := ListenTCP(pool, loopback4); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("ListenTCP on a full pool: %v, want ErrPoolExhausted", err)
	}
}

// TestListenTCPAndDial: a TCP relay listener and a dial from its port to a peer share the
// port (SO_REUSEPORT, RFC 6062), and the pool holds the port for TCP.
func TestListenTCPAndDial(t *testing.T) {
	pool := mustPool(t, 31936, 31937)
	ln, err := ListenTCP(pool, loopback4)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	local := ln.Addr().(*net.TCPAddr).AddrPort()
	if !pool.Held(local.Port(), TCP) || pool.Held(local.Port(), UDP) {
		t.Fatalf("port %d not held for TCP alone", local.Port())
	}
	peer, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	conn, err := DialTCP(t.Context(), local, peer.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.LocalAddr().(*net.TCPAddr).AddrPort(); got != local {
		t.Fatalf("dialled from %v, want the relay's %v", got, local)
	}
}

// TestGetEven: GetEven takes the first even port in free-list order and, with pair, the
// next one too, and skips an even port whose next one is held.
func TestGetEven(t *testing.T) {
	pool := mustPool(t, 31940, 31945)
	for range 5 { // 31940-31944 are taken, and all but 31941 put back: 31945 31940 31942 31943 31944
		pool.Get(UDP)
	}
	for _, port := range []int{31940, 31942, 31943, 31944} {
		pool.Put(port)
	}
	port, ok := pool.GetEven(UDP, true) // 31940's next is held: skipped
	if !ok || port != 31942 || !pool.Held(31943, UDP) {
		t.Fatalf("GetEven(pair) = %d, %v; want 31942 with 31943 held", port, ok)
	}
	if port, ok := pool.GetEven(UDP, false); !ok || port != 31940 {
		t.Fatalf("GetEven = %d, %v; want 31940", port, ok)
	}
	pool.Put(31941) // free again, but its even neighbour is held: no pair there
	if port, ok := pool.GetEven(UDP, true); !ok || port != 31944 {
		t.Fatalf("GetEven(pair) = %d, %v; want 31944", port, ok)
	}
	if port, ok := pool.GetEven(UDP, false); ok {
		t.Fatalf("GetEven = %d with no even port free", port)
	}
}

// TestBindEvenPairSkipsBusyPort: an even port another program holds is skipped, and it and
// the port after it, taken as a pair, both go back to the pool.
func TestBindEvenPairSkipsBusyPort(t *testing.T) {
	pool := mustPool(t, 31946, 31949)
	occupy(t, 31946)
	var bound int
	err := Bind(pool, UDP, true, true, func(port int) error {
		conn, err := BindUDP(loopback4, port)
		if err == nil {
			bound = port
			_ = conn.Close()
		}
		return err
	})
	if err != nil || bound != 31948 || !pool.Held(31949, UDP) {
		t.Fatalf("Bind = %v, bound %d, 31949 held %v; want 31948 with 31949 held", err, bound, pool.Held(31949, UDP))
	}
	if pool.Held(31946, UDP) || pool.Held(31947, UDP) {
		t.Fatalf("the busy pair stays held: 31946 %v, 31947 %v", pool.Held(31946, UDP), pool.Held(31947, UDP))
	}
}

// TestBindPairWithoutEven: pair without even takes no second port, so a failed bind gives
// back only the port it took, never the next one, which another allocation may hold.
func TestBindPairWithoutEven(t *testing.T) {
	pool := mustPool(t, 31950, 31951)
	for range 2 {
		pool.Get(UDP)
	}
	pool.Put(31950) // 31951 stays another allocation's
	var tried []int
	err := Bind(pool, UDP, false, true, func(port int) error {
		tried = append(tried, port)
		return errors.New("busy")
	})
	if !errors.Is(err, ErrPoolExhausted) || !pool.Held(31951, UDP) {
		t.Fatalf("Bind = %v after trying %v; the other allocation's port 31951 held: %v, want held",
			err, tried, pool.Held(31951, UDP))
	}
}
