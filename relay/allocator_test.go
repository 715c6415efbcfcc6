package relay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// The allocator tests bind real sockets on loopback. Each test has its own port range above
// Linux's ephemeral range (32768-60999), so no test collides with another's leftovers or with
// a port the kernel picked for some outgoing connection.

var (
	loopback4 = netip.MustParseAddr("127.0.0.1")
	loopback6 = netip.MustParseAddr("::1")
	public4   = netip.MustParseAddr("203.0.113.7") // advertised: 1:1 NAT
	public6   = netip.MustParseAddr("2001:db8::7")
)

// timeout bounds every wait on the network; reaching it is a failure, not synchronisation.
const timeout = 5 * time.Second

type allocatorSetup struct {
	min, max int
	deny     []string
	allow    []string
	v4, v6   Addrs
}

// newAllocator returns an allocator over [min, max] whose policy knows 127.0.0.1 and ::1 as
// own relay addresses.
func newAllocator(t testing.TB, s allocatorSetup) *Allocator {
	t.Helper()
	pool := mustPool(t, s.min, s.max)
	policy, err := NewPolicy(s.deny, s.allow, []netip.Addr{loopback4, loopback6}, pool.Held)
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	return NewAllocator(pool, policy, s.v4, s.v6)
}

func v4Only(min, max int) allocatorSetup {
	return allocatorSetup{
		min: min, max: max, deny: []string{Recommended},
		v4: Addrs{Bind: loopback4, Public: public4},
	}
}

func allocUDP(t testing.TB, a *Allocator, requested int) (net.PacketConn, netip.AddrPort) {
	t.Helper()
	conn, relayed, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", RequestedPort: requested})
	if err != nil {
		t.Fatalf("AllocatePacketConn(port %d): %v", requested, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, relayed.(*net.UDPAddr).AddrPort()
}

func localPort(t *testing.T, addr net.Addr) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		t.Fatalf("local address %v: %v", addr, err)
	}
	return int(ap.Port())
}

// occupyUDP binds 127.0.0.1:port the ordinary way (no SO_REUSEPORT), as another program would.
func occupyUDP(t *testing.T, port int) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback4, uint16(port))))
	if err != nil {
		t.Fatalf("occupying UDP port %d: %v", port, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestAllocatePacketConnAdvertisesPublicAddress(t *testing.T) {
	a := newAllocator(t, v4Only(63100, 63103))
	conn, relayed := allocUDP(t, a, 0)

	if relayed.Addr() != public4 {
		t.Errorf("relayed address %s, want the public IP %s", relayed, public4)
	}
	if p := int(relayed.Port()); p < 63100 || p > 63103 {
		t.Errorf("relayed port %d outside the pool 63100-63103", p)
	}
	local, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.AddrPortFrom(loopback4, relayed.Port()); local != want {
		t.Errorf("socket bound on %s, want %s", local, want)
	}
	if got := a.Pool().InUse(); got != 1 {
		t.Errorf("pool InUse = %d, want 1", got)
	}

	// The socket really is there: a datagram sent to the bound address arrives.
	sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatalf("binding 127.0.0.2: %v", err)
	}
	defer sender.Close()
	if _, err := sender.WriteToUDPAddrPort([]byte("hello"), local); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	n, src, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	if string(buf[:n]) != "hello" || src.String() != sender.LocalAddr().String() {
		t.Errorf("ReadFrom = %q from %v, want %q from %v", buf[:n], src, "hello", sender.LocalAddr())
	}
}

func TestAllocatePacketConnWildcardBind(t *testing.T) {
	a := newAllocator(t, allocatorSetup{
		min: 63105, max: 63105,
		v4: Addrs{Bind: netip.IPv4Unspecified(), Public: public4},
	})
	conn, relayed := allocUDP(t, a, 0)
	if want := netip.AddrPortFrom(public4, 63105); relayed != want {
		t.Errorf("relayed address %s, want %s", relayed, want)
	}
	if got, want := conn.LocalAddr().String(), "0.0.0.0:63105"; got != want {
		t.Errorf("socket bound on %s, want %s", got, want)
	}
}

func TestAllocatePacketConnExhaustsAndReusesPool(t *testing.T) {
	const min, max = 63110, 63113
	a := newAllocator(t, v4Only(min, max))
	conns := map[int]net.PacketConn{}
	for range max - min + 1 {
		conn, relayed := allocUDP(t, a, 0)
		port := int(relayed.Port())
		if _, dup := conns[port]; dup {
			t.Fatalf("port %d handed out twice", port)
		}
		if localPort(t, conn.LocalAddr()) != port {
			t.Fatalf("relayed port %d, socket on %v", port, conn.LocalAddr())
		}
		conns[port] = conn
	}
	if got := a.Pool().Free(); got != 0 {
		t.Fatalf("pool Free = %d after allocating every port, want 0", got)
	}

	_, _, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("allocating from an empty pool: %v, want ErrPoolExhausted", err)
	}

	// Closing one gives its port back, exactly once, and the next allocation takes it.
	const released = min + 2
	if err := conns[released].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_ = conns[released].Close() // a second Close must not put the port back twice
	if got := a.Pool().Free(); got != 1 {
		t.Fatalf("pool Free = %d after closing one relay (twice), want 1", got)
	}
	conn, relayed := allocUDP(t, a, 0)
	if int(relayed.Port()) != released || localPort(t, conn.LocalAddr()) != released {
		t.Fatalf("reallocated %s on %v, want port %d", relayed, conn.LocalAddr(), released)
	}
	if _, _, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"}); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("allocating from an empty pool again: %v, want ErrPoolExhausted", err)
	}
}

// TestCloseTwiceReleasesOnce: with a one-port pool, a stale second Close of an old relay must
// not free the port that a new relay now holds.
func TestCloseTwiceReleasesOnce(t *testing.T) {
	t.Run("udp", func(t *testing.T) {
		a := newAllocator(t, v4Only(63115, 63115))
		old, _ := allocUDP(t, a, 0)
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
		allocUDP(t, a, 0) // holds 63115 now
		if err := old.Close(); err == nil {
			t.Error("second Close returned no error")
		}
		if got := a.Pool().Free(); got != 0 {
			t.Fatalf("pool Free = %d while the port is in use, want 0", got)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		a := newAllocator(t, v4Only(63116, 63116))
		old, _ := allocTCP(t, a)
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
		allocTCP(t, a)
		_ = old.Close()
		if got := a.Pool().Free(); got != 0 {
			t.Fatalf("pool Free = %d while the port is in use, want 0", got)
		}
	})
}

func TestAllocatePacketConnSkipsBusyPort(t *testing.T) {
	const min, max = 63120, 63122
	a := newAllocator(t, v4Only(min, max))
	busy := occupyUDP(t, min) // the first port Get hands out

	_, first := allocUDP(t, a, 0)
	if first.Port() != min+1 {
		t.Fatalf("first allocation on port %d, want %d (skipping busy %d)", first.Port(), min+1, min)
	}
	if got := a.Pool().Free(); got != 2 {
		t.Fatalf("pool Free = %d, want 2: the busy port goes back to the pool", got)
	}
	_, second := allocUDP(t, a, 0)
	if second.Port() != min+2 {
		t.Fatalf("second allocation on port %d, want %d", second.Port(), min+2)
	}

	// Only the busy port is left: the pool counts as exhausted, with the bind error said.
	_, _, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("allocation with only a busy port left: %v, want ErrPoolExhausted", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte("address already in use")) {
		t.Errorf("error %q does not name the bind error", err)
	}
	if got := a.Pool().Free(); got != 1 {
		t.Fatalf("pool Free = %d, want 1 (the busy port, not lost)", got)
	}

	// Once the other program lets go, the port is usable.
	if err := busy.Close(); err != nil {
		t.Fatal(err)
	}
	_, third := allocUDP(t, a, 0)
	if third.Port() != min {
		t.Fatalf("third allocation on port %d, want %d", third.Port(), min)
	}
}

func TestAllocatePacketConnRequestedPort(t *testing.T) {
	const min, max = 63125, 63129
	a := newAllocator(t, v4Only(min, max))

	conn, relayed := allocUDP(t, a, min+3)
	if relayed != netip.AddrPortFrom(public4, min+3) || localPort(t, conn.LocalAddr()) != min+3 {
		t.Fatalf("requested %d, got %s on %v", min+3, relayed, conn.LocalAddr())
	}

	tests := []struct {
		name string
		port int
	}{
		{"port in use by a relay", min + 3},
		{"port below the pool", min - 1},
		{"port above the pool", max + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			free := a.Pool().Free()
			_, _, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", RequestedPort: tt.port})
			if !errors.Is(err, ErrPortTaken) {
				t.Fatalf("requesting port %d: %v, want ErrPortTaken", tt.port, err)
			}
			if got := a.Pool().Free(); got != free {
				t.Fatalf("pool Free = %d after the refusal, want %d", got, free)
			}
		})
	}

	t.Run("port held by another program", func(t *testing.T) {
		occupyUDP(t, min+1)
		free := a.Pool().Free()
		_, _, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", RequestedPort: min + 1})
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("requesting a port another socket holds: %v, want EADDRINUSE", err)
		}
		if got := a.Pool().Free(); got != free {
			t.Fatalf("pool Free = %d, want %d: the port goes back to the pool", got, free)
		}
	})

	// After the relay closes, the port can be requested again.
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	allocUDP(t, a, min+3)
}

func TestAllocatorFamilies(t *testing.T) {
	v4 := Addrs{Bind: loopback4, Public: public4}
	v6 := Addrs{Bind: loopback6, Public: public6}
	tests := []struct {
		name         string
		v4, v6       Addrs
		network      string
		wantDisabled bool
	}{
		{"udp6 without v6 addresses", v4, Addrs{}, "udp6", true},
		{"tcp6 without v6 addresses", v4, Addrs{}, "tcp6", true},
		{"udp4 without v4 addresses", Addrs{}, v6, "udp4", true},
		{"tcp4 without v4 addresses", Addrs{}, v6, "tcp4", true},
		{"v6 bind without public address", v4, Addrs{Bind: loopback6}, "udp6", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAllocator(t, allocatorSetup{min: 63130, max: 63131, v4: tt.v4, v6: tt.v6})
			conf := turn.AllocateListenerConfig{Network: tt.network}
			var errs []error
			if strings.HasPrefix(tt.network, "udp") {
				_, _, err := a.AllocatePacketConn(conf)
				errs = append(errs, err)
			} else {
				_, _, err := a.AllocateListener(conf)
				errs = append(errs, err)
				_, err = a.AllocateConn(turn.AllocateConnConfig{
					Network:    tt.network,
					LocalAddr:  &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 63130},
					RemoteAddr: &net.TCPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 80},
				})
				errs = append(errs, err)
			}
			for _, err := range errs {
				if !errors.Is(err, ErrFamilyDisabled) {
					t.Errorf("%s: %v, want ErrFamilyDisabled", tt.network, err)
				}
			}
			if got := a.Pool().Free(); got != 2 {
				t.Errorf("pool Free = %d, want 2: a refused family takes no port", got)
			}
		})
	}
}

func TestAllocatorValidateAndEnabled(t *testing.T) {
	on := Addrs{Bind: loopback4, Public: public4}
	tests := []struct {
		name         string
		v4, v6       Addrs
		wantErr      bool
		want4, want6 bool
	}{
		{"v4 only", on, Addrs{}, false, true, false},
		{"v6 only", Addrs{}, Addrs{Bind: loopback6, Public: loopback6}, false, false, true},
		{"both", on, Addrs{Bind: loopback6, Public: loopback6}, false, true, true},
		{"neither", Addrs{}, Addrs{}, true, false, false},
		{"bind without public", Addrs{Bind: loopback4}, Addrs{}, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAllocator(t, allocatorSetup{min: 63130, max: 63131, v4: tt.v4, v6: tt.v6})
			err := a.Validate()
			if tt.wantErr != (err != nil) {
				t.Errorf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, ErrFamilyDisabled) {
				t.Errorf("Validate() = %v, want ErrFamilyDisabled", err)
			}
			if a.Enabled(false) != tt.want4 || a.Enabled(true) != tt.want6 {
				t.Errorf("Enabled(v4, v6) = %v, %v, want %v, %v", a.Enabled(false), a.Enabled(true), tt.want4, tt.want6)
			}
		})
	}
}

func TestAllocatePacketConnIPv6(t *testing.T) {
	probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("this machine cannot bind [::1] (no IPv6 loopback): %v", err)
	}
	_ = probe.Close()

	a := newAllocator(t, allocatorSetup{
		min: 63135, max: 63136, deny: []string{Recommended},
		v6: Addrs{Bind: loopback6, Public: public6},
	})
	conn, relayed, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp6"})
	if err != nil {
		t.Fatalf("AllocatePacketConn(udp6): %v", err)
	}
	defer conn.Close()
	ap := relayed.(*net.UDPAddr).AddrPort()
	if ap.Addr() != public6 || ap.Port() != 63135 {
		t.Errorf("relayed address %s, want [%s]:63135", ap, public6)
	}
	if got, want := conn.LocalAddr().String(), "[::1]:63135"; got != want {
		t.Errorf("socket bound on %s, want %s", got, want)
	}
	if _, _, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"}); !errors.Is(err, ErrFamilyDisabled) {
		t.Errorf("AllocatePacketConn(udp4) on a v6-only allocator: %v, want ErrFamilyDisabled", err)
	}

	// A datagram from another allocation on [::1] (own IP, pool port) arrives.
	other, _, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp6"})
	if err != nil {
		t.Fatalf("second AllocatePacketConn(udp6): %v", err)
	}
	defer other.Close()
	if _, err := other.WriteTo([]byte("v6"), conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	n, src, err := conn.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "v6" || src.String() != "[::1]:63136" {
		t.Fatalf("ReadFrom = %q from %v, %v; want %q from [::1]:63136", buf[:n], src, err, "v6")
	}
}

// TestPacketConnFiltersOwnSources: the relay drops datagrams from its own IP unless they come
// from a pool port (another allocation); other sources pass (pion's permissions filter them).
func TestPacketConnFiltersOwnSources(t *testing.T) {
	const min, max = 63140, 63149
	a := newAllocator(t, v4Only(min, max)) // no allow_peers: 127.0.0.1 counts as own only
	relay, _ := allocUDP(t, a, 0)
	relayAddr := relay.LocalAddr()

	outside, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) // ephemeral, below the pool
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	if p := localPort(t, outside.LocalAddr()); p >= min && p <= max {
		t.Fatalf("ephemeral port %d fell into the pool", p)
	}
	peerRelay, _ := allocUDP(t, a, 0) // another allocation: own IP, pool port
	otherIP, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer otherIP.Close()

	sends := []struct {
		from net.PacketConn
		msg  string
	}{
		{outside, "drop 1"},
		{peerRelay, "keep 1"},
		{outside, "drop 2"},
		{otherIP, "keep 2"},
		{outside, "drop 3"},
		{peerRelay, "keep 3"},
	}
	for _, s := range sends {
		if _, err := s.from.WriteTo([]byte(s.msg), relayAddr); err != nil {
			t.Fatalf("sending %q: %v", s.msg, err)
		}
	}
	// Loopback keeps the order, so an unfiltered "drop" would be read before the next "keep".
	want := []struct {
		msg  string
		from net.Addr
	}{
		{"keep 1", peerRelay.LocalAddr()},
		{"keep 2", otherIP.LocalAddr()},
		{"keep 3", peerRelay.LocalAddr()},
	}
	buf := make([]byte, 64)
	for _, w := range want {
		_ = relay.SetReadDeadline(time.Now().Add(timeout))
		n, src, err := relay.ReadFrom(buf)
		if err != nil {
			t.Fatalf("ReadFrom, waiting for %q: %v", w.msg, err)
		}
		if string(buf[:n]) != w.msg || src.String() != w.from.String() {
			t.Fatalf("ReadFrom = %q from %v, want %q from %v", buf[:n], src, w.msg, w.from)
		}
	}
}

func allocTCP(t *testing.T, a *Allocator) (net.Listener, *net.TCPAddr) {
	t.Helper()
	ln, relayed, err := a.AllocateListener(turn.AllocateListenerConfig{Network: "tcp4"})
	if err != nil {
		t.Fatalf("AllocateListener: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln, relayed.(*net.TCPAddr)
}

// acceptOne accepts one connection on ln in the background; the test closes ln if it has to
// give up waiting.
func acceptOne(ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func waitConn(t *testing.T, ch <-chan net.Conn, ln net.Listener) net.Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("Accept failed")
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	case <-time.After(timeout):
		_ = ln.Close()
		t.Fatal("no connection accepted")
		return nil
	}
}

// exchange checks that a and b are the two ends of one TCP connection.
func exchange(t *testing.T, a, b net.Conn) {
	t.Helper()
	_ = a.SetDeadline(time.Now().Add(timeout))
	_ = b.SetDeadline(time.Now().Add(timeout))
	if _, err := a.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v; want ping", buf, err)
	}
}

func TestAllocateListenerAndConn(t *testing.T) {
	const min, max = 63150, 63159
	a := newAllocator(t, allocatorSetup{
		min: min, max: max, deny: []string{Recommended}, allow: []string{"127.0.0.1/32"},
		v4: Addrs{Bind: loopback4, Public: public4},
	})
	ln, relayed := allocTCP(t, a)
	if relayed.AddrPort().Addr() != public4 {
		t.Errorf("relayed address %s, want the public IP %s", relayed, public4)
	}
	port := relayed.Port
	if port < min || port > max {
		t.Fatalf("relay port %d outside the pool", port)
	}
	if got, want := ln.Addr().String(), netip.AddrPortFrom(loopback4, uint16(port)).String(); got != want {
		t.Errorf("listener on %s, want %s", got, want)
	}

	peer, err := net.Listen("tcp4", "127.0.0.1:0") // allowed by allow_peers 127.0.0.1/32
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	accepted := acceptOne(peer)

	// pion passes the advertised relay address, which is not on this host.
	conn, err := a.AllocateConn(turn.AllocateConnConfig{Network: "tcp4", LocalAddr: relayed, RemoteAddr: peer.Addr()})
	if err != nil {
		t.Fatalf("AllocateConn: %v", err)
	}
	defer conn.Close()
	pc := waitConn(t, accepted, peer)
	if src := pc.RemoteAddr().(*net.TCPAddr); src.Port != port || !src.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("peer sees the connection from %v, want 127.0.0.1:%d (the relay port)", src, port)
	}
	exchange(t, conn, pc)
	exchange(t, pc, conn)
	// The dialled connection takes no port of its own from the pool.
	if got := a.Pool().InUse(); got != 1 {
		t.Errorf("pool InUse = %d, want 1", got)
	}
}

// TestAllocateConnBetweenRelays: two TCP allocations of the same Ferry reach each other on
// the own relay address although 127.0.0.1 is denied (coturn#584).
func TestAllocateConnBetweenRelays(t *testing.T) {
	const min, max = 63160, 63169
	a := newAllocator(t, allocatorSetup{
		min: min, max: max, deny: []string{Recommended}, // no allow_peers
		v4: Addrs{Bind: loopback4, Public: loopback4},
	})
	_, fromRelayed := allocTCP(t, a)
	to, toRelayed := allocTCP(t, a)
	accepted := acceptOne(to)
	conn, err := a.AllocateConn(turn.AllocateConnConfig{Network: "tcp4", LocalAddr: fromRelayed, RemoteAddr: toRelayed})
	if err != nil {
		t.Fatalf("AllocateConn to another relay: %v", err)
	}
	defer conn.Close()
	pc := waitConn(t, accepted, to)
	if got := pc.RemoteAddr().String(); got != fromRelayed.String() {
		t.Errorf("relay listener accepted a connection from %s, want %s", got, fromRelayed)
	}
	exchange(t, conn, pc)
}

func TestAllocateConnDeniedPeer(t *testing.T) {
	const min, max = 63170, 63179
	a := newAllocator(t, v4Only(min, max))
	_, relayed := allocTCP(t, a)
	tests := []struct {
		name string
		peer string
	}{
		{"own IP, service port", "127.0.0.1:22"},
		{"own IP, port outside the pool", "127.0.0.1:63180"},
		{"other loopback IP", "127.0.0.2:63171"},
		{"private", "10.1.2.3:80"},
		{"mapped loopback", "[::ffff:127.0.0.2]:80"},
		{"unspecified", "0.0.0.0:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.peer))
			conn, err := a.AllocateConn(turn.AllocateConnConfig{Network: "tcp4", LocalAddr: relayed, RemoteAddr: peer})
			if conn != nil {
				_ = conn.Close()
			}
			if !errors.Is(err, ErrPeerDenied) {
				t.Fatalf("AllocateConn to %s: %v, want ErrPeerDenied", tt.peer, err)
			}
		})
	}
}

func TestAllocateConnBadAddresses(t *testing.T) {
	a := newAllocator(t, v4Only(63181, 63182))
	udp := &net.UDPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 80}
	tcp := &net.TCPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 80}
	for _, conf := range []turn.AllocateConnConfig{
		{Network: "tcp4", LocalAddr: udp, RemoteAddr: tcp},
		{Network: "tcp4", LocalAddr: tcp, RemoteAddr: udp},
	} {
		if conn, err := a.AllocateConn(conf); err == nil {
			_ = conn.Close()
			t.Errorf("AllocateConn(local %T, remote %T) succeeded", conf.LocalAddr, conf.RemoteAddr)
		}
	}
}

// TestListenerFiltersOwnSources: the TCP relay listener refuses connections from its own IP
// unless they come from a pool port, like the UDP relay socket.
func TestListenerFiltersOwnSources(t *testing.T) {
	const min, max = 63185, 63189
	a := newAllocator(t, allocatorSetup{
		min: min, max: max, deny: []string{Recommended},
		v4: Addrs{Bind: loopback4, Public: loopback4},
	})
	ln, relayed := allocTCP(t, a)
	_, peerRelayed := allocTCP(t, a)

	// A connection from an ephemeral port (another program on the host) queues first...
	outside, err := net.DialTimeout("tcp4", ln.Addr().String(), timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	if p := localPort(t, outside.LocalAddr()); p >= min && p <= max {
		t.Fatalf("ephemeral port %d fell into the pool", p)
	}
	// ...then one from another allocation.
	conn, err := a.AllocateConn(turn.AllocateConnConfig{Network: "tcp4", LocalAddr: peerRelayed, RemoteAddr: relayed})
	if err != nil {
		t.Fatalf("AllocateConn: %v", err)
	}
	defer conn.Close()

	got := waitConn(t, acceptOne(ln), ln)
	if got.RemoteAddr().String() != peerRelayed.String() {
		t.Fatalf("Accept returned a connection from %v, want %v", got.RemoteAddr(), peerRelayed)
	}
	// The refused connection was closed by the relay.
	_ = outside.SetReadDeadline(time.Now().Add(timeout))
	if n, err := outside.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("refused connection: Read = %d, %v; want EOF or reset", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestAllocateListenerSkipsBusyPort(t *testing.T) {
	const min, max = 63190, 63191
	a := newAllocator(t, v4Only(min, max))
	busy, err := net.Listen("tcp4", "127.0.0.1:63190") // no SO_REUSEPORT: cannot be shared
	if err != nil {
		t.Fatalf("occupying TCP port %d: %v", min, err)
	}
	defer busy.Close()
	_, relayed := allocTCP(t, a)
	if relayed.Port != max {
		t.Fatalf("listener on port %d, want %d (skipping busy %d)", relayed.Port, max, min)
	}
	if _, _, err := a.AllocateListener(turn.AllocateListenerConfig{Network: "tcp4"}); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("AllocateListener with only a busy port left: %v, want ErrPoolExhausted", err)
	}
	if got := a.Pool().Free(); got != 1 {
		t.Fatalf("pool Free = %d, want 1 (the busy port)", got)
	}
}
