package test

// The kernel fast path ([relay] offload), end to end, where the kernel path is real: Ferry
// in a network namespace of its own with two veth legs, clients in the world's root
// namespace and peers in a third:
//
//	root (clients) 198.51.100.2 ─ c0 ══ s0 198.51.100.1 [srv: Ferry] 203.0.113.1 s1 ══ p0 ─ 203.0.113.2 [peer]
//
// turnutils_uclient, pion/turn and a raw client relay to peers there with offload on, off,
// and without the capabilities; every message must arrive both ways and the counters must
// say who relayed it. Needs what the namespace tests need and an eBPF-capable kernel (root
// loads it); FERRY_TEST_REQUIRE_BPF=1 (CI) fails instead of skipping when the kernel path
// cannot be had.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

const (
	offSrvIP    = "198.51.100.1"
	offClientIP = "198.51.100.2"
	offPeerIP   = "203.0.113.2"
	offToken    = "offload-test-admin-token"
	requireBPF  = "FERRY_TEST_REQUIRE_BPF"
)

// offloadWorld builds the three namespaces above inside the test's world.
func offloadWorld(t *testing.T) *netnsWorld {
	t.Helper()
	w := newNetnsWorld(t)
	w.addNamespace("srv")
	w.addNamespace("peer")
	w.sh("ip", "link", "add", "c0", "type", "veth", "peer", "name", "s0", "netns", "srv")
	w.sh("ip", "addr", "add", offClientIP+"/24", "dev", "c0")
	w.sh("ip", "link", "set", "c0", "up")
	w.sh("ip", "link", "add", "s1", "netns", "srv", "type", "veth", "peer", "name", "p0", "netns", "peer")
	w.shIn("srv", "ip", "addr", "add", offSrvIP+"/24", "dev", "s0")
	w.shIn("srv", "ip", "addr", "add", "203.0.113.1/24", "dev", "s1")
	w.shIn("srv", "ip", "link", "set", "s0", "up")
	w.shIn("srv", "ip", "link", "set", "s1", "up")
	w.shIn("peer", "ip", "addr", "add", offPeerIP+"/24", "dev", "p0")
	w.shIn("peer", "ip", "link", "set", "p0", "up")
	w.shIn("peer", "ip", "route", "add", "default", "via", "203.0.113.1")
	return w
}

// offloadSetup is Ferry on s0's address, relaying from every address (public_ip s0's),
// metrics and admin on s0's address too, where the root namespace reaches them.
func offloadSetup(t *testing.T, offload string) (*setup, string) {
	t.Helper()
	min, max := relayRange(50)
	s := &setup{
		listeners: []listenSpec{{proto: "udp", addr: addrString(offSrvIP, 3478)}},
		bindIP:    "0.0.0.0", publicIP: offSrvIP, minPort: min, maxPort: max,
		usersFile: t.TempDir() + "/users.toml", secrets: []string{testSecret}, perUser: 100,
		drainTimeout: "0s", metricsAddr: addrString(offSrvIP, 9641), adminAddr: addrString(offSrvIP, 9642),
		adminToken: offToken, offload: offload,
	}
	addUser(t, s.usersFile, testUser, testPass)
	return s, addrString(offSrvIP, 3478)
}

// startOffloadFerry starts Ferry in srv (under prefix, e.g. setpriv) and returns it with
// whether its log says the kernel fast path is on.
func startOffloadFerry(t *testing.T, s *setup, prefix ...string) (*ferry, bool) {
	t.Helper()
	f := startFerryVia(t, s.toml(), append([]string{"ip", "netns", "exec", "srv"}, prefix...)...)
	on := strings.Contains(f.stderr.String(), "kernel fast path on")
	return f, on
}

// needKernelPath skips (or, in CI, fails) the test when Ferry could not load the program.
func needKernelPath(t *testing.T, f *ferry, on bool) {
	t.Helper()
	if on {
		return
	}
	msg := "SKIPPED LOUDLY: the kernel fast path could not be loaded here; " + t.Name() + " cannot run:\n" + f.stderr.String()
	if os.Getenv(requireBPF) != "" {
		t.Fatalf("%s (%s is set)", msg, requireBPF)
	}
	t.Skip(msg)
}

// offScrape reads the ferry_* samples of Ferry's /metrics.
func offScrape(t *testing.T, s *setup) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ferry_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

const (
	c2p = `{direction="client_to_peer"}`
	p2c = `{direction="peer_to_client"}`
)

// startUclientPeer runs turnutils_peer in the peer namespace on 3480 and 3481.
func startUclientPeer(t *testing.T, w *netnsWorld) {
	t.Helper()
	cmd := w.command("peer", "turnutils_peer", "-L", offPeerIP, "-p", "3480")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(200 * time.Millisecond)
}

// offUclient runs turnutils_uclient from the root namespace against Ferry, relaying to the
// echo peer, and returns the messages it sent and got back.
func offUclient(t *testing.T, server string, clients, msgs, size int) (sent, recv int) {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	cmd := exec.Command("turnutils_uclient", "-e", offPeerIP, "-r", "3480", "-u", testUser, "-w", testPass,
		"-p", port, "-m", strconv.Itoa(clients), "-n", strconv.Itoa(msgs), "-l", strconv.Itoa(size), "-z", "1", host)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("turnutils_uclient: %v\n%s", err, out)
	}
	m := uclientTotals.FindAllSubmatch(out, -1)
	if m == nil {
		t.Fatalf("turnutils_uclient printed no totals:\n%s", out)
	}
	sent, _ = strconv.Atoi(string(m[len(m)-1][1]))
	recv, _ = strconv.Atoi(string(m[len(m)-1][2]))
	return sent, recv
}

// echoPeer opens a UDP echo socket in the peer namespace; got counts what it received.
func echoPeer(t *testing.T, w *netnsWorld) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	var pc net.PacketConn
	if err := w.do("peer", func() (err error) {
		pc, err = net.ListenPacket("udp4", offPeerIP+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	got := &atomic.Int64{}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got.Add(1)
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), got
}

// boundClient is a raw client with an allocation and channel 0x4001 bound to peer.
func boundClient(t *testing.T, server string, peer netip.AddrPort) *rawClient {
	t.Helper()
	c := dialRaw(t, "udp4", server, testUser, testPass)
	c.allocate()
	mustSucceed(t, "ChannelBind", c.request(stun.MethodChannelBind, channelNumber(0x4001), testkit.PeerAddr(peer)))
	return c
}

// roundTrips sends n ChannelData messages of size bytes and waits for each echo.
func roundTrips(t *testing.T, c *rawClient, n, size int) {
	t.Helper()
	payload := make([]byte, size)
	for i := range n {
		payload[0] = byte(i)
		c.channelData(0x4001, payload)
		d, err := c.nextData(2 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if d.channel != 0x4001 || len(d.payload) != size || d.payload[0] != byte(i) {
			t.Fatalf("message %d came back as channel %#x, %d bytes", i, d.channel, len(d.payload))
		}
	}
}

// unrelayed sends n messages and checks that the peer gets none of them.
func unrelayed(t *testing.T, c *rawClient, got *atomic.Int64, n int, what string) {
	t.Helper()
	before := got.Load()
	msg := []byte{0x40, 0x01, 0, 15}
	msg = append(msg, "must not arrive"...)
	for range n {
		_, _ = c.conn.Write(msg) // refused once Ferry is gone
	}
	time.Sleep(300 * time.Millisecond)
	if d := got.Load() - before; d != 0 {
		t.Fatalf("%s: the peer received %d of %d messages", what, d, n)
	}
}

func sessionsOf(t *testing.T, s *setup) []map[string]any {
	t.Helper()
	out, stderr, err := runFerry(t, "", "sessions", "list", "--json", "--admin", s.adminAddr, "--token", offToken)
	if err != nil {
		t.Fatalf("ferry sessions list: %v\n%s", err, stderr)
	}
	var list struct {
		TURN []map[string]any `json:"turn"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	return list.TURN
}

// TestOffload: with the kernel fast path, turnutils_uclient (200 and 1000 bytes), a raw
// client and pion/turn relay through Ferry; every message arrives both ways and the kernel
// relayed every ChannelData (its counters, the relay totals and `ferry sessions list`
// agree); a reload that denies the peer, a kill and the end of a drain stop the kernel
// relaying (the peer gets nothing, the kernel's counters stand still); offload off and a
// Ferry without CAP_BPF/CAP_NET_ADMIN deliver the same in user space.
func TestOffload(t *testing.T) {
	if !netnsReexec(t) {
		return
	}
	if _, err := exec.LookPath("turnutils_uclient"); err != nil {
		netnsSkip(t, "turnutils_uclient not installed (apt-get install -y coturn)")
	}
	w := offloadWorld(t)
	startUclientPeer(t, w)

	t.Run("on", func(t *testing.T) {
		s, server := offloadSetup(t, "auto")
		f, on := startOffloadFerry(t, s)
		needKernelPath(t, f, on)
		total := 0
		for _, size := range []int{200, 1000} {
			sent, recv := offUclient(t, server, 5, 400, size)
			if sent < 2000 || recv != sent {
				t.Fatalf("%d bytes: uclient sent %d, got %d back; want at least 2000, all back", size, sent, recv)
			}
			total += sent
		}
		m := offScrape(t, s)
		if m["ferry_offload_active"] != 1 || m["ferry_offload_packets_total"+c2p] != float64(total) ||
			m["ferry_offload_packets_total"+p2c] != float64(total) || m["ferry_relay_packets_total"+c2p] != float64(total) {
			t.Fatalf("after %d messages each way: offload active %v, kernel %v/%v, relay totals %v/%v", total,
				m["ferry_offload_active"], m["ferry_offload_packets_total"+c2p], m["ferry_offload_packets_total"+p2c],
				m["ferry_relay_packets_total"+c2p], m["ferry_relay_packets_total"+p2c])
		}

		peer, got := echoPeer(t, w)
		c := boundClient(t, server, peer)
		roundTrips(t, c, 100, 300)
		var sess map[string]any
		for _, x := range sessionsOf(t, s) {
			if x["client"] == c.conn.LocalAddr().String() {
				sess = x
			}
		}
		if sess["offloaded"] != true || sess["kernel_to_peer_packets"] != 100.0 || sess["kernel_from_peer_packets"] != 100.0 ||
			sess["to_peer_bytes"] != 30000.0 || sess["from_peer_bytes"] != 30000.0 {
			t.Fatalf("the session after 100 messages of 300 bytes each way: %v", sess)
		}
		table, _, err := runFerry(t, "", "sessions", "list", "--admin", s.adminAddr, "--token", offToken)
		if err != nil || !strings.Contains(table, "100 pkt 30000 B") {
			t.Fatalf("ferry sessions list shows no 100 pkt 30000 B: %v\n%s", err, table)
		}

		// pion/turn: its channel binding, then ChannelData both ways.
		before := offScrape(t, s)["ferry_offload_packets_total"+c2p]
		pionRoundTrips(t, server, peer, 200)
		if after := offScrape(t, s)["ferry_offload_packets_total"+c2p]; after-before < 150 {
			t.Fatalf("the kernel relayed %v of pion's 200 messages", after-before)
		}

		// A reload whose policy denies the peer: the kernel stops relaying, user space refuses.
		s.denyPeers = []string{"recommended", "203.0.113.0/24"}
		if err := os.WriteFile(f.dir+"/ferry.toml", []byte(s.toml()), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := runFerry(t, "", "reload", "--admin", s.adminAddr, "--token", offToken); err != nil {
			t.Fatalf("ferry reload: %v\n%s", err, stderr)
		}
		m1 := offScrape(t, s)
		unrelayed(t, c, got, 20, "after a reload that denies the peer")
		m2 := offScrape(t, s)
		if m2["ferry_offload_packets_total"+c2p] != m1["ferry_offload_packets_total"+c2p] ||
			m2[`ferry_offload_passed_total{reason="unbound"}`]-m1[`ferry_offload_passed_total{reason="unbound"}`] != 20 {
			t.Fatalf("a denied binding: kernel relayed %v more, passed up %v of 20 as unbound",
				m2["ferry_offload_packets_total"+c2p]-m1["ferry_offload_packets_total"+c2p],
				m2[`ferry_offload_passed_total{reason="unbound"}`]-m1[`ferry_offload_passed_total{reason="unbound"}`])
		}
		s.denyPeers = nil
		_ = os.WriteFile(f.dir+"/ferry.toml", []byte(s.toml()), 0o600)
		if _, stderr, err := runFerry(t, "", "reload", "--admin", s.adminAddr, "--token", offToken); err != nil {
			t.Fatalf("ferry reload: %v\n%s", err, stderr)
		}

		// Kill.
		k := boundClient(t, server, peer)
		roundTrips(t, k, 10, 100)
		id := ""
		for _, sess := range sessionsOf(t, s) {
			if sess["client"] == k.conn.LocalAddr().String() {
				id = sess["id"].(string)
			}
		}
		if _, stderr, err := runFerry(t, "", "sessions", "kill", id, "--admin", s.adminAddr, "--token", offToken); err != nil {
			t.Fatalf("ferry sessions kill %s: %v\n%s", id, err, stderr)
		}
		m1 = offScrape(t, s)
		unrelayed(t, k, got, 20, "after a kill")
		if d := offScrape(t, s)["ferry_offload_packets_total"+c2p] - m1["ferry_offload_packets_total"+c2p]; d != 0 {
			t.Fatalf("the kernel relayed %v messages of a killed allocation", d)
		}
		if offScrape(t, s)["ferry_offload_channels"] != 0 {
			t.Fatalf("channels left in the kernel: %v", offScrape(t, s)["ferry_offload_channels"])
		}

		// Drain: the live allocation goes on in the kernel until the drain ends it.
		d := boundClient(t, server, peer)
		roundTrips(t, d, 10, 100)
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.exited:
		case <-time.After(10 * time.Second):
			t.Fatal("ferry did not stop")
		}
		unrelayed(t, d, got, 20, "after the drain ended the allocation")
	})

	t.Run("off", func(t *testing.T) {
		s, server := offloadSetup(t, "off")
		startOffloadFerry(t, s)
		sent, recv := offUclient(t, server, 5, 400, 200)
		m := offScrape(t, s)
		if sent < 2000 || recv != sent || m["ferry_offload_active"] != 0 || m["ferry_offload_packets_total"+c2p] != 0 ||
			m["ferry_relay_packets_total"+c2p] != float64(sent) || m["ferry_relay_packets_total"+p2c] != float64(recv) {
			t.Fatalf("offload off: sent %d, got %d back; offload active %v, kernel %v; relay totals %v/%v", sent, recv,
				m["ferry_offload_active"], m["ferry_offload_packets_total"+c2p], m["ferry_relay_packets_total"+c2p], m["ferry_relay_packets_total"+p2c])
		}
	})

	t.Run("no capabilities", func(t *testing.T) {
		s, server := offloadSetup(t, "auto")
		f, on := startOffloadFerry(t, s, "setpriv", "--bounding-set", "-bpf,-net_admin,-sys_admin,-perfmon", "--")
		if on || !strings.Contains(f.stderr.String(), "kernel fast path off: cannot load the eBPF program: not permitted") {
			t.Fatalf("without the capabilities: want one line saying the kernel fast path is off, not permitted:\n%s", f.stderr.String())
		}
		sent, recv := offUclient(t, server, 5, 400, 200)
		if m := offScrape(t, s); sent < 2000 || recv != sent || m["ferry_offload_active"] != 0 || m["ferry_relay_packets_total"+c2p] != float64(sent) {
			t.Fatalf("fallback: sent %d, got %d back, offload active %v", sent, recv, m["ferry_offload_active"])
		}
	})
}

// pionRoundTrips relays n messages through a pion/turn client to the echo peer and waits
// for every echo.
func pionRoundTrips(t *testing.T, server string, peer netip.AddrPort, n int) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", offClientIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: testUser, Password: testPass, Realm: testRealm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	to := net.UDPAddrFromAddrPort(peer)
	buf := make([]byte, 1500)
	for i := range n {
		msg := []byte(fmt.Sprintf("pion message %d", i))
		if _, err := relayConn.WriteTo(msg, to); err != nil {
			t.Fatal(err)
		}
		_ = relayConn.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, _, err := relayConn.ReadFrom(buf)
		if err != nil || string(buf[:k]) != string(msg) {
			t.Fatalf("pion message %d: got %q, %v", i, buf[:k], err)
		}
	}
}
