package relay

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// The traffic tests use ports 63200-63249 and the benchmarks 63290-63299 (see the note at
// the top of allocator_test.go).

func TestUsageAdd(t *testing.T) {
	tests := []struct {
		name    string
		u, v    Usage
		wantSum Usage
	}{
		{"zero", Usage{}, Usage{}, Usage{}},
		{"each field on its own", Usage{1, 2, 3, 4}, Usage{10, 20, 30, 40}, Usage{11, 22, 33, 44}},
		{"adding zero", Usage{5, 6, 7, 8}, Usage{}, Usage{5, 6, 7, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.u.Add(tt.v); got != tt.wantSum {
				t.Errorf("%+v.Add(%+v) = %+v, want %+v", tt.u, tt.v, got, tt.wantSum)
			}
		})
	}
}

func TestTrafficUsage(t *testing.T) {
	var tr Traffic
	for _, n := range []int{100, 0, 1200} {
		tr.ToPeer.add(n)
	}
	tr.FromPeer.add(7)
	want := Usage{ToPeerPackets: 3, ToPeerBytes: 1300, FromPeerPackets: 1, FromPeerBytes: 7}
	if got := tr.Usage(); got != want {
		t.Fatalf("Usage() = %+v, want %+v", got, want)
	}
	if tr.ToPeer.Packets() != 3 || tr.ToPeer.Bytes() != 1300 {
		t.Fatalf("ToPeer = %d packets, %d bytes; want 3, 1300", tr.ToPeer.Packets(), tr.ToPeer.Bytes())
	}
}

// wantUsage checks what the allocator reports for the relay on port; want nil means no relay
// is live there.
func wantUsage(t *testing.T, a *Allocator, port uint16, want *Usage) {
	t.Helper()
	tr, ok := a.Traffic(port)
	var got Usage
	if ok {
		got = tr.Usage()
	}
	switch {
	case want == nil && ok:
		t.Fatalf("Traffic(%d) = %+v, true; want no live relay", port, got)
	case want != nil && !ok:
		t.Fatalf("Traffic(%d) reports no live relay, want %+v", port, *want)
	case want != nil && got != *want:
		t.Fatalf("Traffic(%d) = %+v, want %+v", port, got, *want)
	}
}

func wantTotals(t *testing.T, a *Allocator, want Usage) {
	t.Helper()
	if got := a.Totals(); got != want {
		t.Fatalf("Totals() = %+v, want %+v", got, want)
	}
}

// listenUDP binds a peer socket on an ephemeral port of ip.
func listenUDP(t testing.TB, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatalf("binding %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func udpAddrPort(c net.PacketConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func TestUDPRelayTraffic(t *testing.T) {
	a := newAllocator(t, v4Only(63200, 63201))
	conn, relayed := allocUDP(t, a, 0)
	relay := conn.(*packetConn)
	port := relayed.Port()
	relayAddr := udpAddrPort(relay)
	peer := listenUDP(t, "127.0.0.2") // not an own address: the policy lets it through
	peerAddr := udpAddrPort(peer)

	// ReadFrom and WriteTo are what pion calls; the netip forms must count the same.
	toPeer := []struct {
		name  string
		size  int
		write func(p []byte) (int, error)
	}{
		{"WriteTo", 100, func(p []byte) (int, error) { return relay.WriteTo(p, net.UDPAddrFromAddrPort(peerAddr)) }},
		{"WriteToUDPAddrPort", 1200, func(p []byte) (int, error) { return relay.WriteToUDPAddrPort(p, peerAddr) }},
		{"empty datagram", 0, func(p []byte) (int, error) { return relay.WriteTo(p, peer.LocalAddr()) }},
	}
	fromPeer := []struct {
		name string
		size int
		read func(p []byte) (int, netip.AddrPort, error)
	}{
		{"ReadFrom", 40, func(p []byte) (int, netip.AddrPort, error) {
			n, src, err := relay.ReadFrom(p)
			if err != nil {
				return n, netip.AddrPort{}, err
			}
			return n, src.(*net.UDPAddr).AddrPort(), nil
		}},
		{"ReadFromUDPAddrPort", 1, relay.ReadFromUDPAddrPort},
		{"ReadFrom again", 500, func(p []byte) (int, netip.AddrPort, error) {
			n, src, err := relay.ReadFrom(p)
			if err != nil {
				return n, netip.AddrPort{}, err
			}
			return n, src.(*net.UDPAddr).AddrPort(), nil
		}},
	}

	buf := make([]byte, 1600)
	var want Usage
	for _, d := range toPeer {
		if n, err := d.write(make([]byte, d.size)); err != nil || n != d.size {
			t.Fatalf("%s(%d bytes) = %d, %v", d.name, d.size, n, err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(timeout))
		n, src, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || n != d.size || src != relayAddr {
			t.Fatalf("%s: peer read %d bytes from %v, %v; want %d from %v", d.name, n, src, err, d.size, relayAddr)
		}
		want.ToPeerPackets++
		want.ToPeerBytes += uint64(d.size)
	}
	for _, d := range fromPeer {
		if _, err := peer.WriteToUDPAddrPort(make([]byte, d.size), relayAddr); err != nil {
			t.Fatal(err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(timeout))
		n, src, err := d.read(buf)
		if err != nil || n != d.size || src != peerAddr {
			t.Fatalf("%s = %d bytes from %v, %v; want %d from %v", d.name, n, src, err, d.size, peerAddr)
		}
		want.FromPeerPackets++
		want.FromPeerBytes += uint64(d.size)
	}

	wantUsage(t, a, port, &want)
	wantTotals(t, a, want)
	if err := relay.Close(); err != nil {
		t.Fatal(err)
	}
	_ = relay.Close() // a second Close must not fold the relay into the totals again
	wantUsage(t, a, port, nil)
	wantTotals(t, a, want)
	if got := a.Pool().InUse(); got != 0 {
		t.Fatalf("pool InUse = %d after Close, want 0", got)
	}
}

// tcpSetup is an allocator whose relays may reach peers on 127.0.0.1 (allow_peers), so RFC
// 6062 tests can use loopback peers.
func tcpSetup(min, max int) allocatorSetup {
	return allocatorSetup{
		min: min, max: max, deny: []string{Recommended}, allow: []string{"127.0.0.1/32"},
		v4: Addrs{Bind: loopback4, Public: public4},
	}
}

// dialRelay connects a peer to the relay listener ln and returns both ends: the relay's (as
// Accept returned it) and the peer's.
func dialRelay(t *testing.T, ln net.Listener) (relayEnd, peerEnd net.Conn) {
	t.Helper()
	accepted := acceptOne(ln)
	peerEnd, err := net.DialTimeout("tcp4", ln.Addr().String(), timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peerEnd.Close() })
	return waitConn(t, accepted, ln), peerEnd
}

// dialPeer makes an RFC 6062 Connect from the relay port of relayed to a new peer listener
// and returns both ends: the relay's (as AllocateConn returned it) and the peer's.
func dialPeer(t *testing.T, a *Allocator, relayed *net.TCPAddr) (relayEnd, peerEnd net.Conn) {
	t.Helper()
	peerLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peerLn.Close() })
	accepted := acceptOne(peerLn)
	relayEnd, err = a.AllocateConn(turn.AllocateConnConfig{Network: "tcp4", LocalAddr: relayed, RemoteAddr: peerLn.Addr()})
	if err != nil {
		t.Fatalf("AllocateConn: %v", err)
	}
	t.Cleanup(func() { _ = relayEnd.Close() })
	return relayEnd, waitConn(t, accepted, peerLn)
}

// relayTCP sends toPeer from the relay end of a connection and fromPeer from the peer end,
// one message at a time, and returns what the relay end should have counted. A TCP packet
// is a Read or Write call, and the relay end reads by hand to know how many Reads it took.
func relayTCP(t *testing.T, relayEnd, peerEnd net.Conn, toPeer, fromPeer []string) Usage {
	t.Helper()
	_ = relayEnd.SetDeadline(time.Now().Add(timeout))
	_ = peerEnd.SetDeadline(time.Now().Add(timeout))
	var u Usage
	for _, msg := range toPeer {
		if _, err := relayEnd.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(peerEnd, buf); err != nil || string(buf) != msg {
			t.Fatalf("peer read %q, %v; want %q", buf, err, msg)
		}
		u.ToPeerPackets++
		u.ToPeerBytes += uint64(len(msg))
	}
	for _, msg := range fromPeer {
		if _, err := peerEnd.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		for got := 0; got < len(msg); {
			n, err := relayEnd.Read(buf[got:])
			if err != nil {
				t.Fatalf("relay read after %d of %q: %v", got, msg, err)
			}
			if n > 0 {
				u.FromPeerPackets++
			}
			got += n
		}
		if string(buf) != msg {
			t.Fatalf("relay read %q, want %q", buf, msg)
		}
		u.FromPeerBytes += uint64(len(msg))
	}
	return u
}

func TestTCPRelayTraffic(t *testing.T) {
	a := newAllocator(t, tcpSetup(63205, 63209))
	ln, relayed := allocTCP(t, a)
	port := uint16(relayed.Port)
	in, inPeer := dialRelay(t, ln)
	out, outPeer := dialPeer(t, a, relayed)

	conns := []struct {
		name             string
		relay, peer      net.Conn
		toPeer, fromPeer []string
	}{
		{"accepted", in, inPeer, []string{"hello", "world!"}, []string{"ping"}},
		{"dialled", out, outPeer, []string{"x"}, []string{"a longer message", "b"}},
	}
	var want Usage
	for _, c := range conns {
		want = want.Add(relayTCP(t, c.relay, c.peer, c.toPeer, c.fromPeer))
	}
	wantUsage(t, a, port, &want)
	wantTotals(t, a, want)

	// The listener closes first: its port goes back to the pool, but the relay stays live
	// (and counted) while its connections are open. There is nothing left to End.
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if got := a.Pool().InUse(); got != 0 {
		t.Fatalf("pool InUse = %d after the listener closed, want 0", got)
	}
	wantUsage(t, a, port, &want)
	if a.End(port) {
		t.Fatal("End succeeded on a relay whose listener has closed")
	}
	more := relayTCP(t, out, outPeer, []string{"after"}, nil)
	want = want.Add(more)
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, a, port, &want)
	wantTotals(t, a, want)

	// The last connection ends the relay, once.
	for range 2 {
		_ = out.Close()
	}
	wantUsage(t, a, port, nil)
	wantTotals(t, a, want)
}

// TestPortReuseKeepsRelaysApart: a TCP relay's connection outlives its listener, and the
// port is allocated again meanwhile. The two relays count apart, and the old connection's
// Close ends the old relay only.
func TestPortReuseKeepsRelaysApart(t *testing.T) {
	const port = 63210
	a := newAllocator(t, tcpSetup(port, port)) // one port: the next allocation must reuse it
	oldLn, _ := allocTCP(t, a)
	old, oldPeer := dialRelay(t, oldLn)
	oldUsage := relayTCP(t, old, oldPeer, []string{"old traffic"}, nil)
	if err := oldLn.Close(); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, a, port, &oldUsage)

	newLn, relayed := allocTCP(t, a)
	if relayed.Port != port {
		t.Fatalf("new relay on port %d, want %d", relayed.Port, port)
	}
	wantUsage(t, a, port, &Usage{})
	cur, curPeer := dialRelay(t, newLn)
	newUsage := relayTCP(t, cur, curPeer, []string{"new"}, []string{"reply"})
	wantUsage(t, a, port, &newUsage)
	wantTotals(t, a, oldUsage.Add(newUsage))

	// Ending the old relay leaves the new one registered.
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, a, port, &newUsage)
	wantTotals(t, a, oldUsage.Add(newUsage))
	if !a.End(port) {
		t.Fatal("End found no live relay on the reused port")
	}
	_ = cur.Close()
	wantUsage(t, a, port, nil)
	wantTotals(t, a, oldUsage.Add(newUsage))
}

// TestEndRelay: End closes the relay socket or listener, which is what makes pion delete the
// allocation: its read or accept loop, blocked now, returns an error.
func TestEndRelay(t *testing.T) {
	tests := []struct {
		name  string
		min   int
		alloc func(t *testing.T, a *Allocator) (port uint16, wait func() error)
	}{
		{"udp", 63215, func(t *testing.T, a *Allocator) (uint16, func() error) {
			conn, relayed := allocUDP(t, a, 0)
			return relayed.Port(), func() error {
				_, _, err := conn.ReadFrom(make([]byte, 64))
				return err
			}
		}},
		{"tcp", 63217, func(t *testing.T, a *Allocator) (uint16, func() error) {
			ln, relayed := allocTCP(t, a)
			return uint16(relayed.Port), func() error {
				conn, err := ln.Accept()
				if conn != nil {
					_ = conn.Close()
				}
				return err
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAllocator(t, tcpSetup(tt.min, tt.min+1))
			port, wait := tt.alloc(t, a)
			errc := make(chan error, 1)
			go func() { errc <- wait() }()
			select {
			case err := <-errc:
				t.Fatalf("the relay returned before End: %v", err)
			case <-time.After(20 * time.Millisecond):
			}

			if !a.End(port) {
				t.Fatalf("End(%d) found no live relay", port)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("after End: %v, want net.ErrClosed", err)
				}
			case <-time.After(timeout):
				t.Fatal("the relay still blocks after End")
			}
			if got := a.Pool().Free(); got != a.Pool().Size() {
				t.Fatalf("pool Free = %d after End, want %d", got, a.Pool().Size())
			}
			wantUsage(t, a, port, nil)
			if a.End(port) {
				t.Fatalf("a second End(%d) succeeded", port)
			}
		})
	}
}

func TestEndUnknownPort(t *testing.T) {
	a := newAllocator(t, v4Only(63220, 63221))
	_, relayed := allocUDP(t, a, 63220)
	for _, port := range []uint16{0, 63221, 63222, 65535} {
		if a.End(port) {
			t.Errorf("End(%d) succeeded without a relay there", port)
		}
		if tr, ok := a.Traffic(port); ok {
			t.Errorf("Traffic(%d) = %+v, true without a relay there", port, tr.Usage())
		}
	}
	if _, ok := a.Traffic(relayed.Port()); !ok {
		t.Fatalf("the relay on %d was ended by End of other ports", relayed.Port())
	}
}

// TestAllocateConnNeedsOpenRelay: pion connects from the port of an allocation's relay
// listener; a port with no open listener is refused, and takes nothing from the pool.
func TestAllocateConnNeedsOpenRelay(t *testing.T) {
	const min, max = 63225, 63227
	a := newAllocator(t, tcpSetup(min, max))
	closedLn, closed := allocTCP(t, a)
	lingeringLn, lingering := allocTCP(t, a)
	dialRelay(t, lingeringLn) // keeps the relay live after its listener closes
	for _, ln := range []net.Listener{closedLn, lingeringLn} {
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
	}
	peer, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	tests := []struct {
		name string
		port int
	}{
		{"listener closed", closed.Port},
		{"listener closed, a connection still open", lingering.Port},
		{"never allocated", max},
		{"outside the pool", max + 1},
		{"not a port", 65536 + min},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			free := a.Pool().Free()
			local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tt.port}
			conn, err := a.AllocateConn(turn.AllocateConnConfig{Network: "tcp4", LocalAddr: local, RemoteAddr: peer.Addr()})
			if err == nil {
				_ = conn.Close()
				t.Fatalf("AllocateConn from port %d succeeded", tt.port)
			}
			if got := a.Pool().Free(); got != free {
				t.Fatalf("pool Free = %d, want %d", got, free)
			}
		})
	}
}

func TestDeniedSources(t *testing.T) {
	t.Run("udp", func(t *testing.T) {
		a := newAllocator(t, v4Only(63230, 63231)) // 127.0.0.1 is an own relay address
		relay, relayed := allocUDP(t, a, 0)
		outside := listenUDP(t, "127.0.0.1") // an ephemeral port Ferry does not hold
		if p := int(udpAddrPort(outside).Port()); a.Pool().Contains(p) {
			t.Fatalf("ephemeral port %d fell into the pool", p)
		}
		other := listenUDP(t, "127.0.0.2")
		for _, s := range []struct {
			from *net.UDPConn
			msg  string
		}{{outside, "drop"}, {outside, "drop again"}, {other, "keep"}} {
			if _, err := s.from.WriteToUDPAddrPort([]byte(s.msg), udpAddrPort(relay)); err != nil {
				t.Fatal(err)
			}
		}
		buf := make([]byte, 64)
		_ = relay.SetReadDeadline(time.Now().Add(timeout))
		if n, _, err := relay.ReadFrom(buf); err != nil || string(buf[:n]) != "keep" {
			t.Fatalf("ReadFrom = %q, %v; want keep", buf[:n], err)
		}
		if got := a.DeniedSources(); got != 2 {
			t.Fatalf("DeniedSources() = %d, want 2", got)
		}
		wantUsage(t, a, relayed.Port(), &Usage{FromPeerPackets: 1, FromPeerBytes: 4}) // drops not counted
	})
	t.Run("tcp", func(t *testing.T) {
		a := newAllocator(t, allocatorSetup{
			min: 63232, max: 63234, deny: []string{Recommended},
			v4: Addrs{Bind: loopback4, Public: loopback4},
		})
		ln, relayed := allocTCP(t, a)
		_, peerRelayed := allocTCP(t, a)
		outside, err := net.DialTimeout("tcp4", ln.Addr().String(), timeout) // ephemeral port: refused
		if err != nil {
			t.Fatal(err)
		}
		defer outside.Close()
		conn, err := a.AllocateConn(turn.AllocateConnConfig{Network: "tcp4", LocalAddr: peerRelayed, RemoteAddr: relayed})
		if err != nil {
			t.Fatalf("AllocateConn: %v", err)
		}
		defer conn.Close()
		// Accept returns the second connection only after refusing the first.
		if got := waitConn(t, acceptOne(ln), ln); got.RemoteAddr().String() != peerRelayed.String() {
			t.Fatalf("Accept returned a connection from %v, want %v", got.RemoteAddr(), peerRelayed)
		}
		if got := a.DeniedSources(); got != 1 {
			t.Fatalf("DeniedSources() = %d, want 1", got)
		}
	})
}

// TestDataPathAllocs keeps the per-packet paths free of allocations; the benchmarks below
// measure the same, this makes go test enforce it.
func TestDataPathAllocs(t *testing.T) {
	a := newAllocator(t, v4Only(63240, 63241))
	conn, _ := allocUDP(t, a, 0)
	relay := conn.(*packetConn)
	peer := listenUDP(t, "127.0.0.2")
	relayAddr, peerAddr := udpAddrPort(relay), udpAddrPort(peer)
	peerUDPAddr := peer.LocalAddr()
	p, buf := make([]byte, 100), make([]byte, 1600)
	_ = relay.SetReadDeadline(time.Now().Add(timeout))
	_ = peer.SetReadDeadline(time.Now().Add(timeout))
	policy := mustPolicy(t, []string{Recommended}, []string{"10.1.0.0/16"}, "127.0.0.1")

	tests := []struct {
		name string
		run  func() error
	}{
		{"WriteTo", func() error {
			if _, err := relay.WriteTo(p, peerUDPAddr); err != nil {
				return err
			}
			_, _, err := peer.ReadFromUDPAddrPort(buf)
			return err
		}},
		{"WriteToUDPAddrPort", func() error {
			if _, err := relay.WriteToUDPAddrPort(p, peerAddr); err != nil {
				return err
			}
			_, _, err := peer.ReadFromUDPAddrPort(buf)
			return err
		}},
		{"ReadFromUDPAddrPort", func() error {
			if _, err := peer.WriteToUDPAddrPort(p, relayAddr); err != nil {
				return err
			}
			_, _, err := relay.ReadFromUDPAddrPort(buf)
			return err
		}},
		{"PermitAddr", func() error {
			_ = policy.PermitAddr(UDP, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), 80))
			_ = policy.PermitIP(netip.AddrFrom4([4]byte{8, 8, 8, 8}))
			_ = policy.PermitSource(UDP, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 22))
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			allocs := testing.AllocsPerRun(100, func() {
				if e := tt.run(); e != nil {
					err = e
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if allocs != 0 {
				t.Fatalf("%v allocations per run, want 0", allocs)
			}
		})
	}
}

// benchRelay returns a UDP relay socket on port and a peer socket on 127.0.0.2.
func benchRelay(b *testing.B, port int) (*packetConn, *net.UDPConn) {
	a := newAllocator(b, v4Only(port, port))
	conn, _ := allocUDP(b, a, 0)
	return conn.(*packetConn), listenUDP(b, "127.0.0.2")
}

// BenchmarkPacketConnWriteTo is the client→peer path, as pion calls it. The peer does not
// read: datagrams beyond its receive buffer are dropped, which WriteTo does not notice.
func BenchmarkPacketConnWriteTo(b *testing.B) {
	relay, peer := benchRelay(b, 63290)
	to := peer.LocalAddr() // a *net.UDPAddr, made once as pion keeps it in the permission
	p := make([]byte, 1200)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := relay.WriteTo(p, to); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPacketConnReadFrom is the peer→client path without pion's *net.UDPAddr: one
// datagram sent by the peer and read by the relay per op.
func BenchmarkPacketConnReadFrom(b *testing.B) {
	relay, peer := benchRelay(b, 63291)
	to := udpAddrPort(relay)
	p, buf := make([]byte, 1200), make([]byte, 1600)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := peer.WriteToUDPAddrPort(p, to); err != nil {
			b.Fatal(err)
		}
		if _, _, err := relay.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPacketConnReadFromNetAddr is the same through ReadFrom, as pion reads: the
// *net.UDPAddr it returns is allocated per datagram.
func BenchmarkPacketConnReadFromNetAddr(b *testing.B) {
	relay, peer := benchRelay(b, 63292)
	to := udpAddrPort(relay)
	p, buf := make([]byte, 1200), make([]byte, 1600)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := peer.WriteToUDPAddrPort(p, to); err != nil {
			b.Fatal(err)
		}
		if _, _, err := relay.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
}
