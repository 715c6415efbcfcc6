package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// TestHostileAllocationFlood: coturn's client in DOS mode (-O: allocate and vanish), first
// from one user until the per-user quota pushes back, then from three at once until the
// port pool does. A legitimate client relaying meanwhile keeps its allocation and its
// data; once the vanished allocations reach their (capped) lifetime every port is back in
// the pool.
func TestHostileAllocationFlood(t *testing.T) {
	needTool(t, "turnutils_uclient", "turnutils_peer")
	const (
		// One user's quota fits in the pool, three users' do not.
		pool     = 20
		perUser  = 8
		clients  = 12              // per flooding user, more than its quota
		lifetime = 4 * time.Second // limits.max_allocation_lifetime: uclient asks for 777 s
	)
	s, port := hostileSetup(t, pool)
	s.perUser = perUser
	s.maxLifetime = lifetime.String()
	f := startFerry(t, s.toml())
	l := underAttack(t, f, s, port) // alice, like the first flood: her quota has room for 7 more
	peerPort := turnutilsPeer(t)

	uclientDOS := func(creds ...string) func() {
		return func() {
			// -c: no RTCP allocations, which share reservation tokens between clients
			// racing each other in DOS mode; the loser's 508 would end uclient early.
			args := append([]string{"-O", "-c", "-m", strconv.Itoa(clients), "-n", "5", "-e", "127.0.0.1",
				"-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(port)}, creds...)
			dos(append(args, "127.0.0.1")...)
		}
	}
	var wg sync.WaitGroup
	wg.Go(uclientDOS("-u", testUser, "-w", testPass))
	keepAlive(t, l.client, waitGroupDone(&wg))
	scrape(t, s.metricsAddr).atLeast(t, "ferry_quota_rejections_total", 1)
	for i := range 3 {
		wg.Go(uclientDOS("-u", fmt.Sprintf("mallory%d", i), "-W", testSecret))
	}
	keepAlive(t, l.client, waitGroupDone(&wg))

	m := scrape(t, s.metricsAddr)
	t.Logf("flood: %.0f allocations made, %.0f refused by the quota (486), %.0f by the pool (508), %.0f ports in use",
		m[createdUDP4], m["ferry_quota_rejections_total"], m[`ferry_error_responses_total{code="508"}`], m["ferry_relay_ports_in_use"])
	m.atLeast(t, createdUDP4, pool/2)
	m.atLeast(t, "ferry_quota_rejections_total", 1)
	m.atLeast(t, `ferry_error_responses_total{code="508"}`, 1)

	// The vanished allocations expire; the legitimate one, refreshed, stays.
	deadline := time.Now().Add(lifetime + 10*time.Second)
	keepAlive(t, l.client, func() bool {
		return scrape(t, s.metricsAddr)["ferry_relay_ports_in_use"] == 1 || time.Now().After(deadline)
	})
	if n := scrape(t, s.metricsAddr)["ferry_relay_ports_in_use"]; n != 1 {
		t.Fatalf("%.0f relay ports in use %s after the flood, want 1 (the legitimate client's)", n, lifetime+10*time.Second)
	}
	restClient(t, port, testSecret).allocate() // the pool serves again
	l.check(t)
}

// dos runs turnutils_uclient in DOS mode for at most 30 s. It exits non-zero by design
// (its clients see 486 and 508): only what Ferry counted matters.
func dos(args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, "turnutils_uclient", args...).Run()
}

func waitGroupDone(wg *sync.WaitGroup) func() bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
}

// keepAlive refreshes c's allocation every half second until stop reports true: the
// lifetime cap of the flood tests applies to the legitimate client too.
func keepAlive(t *testing.T, c *rawClient, stop func() bool) {
	t.Helper()
	for !stop() {
		mustSucceed(t, "Refresh of the legitimate allocation", c.request(stun.MethodRefresh))
		time.Sleep(500 * time.Millisecond)
	}
}

// TestHostilePeerFloods: one client floods its allocation with CreatePermission and
// ChannelBind requests for new peers. The per-allocation limits hold (508 past them,
// counted), nothing else is disturbed.
func TestHostilePeerFloods(t *testing.T) {
	const perms, channels, requests = 10, 5, 1000
	s, port := newSetup(t, 10)
	s.allowPeers = []string{"127.0.0.0/8"} // permissions only: nothing is sent to these peers
	s.permissionsPerAlloc, s.channelsPerAlloc = perms, channels
	f := startFerry(t, s.toml())
	l := underAttack(t, f, s, port)

	attacker := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	attacker.allocate()
	peer := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 9, byte(i >> 8), byte(i)}), uint16(1000+i))
	}
	granted := flood(t, attacker, requests, func(i int) []stun.Setter {
		return []stun.Setter{stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), testkit.PeerAddr(peer(i))}
	})
	if granted != perms {
		t.Fatalf("%d of %d CreatePermissions for new peers granted, want the limit %d", granted, requests, perms)
	}
	// Channels to the permitted IPs (other ports), so only the channel limit applies.
	granted = flood(t, attacker, requests, func(i int) []stun.Setter {
		p := peer(i % perms)
		return []stun.Setter{stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
			channelNumber(0x4000 + uint16(i)), testkit.PeerAddr(netip.AddrPortFrom(p.Addr(), uint16(20000+i)))}
	})
	if granted != channels {
		t.Fatalf("%d of %d ChannelBinds granted, want the limit %d", granted, requests, channels)
	}
	m := scrape(t, s.metricsAddr)
	m.want(t, `ferry_allocation_limit_rejections_total{limit="permissions"}`, requests-perms)
	m.want(t, `ferry_allocation_limit_rejections_total{limit="channels"}`, requests-channels)
	for _, sess := range sessionsJSON(t, s) {
		if sess.Client == attacker.conn.LocalAddr().String() && (len(sess.Permissions) != perms || len(sess.Channels) != channels) {
			t.Fatalf("the flooded allocation holds %d permissions and %d channels, want %d and %d",
				len(sess.Permissions), len(sess.Channels), perms, channels)
		}
	}
	l.flow.moving(t, "the legitimate client after the floods", 200) // enough packets for 1% to mean one
	l.check(t)
}

// flood sends n signed requests built by req, in windows of 50 without waiting for
// answers (they queue for pion, as an attacker's would), and returns how many succeeded;
// every other answer must be 508.
func flood(t *testing.T, c *rawClient, n int, req func(i int) []stun.Setter) (granted int) {
	t.Helper()
	const window = 50
	for start := 0; start < n; start += window {
		ids := map[[stun.TransactionIDSize]byte]bool{}
		for i := start; i < min(start+window, n); i++ {
			setters := append([]stun.Setter{stun.TransactionID}, req(i)...)
			m := stun.MustBuild(append(setters, stun.NewUsername(c.user), stun.NewRealm(c.realm), c.nonce,
				stun.NewLongTermIntegrity(c.user, c.realm, c.pass), stun.Fingerprint)...)
			ids[m.TransactionID] = true
			c.send(m.Raw)
		}
		for len(ids) > 0 {
			select {
			case m := <-c.responses:
				if !ids[m.TransactionID] {
					continue
				}
				delete(ids, m.TransactionID)
				if m.Type.Class == stun.ClassSuccessResponse {
					granted++
				} else {
					mustCode(t, "a request past the limit", m, stun.CodeInsufficientCapacity)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%d answers missing in the window from request %d", len(ids), start)
			}
		}
	}
	return granted
}

// TestHostileStuckStreams: clients that connect over TCP, TLS and DTLS and then say
// nothing, stop halfway through a frame, or never finish the TLS handshake, are all closed
// after limits.allocate_timeout and their descriptors freed; a TCP client with an
// allocation stays past it.
func TestHostileStuckStreams(t *testing.T) {
	const timeout, slack = 2 * time.Second, 4 * time.Second
	s, addrs, roots := transportSetup(t)
	s.allocateTimeout = timeout.String()
	f := startFerry(t, s.toml())
	_, udpPort, _ := net.SplitHostPort(addrs["udp"])
	port, _ := strconv.Atoi(udpPort)
	l := underAttack(t, f, s, port)
	allocated := dialRaw(t, "tcp", addrs["tcp"], testUser, testPass)
	allocated.allocate()
	goroutines := scrape(t, s.metricsAddr)["go_goroutines"]
	before := f.stats(t)
	stuck := stuckClients(t, addrs, roots, time.Now().Add(timeout+slack))
	time.Sleep(200 * time.Millisecond) // for the server to read what the clients sent
	held := f.stats(t)
	t.Logf("%d stuck connections: ferry holds %s (%s before)", len(stuck), held, before)
	if held.fds < before.fds+len(stuck)/2 {
		t.Fatalf("ferry holds %d fds with %d stuck connections, %d before: they were not accepted", held.fds, len(stuck), before.fds)
	}

	var wg sync.WaitGroup
	for name, conn := range stuck {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := conn.Read(make([]byte, 64))
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				t.Errorf("%s: still open %s after the allocate timeout", name, slack)
			case err == nil:
				t.Errorf("%s: read data from a connection Ferry should close", name)
			}
		}()
	}
	wg.Wait()
	mustSucceed(t, "Refresh on a TCP connection with an allocation, past the timeout",
		allocated.request(stun.MethodRefresh))
	// +1: the scrapes' keep-alive connection to /metrics may have been replaced.
	waitFor(t, "ferry's descriptors back to where they were", func() bool { return f.stats(t).fds <= before.fds+1 })
	waitFor(t, "ferry's goroutines back to where they were", func() bool {
		return scrape(t, s.metricsAddr)["go_goroutines"] <= goroutines+10
	})
	l.check(t)
}

// stuckClients opens connections that never make an allocation, by name. Each has the
// read deadline closeBy: one the server has not closed by then fails its read with a
// timeout.
func stuckClients(t *testing.T, addrs map[string]string, roots *x509.CertPool, closeBy time.Time) map[string]net.Conn {
	t.Helper()
	conns := map[string]net.Conn{}
	add := func(name string, c net.Conn) {
		_ = c.SetReadDeadline(closeBy)
		t.Cleanup(func() { _ = c.Close() })
		conns[name] = c
	}
	dial := func(addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for i := range 20 {
		add(fmt.Sprintf("tcp silent %d", i), dial(addrs["tcp"]))
		half := dial(addrs["tcp"])
		if _, err := half.Write([]byte{0x00, 0x03, 0x00, 0x40, 0x21, 0x12}); err != nil { // an Allocate header, cut short
			t.Fatal(err)
		}
		add(fmt.Sprintf("tcp half frame %d", i), half)
		add(fmt.Sprintf("tls no handshake %d", i), dial(addrs["tls"]))
	}
	// Frames announced at their largest (64 KiB) and never sent (TestAnnouncedFrames in
	// turnserver/ shows no buffer is made for them).
	for i := range 100 {
		big := dial(addrs["tcp"])
		if _, err := big.Write([]byte{0x40, 0x00, 0xff, 0xff, 1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		add(fmt.Sprintf("tcp big frame %d", i), big)
	}
	for i := range 10 {
		c, err := tls.Dial("tcp", addrs["tls"], &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		add(fmt.Sprintf("tls silent %d", i), c)
		raddr, _ := net.ResolveUDPAddr("udp", addrs["dtls"])
		d, err := dtls.DialWithOptions("udp", raddr, dtls.WithRootCAs(roots))
		if err != nil {
			t.Fatal(err)
		}
		add(fmt.Sprintf("dtls silent %d", i), d)
	}
	return conns
}
