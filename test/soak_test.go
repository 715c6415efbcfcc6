package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// The soak's shape. The rates are modest on purpose: the machine has two cores, other tests
// may share it and ferry is built with the race detector; a leak shows over time, not load.
const (
	// soakDefault is the soak's length when FERRY_SOAK is unset, so that `make test` always
	// runs it; `make soak` sets FERRY_SOAK=10m (30s in CI).
	soakDefault = 5 * time.Second
	// soakPool is the relay pool: the SFU's ICE port, the live allocations and the abandoned
	// ones that wait out vanishLifetime, with room to spare (relayRange blocks are 200 wide).
	soakPool = 150
	// vanishLifetime is the LIFETIME an abandoned allocation asks for: pion honours any
	// LIFETIME under an hour, so these expire while the soak runs, through the timer path.
	vanishLifetime = 3 * time.Second
	// vanishGrace is how long after vanishLifetime an abandoned client's socket stays open.
	vanishGrace = 2 * time.Second
	// vanishEvery: one TURN round in this many leaves without deleting its allocation.
	vanishEvery = 4
	// packetsPerPath is how many packets a TURN round sends per channel and by Send
	// indication; at least one echo per path must come back.
	packetsPerPath = 5
	echoWait       = 3 * time.Second
	// A soak of soakProgressMin or more logs the server's state soakProgressRows times
	// while it runs, but at most every soakProgressMax.
	soakProgressMin  = 20 * time.Second
	soakProgressRows = 5
	soakProgressMax  = time.Minute
	// sfuPackets is what each subscriber must receive before its round ends.
	sfuPackets = 20
)

// Tolerances: how far the end state may be from the baseline once the churn has stopped
// and the server has had settleTimeout to let go. Every run prints them with its numbers.
const (
	// Every relay port must be back in the pool: a port is either leaked or not.
	portSlack = 0
	// A few goroutines may come and go without a leak (an HTTP keep-alive connection of
	// the scrape, a socket being closed); measured: none, 5 s to 10 min. A leak per
	// allocation or session would be hundreds after a 10-minute soak.
	goroutineSlack = 10
	// The same for files; measured: none.
	fdSlack = 5
	// Live heap (go_memstats_alloc_bytes right after a GC forced through the profiler) is
	// the exact measure of a Go heap leak. Measured: -1.1 to +2.6 MiB, 5 s to 10 min; a heap
	// profile shows what stays: goroutine descriptors kept after the peak (runtime.malg),
	// map buckets that do not shrink (the data plane's routes, the pool's relays) and the
	// pion state of one or two ended WHIP publishers, not more after 200 than after one.
	// 8 MiB catches a leak of about 300 bytes per churned operation over 10 minutes.
	heapSlackMiB = 8
	// RSS is a coarse backstop for what the heap does not show. The race detector, which
	// the harness always builds in, makes it grow without a leak in ferry: its own memory
	// (shadow and metadata outside the Go heap, by /proc/PID/smaps) grows with the work
	// done, the known golang/go#63276. Measured: +32 to +35 MiB after 5 s, +33 to +46
	// after 30 s, +43 to +57 after 2 min, +64 after 3 min, +68 to +81 after 10 min (3 to
	// 5.5 MiB a minute after the first); the same soak against a build without -race stays
	// at +5.6 MiB over 4 min. The bound is a base plus 1.5 to 2.5 times that slope: over 10
	// minutes a leak must add about 2 KiB per churned operation (some 30,000) to cross it;
	// the heap bound above is the fine one.
	rssSlackMiB       = 64
	rssSlackPerMinMiB = 8
	// settleTimeout bounds the wait for the end state: abandoned allocations expire after
	// vanishLifetime, pion's and the SFU's goroutines end asynchronously.
	settleTimeout = 20 * time.Second
)

// soakTally counts what the churn did; every count must be above zero at the end, or the
// soak churned nothing of that kind and proves nothing about it.
type soakTally struct {
	udpAllocs, tcpControlAllocs, vanished, permissions, channels atomic.Int64
	sent, echoes                                                 atomic.Int64
	tcpAllocs, tcpConnections                                    atomic.Int64
	publishers, subscribers, rtpPackets                          atomic.Int64
	rounds                                                       map[string]*atomic.Int64
}

// soakCount is one row of the tally.
type soakCount struct {
	name string
	n    *atomic.Int64
}

func (c *soakTally) rows() []soakCount {
	return []soakCount{
		{"UDP allocations (over UDP)", &c.udpAllocs},
		{"UDP allocations (over TCP)", &c.tcpControlAllocs},
		{"abandoned allocations", &c.vanished},
		{"CreatePermissions", &c.permissions},
		{"ChannelBinds", &c.channels},
		{"packets sent to peers", &c.sent},
		{"echoes received", &c.echoes},
		{"TCP allocations (RFC 6062)", &c.tcpAllocs},
		{"TCP peer connections", &c.tcpConnections},
		{"WHIP publishers", &c.publishers},
		{"WHEP subscribers", &c.subscribers},
		{"RTP packets received", &c.rtpPackets},
	}
}

// soak is the server under test and the peers the churn talks to.
type soak struct {
	s        *setup
	f        *ferry
	turnAddr string
	pprof    string
	udpPeers []netip.AddrPort
	tcpPeers []string
	tol      soakTolerance
	tally    soakTally
}

// soakWorker is one kind of churn: count workers run its round over and over.
type soakWorker struct {
	kind  string
	count int
	pause time.Duration // between rounds, to keep the rate modest
	round func(t *testing.T, n int)
}

// TestSoak churns allocations (UDP over UDP and over TCP, with permissions, channels and
// data, some abandoned to expire), RFC 6062 TCP allocations and SFU publishers with
// subscribers for FERRY_SOAK (default soakDefault), then checks that goroutines, open
// files, relay ports, live heap and RSS come back to what they were after a warm-up.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	k := newSoak(t)
	k.tol = tolerance(duration)
	workers := k.workers()
	for _, w := range workers {
		k.tally.rounds[w.kind] = &atomic.Int64{}
	}
	// One round of each kind first, so that lazily made pools and goroutines are part of
	// the baseline rather than counted as growth.
	if !t.Run("warmup", func(t *testing.T) {
		for _, w := range workers {
			w.round(t, 0)
		}
	}) {
		return
	}
	base := k.settle(t, nil)
	until := time.Now().Add(duration)
	// Each worker is a subtest, so the helpers' t.Fatal ends only that worker and fails the
	// soak. They are not t.Parallel: -parallel (GOMAXPROCS, 2 here) would run them two at a
	// time; t.Run from several goroutines runs them all at once.
	t.Run("churn", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, w := range workers {
			for i := range w.count {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t.Run(fmt.Sprintf("%s%d", w.kind, i), func(t *testing.T) { k.churn(t, w, until) })
				}()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run("progress", func(t *testing.T) { k.progress(t, duration, until) })
		}()
		wg.Wait()
	})
	end := k.settle(t, &base)
	k.report(t, duration, workers, base, end)
	k.check(t, workers, base, end)
}

// soakDuration is FERRY_SOAK as a Go duration, or soakDefault.
func soakDuration(t *testing.T) time.Duration {
	env := os.Getenv("FERRY_SOAK")
	if env == "" {
		return soakDefault
	}
	d, err := time.ParseDuration(env)
	if err != nil || d <= 0 {
		t.Fatalf("FERRY_SOAK=%q: want a positive Go duration such as 30s or 10m", env)
	}
	return d
}

// newSoak starts ferry with loopback peers allowed, no per-user quota (one user holds every
// allocation), no 401 rate limit (every new client of the churn starts with a 401 from
// 127.0.0.1; TestUnauthenticatedRate covers the limit), the SFU and the profiler.
func newSoak(t *testing.T) *soak {
	s, port := newSetup(t, soakPool)
	s.allowPeers = []string{"127.0.0.1/32"}
	s.perUser = 0
	s.unauthRate = 0
	s.sfuAddr = addrString("127.0.0.1", freePort(t, "127.0.0.1"))
	s.tokenSecret = sfuTokenSecret
	k := &soak{s: s, turnAddr: addrString("127.0.0.1", port), pprof: addrString("127.0.0.1", freePort(t, "127.0.0.1")),
		tally: soakTally{rounds: map[string]*atomic.Int64{}}}
	for range 3 {
		k.udpPeers = append(k.udpPeers, udpPeer(t, "127.0.0.1"))
	}
	for range 2 {
		k.tcpPeers = append(k.tcpPeers, tcpEchoPeer(t))
	}
	k.f = startFerry(t, s.toml()+fmt.Sprintf("[debug]\npprof = %q\n", k.pprof))
	return k
}

// tcpEchoPeer is a TCP echo peer on 127.0.0.1: every connection gets back what it sends.
func tcpEchoPeer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(conn, conn); _ = conn.Close() }()
		}
	}()
	return ln.Addr().String()
}

// workers is the churn: four UDP clients, one TURN-over-TCP client, one RFC 6062 client
// and one SFU room at a time.
func (k *soak) workers() []soakWorker {
	return []soakWorker{
		{kind: "udp", count: 4, pause: 100 * time.Millisecond,
			round: func(t *testing.T, n int) { k.turnRound(t, "udp", n) }},
		{kind: "tcp", count: 1, pause: 100 * time.Millisecond,
			round: func(t *testing.T, n int) { k.turnRound(t, "tcp", n) }},
		{kind: "tcpalloc", count: 1, pause: 100 * time.Millisecond, round: k.tcpAllocRound},
		{kind: "sfu", count: 1, pause: 200 * time.Millisecond, round: k.sfuRound},
	}
}

// churn runs w's rounds until the soak's time is up.
func (k *soak) churn(t *testing.T, w soakWorker, until time.Time) {
	for n := 1; time.Now().Before(until); n++ {
		w.round(t, n)
		k.tally.rounds[w.kind].Add(1)
		time.Sleep(w.pause)
	}
}

// turnRound is one allocation's life over network ("udp" or "tcp"): permissions for the
// echo peers, one or two channels, ChannelData and Send indications that must echo, then a
// delete — or, every vanishEvery-th round, the client just goes away: over UDP the
// allocation must expire, over TCP closing the connection must end it.
func (k *soak) turnRound(t *testing.T, network string, n int) {
	c := dialRaw(t, network, k.turnAddr, testUser, testPass)
	vanish := n%vanishEvery == 1
	if vanish && network == "udp" {
		c.allocate(lifetime(vanishLifetime))
		// The client falls silent but keeps its socket until the allocation has expired:
		// were its port free, the kernel could give it to the next client, whose Allocate
		// from the same 5-tuple would rightly get 437 Allocation Mismatch.
		defer time.AfterFunc(vanishLifetime+vanishGrace, func() { _ = c.conn.Close() })
	} else {
		// dialRaw's cleanup would close it only when the worker ends. An abandoned TCP
		// allocation keeps the default lifetime: only the closing must end it.
		defer c.conn.Close()
		c.allocate()
	}
	if network == "udp" {
		k.tally.udpAllocs.Add(1)
	} else {
		k.tally.tcpControlAllocs.Add(1)
	}
	for _, peer := range k.udpPeers {
		mustSucceed(t, "CreatePermission", c.request(stun.MethodCreatePermission, testkit.PeerAddr(peer)))
		k.tally.permissions.Add(1)
	}
	channels := 1 + n%2
	for i := range channels {
		mustSucceed(t, "ChannelBind", c.request(stun.MethodChannelBind, channelNumber(0x4000+uint16(i)),
			testkit.PeerAddr(k.udpPeers[i])))
		k.tally.channels.Add(1)
	}
	k.exchange(t, c, channels)
	if vanish {
		k.tally.vanished.Add(1)
		return
	}
	mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
}

// exchange sends packetsPerPath packets on each bound channel and by Send indication to the
// last peer, and waits for the echoes: loopback may drop a datagram under load, so a path
// needs one echo, and the rest are counted.
func (k *soak) exchange(t *testing.T, c *rawClient, channels int) {
	t.Helper()
	indicationPeer := k.udpPeers[len(k.udpPeers)-1]
	for i := range packetsPerPath {
		for ch := range channels {
			c.channelData(0x4000+uint16(ch), []byte(fmt.Sprintf("soak channel %d packet %d", ch, i)))
		}
		c.sendIndication(indicationPeer, []byte(fmt.Sprintf("soak indication packet %d", i)))
	}
	k.tally.sent.Add(int64(packetsPerPath * (channels + 1)))
	got := map[uint16]int{} // by channel; 0 is the Data indications
	for want := packetsPerPath * (channels + 1); want > 0; want-- {
		d, err := c.nextData(echoWait)
		if err != nil {
			break
		}
		if d.channel == 0 && d.peer != indicationPeer {
			t.Fatalf("Data indication from %v, want %v", d.peer, indicationPeer)
		}
		got[d.channel]++
		k.tally.echoes.Add(1)
	}
	for ch := range channels {
		if got[0x4000+uint16(ch)] == 0 {
			t.Fatalf("no echo on channel %#x (echoes by channel: %v)", 0x4000+ch, got)
		}
	}
	if got[0] == 0 {
		t.Fatalf("no Data indication echoed (echoes by channel: %v)", got)
	}
}

// tcpAllocRound is one RFC 6062 allocation: connections to one or two TCP echo peers
// (Connect, then ConnectionBind on a data connection), open at once, an echo on each, then
// everything closes. Each goes to a peer of its own: a second Connect to the same peer is
// rightly answered 446 while the server has not yet seen the first one close.
func (k *soak) tcpAllocRound(t *testing.T, n int) {
	conn, err := net.Dial("tcp", k.turnAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := turnClient(t, turn.NewSTUNConn(conn), k.turnAddr, testUser, testPass, turn.RequestedAddressFamilyIPv4)
	defer func() { c.Close(); _ = conn.Close() }() // turnClient's cleanup comes only when the worker ends
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	defer alloc.Close()
	k.tally.tcpAllocs.Add(1)
	for i, peer := range k.tcpPeers[:1+n%2] {
		out, err := alloc.Dial("tcp", peer)
		if err != nil {
			t.Fatalf("Dial %s through the TCP allocation: %v", peer, err)
		}
		defer out.Close()
		expectEcho(t, out, fmt.Sprintf("soak round %d connection %d over RFC 6062", n, i))
		k.tally.tcpConnections.Add(1)
	}
}

// sfuRound publishes in a room of its own, subscribes one to three WHEP clients that must
// each receive sfuPackets, then deletes every session. A round is a subtest of its own:
// the publisher's sender and the peer connections stop at its cleanup.
func (k *soak) sfuRound(t *testing.T, n int) {
	t.Run(fmt.Sprintf("round%d", n), func(t *testing.T) {
		room := fmt.Sprintf("soak-%d", n)
		pub, pubSess := publishVideo(t, k.s, room, peerOptions{}, "")
		k.tally.publishers.Add(1)
		url := "http://" + k.s.sfuAddr + "/whep/" + room + "/" + streamID(pubSess)
		var subs []sfuSession
		var receivers []*received
		for i := range 1 + n%3 {
			sub, got := newSubscriber(t, peerOptions{})
			sess, status := signal(t, sub, url, accessToken(t, room, false, true, time.Hour))
			if status != http.StatusCreated {
				t.Fatalf("WHEP subscriber %d: %d", i, status)
			}
			waitConnected(t, sub)
			got.waitFor(t, fmt.Sprintf("%d packets at subscriber %d", sfuPackets, i),
				func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= sfuPackets })
			k.tally.subscribers.Add(1)
			subs, receivers = append(subs, sess), append(receivers, got)
		}
		for _, got := range receivers {
			got.mu.Lock()
			k.tally.rtpPackets.Add(int64(len(got.counter)))
			got.mu.Unlock()
		}
		for _, sess := range append(subs, pubSess) {
			if resp := sess.do(t, http.MethodDelete, "", "", ""); resp.StatusCode != http.StatusOK {
				t.Fatalf("DELETE %s: %s", sess.resource, resp.Status)
			}
		}
		_ = pub.pc.Close()
	})
}

// progress logs the server's state now and then while the churn runs, so that a long
// soak shows a trend and not only its two ends.
func (k *soak) progress(t *testing.T, d time.Duration, until time.Time) {
	if d < soakProgressMin {
		return
	}
	every := min(d/soakProgressRows, soakProgressMax)
	start := time.Now()
	for {
		next := time.Now().Add(every)
		if next.After(until) {
			return
		}
		time.Sleep(time.Until(next))
		t.Logf("after %v: %s", time.Since(start).Round(time.Second), k.sample(t))
	}
}

// soakSample is the server's state at one moment.
type soakSample struct {
	goroutines, ports, allocations, sfuSessions float64
	heapMiB                                     float64 // live heap after a forced GC
	proc                                        procStats
}

// sample reads ferry's metrics and /proc entries, right after a GC forced through the
// profiler (a heap profile with gc=1), so that the heap is what is live.
func (k *soak) sample(t *testing.T) soakSample {
	t.Helper()
	if _, status := httpGet(t, "http://"+k.pprof+"/debug/pprof/heap?gc=1"); status != http.StatusOK {
		t.Fatalf("heap profile: %d", status)
	}
	m := scrape(t, k.s.metricsAddr)
	smp := soakSample{goroutines: m["go_goroutines"], ports: m["ferry_relay_ports_in_use"],
		sfuSessions: m["ferry_sfu_publishers"] + m["ferry_sfu_subscribers"],
		heapMiB:     m["go_memstats_alloc_bytes"] / (1 << 20)}
	for series, v := range m {
		if strings.HasPrefix(series, "ferry_allocations_active{") {
			smp.allocations += v
		}
	}
	smp.proc = k.f.stats(t)
	return smp
}

func (smp soakSample) String() string {
	return fmt.Sprintf("%.0f goroutines, %s, live heap %.1f MiB, %.0f relay ports, %.0f allocations, %.0f SFU sessions",
		smp.goroutines, smp.proc, smp.heapMiB, smp.ports, smp.allocations, smp.sfuSessions)
}

// soakTolerance is how much more of each the end state may hold than the baseline.
type soakTolerance struct{ goroutines, fds, ports, heapMiB, rssMiB float64 }

// tolerance is the tolerance for a soak of d: only the RSS bound grows with it.
func tolerance(d time.Duration) soakTolerance {
	return soakTolerance{goroutines: goroutineSlack, fds: fdSlack, ports: portSlack, heapMiB: heapSlackMiB,
		rssMiB: rssSlackMiB + rssSlackPerMinMiB*d.Minutes()}
}

// within reports whether end is within tol of base, with no allocation or SFU session left.
func (end soakSample) within(base soakSample, tol soakTolerance) bool {
	return end.allocations == 0 && end.sfuSessions == 0 &&
		end.ports <= base.ports+tol.ports &&
		end.goroutines <= base.goroutines+tol.goroutines &&
		float64(end.proc.fds) <= float64(base.proc.fds)+tol.fds &&
		end.heapMiB <= base.heapMiB+tol.heapMiB &&
		float64(end.proc.rssKiB)/1024 <= float64(base.proc.rssKiB)/1024+tol.rssMiB
}

// settle waits for the server to be idle and returns its state. For the baseline (base
// nil) idle means no allocations or SFU sessions, and then a second more for their
// goroutines to end; for the end state it means within the tolerances of base, waiting up
// to settleTimeout before giving the last sample.
func (k *soak) settle(t *testing.T, base *soakSample) soakSample {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		// Idle keep-alive connections to the SFU hold a goroutine and a file in ferry.
		http.DefaultClient.CloseIdleConnections()
		smp := k.sample(t)
		idle := smp.allocations == 0 && smp.sfuSessions == 0
		switch {
		case base == nil && idle:
			time.Sleep(time.Second)
			return k.sample(t)
		case base != nil && smp.within(*base, k.tol):
			return smp
		case time.Now().After(deadline):
			return smp
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// report prints what the soak did and the numbers on stdout, which `make soak` shows (it
// runs go test in the package's directory, where output is shown whatever the outcome).
func (k *soak) report(t *testing.T, d time.Duration, workers []soakWorker, base, end soakSample) {
	var b strings.Builder
	fmt.Fprintf(&b, "soak %v: rounds", d)
	for _, w := range workers {
		fmt.Fprintf(&b, " %s=%d", w.kind, k.tally.rounds[w.kind].Load())
	}
	fmt.Fprintf(&b, "\n%-28s %12s\n", "operation", "count")
	for _, r := range k.tally.rows() {
		fmt.Fprintf(&b, "%-28s %12d\n", r.name, r.n.Load())
	}
	m := scrape(t, k.s.metricsAddr)
	for _, c := range []struct{ name, series string }{
		{"relayed to peers", toPeerPackets},
		{"relayed from peers", fromPeerPackets},
		{"SFU forwarded", "ferry_sfu_forwarded_packets_total"},
	} {
		fmt.Fprintf(&b, "%-28s %12.0f  (metric %s)\n", c.name, m[c.series], c.series)
	}
	fmt.Fprintf(&b, "%-16s %10s %10s %10s %10s\n", "measure", "baseline", "end", "delta", "tolerance")
	row := func(name string, base, end, slack float64) {
		fmt.Fprintf(&b, "%-16s %10.1f %10.1f %+10.1f %+10.1f\n", name, base, end, end-base, slack)
	}
	row("goroutines", base.goroutines, end.goroutines, k.tol.goroutines)
	row("open fds", float64(base.proc.fds), float64(end.proc.fds), k.tol.fds)
	row("live heap MiB", base.heapMiB, end.heapMiB, k.tol.heapMiB)
	row("RSS MiB", float64(base.proc.rssKiB)/1024, float64(end.proc.rssKiB)/1024, k.tol.rssMiB)
	row("relay ports", base.ports, end.ports, k.tol.ports)
	row("allocations", base.allocations, end.allocations, 0)
	row("SFU sessions", base.sfuSessions, end.sfuSessions, 0)
	fmt.Print(b.String())
}

// check fails the soak when a worker kind never ran, an operation never happened, or the
// end state is outside the tolerances; then ferry's goroutines are logged for the hunt.
func (k *soak) check(t *testing.T, workers []soakWorker, base, end soakSample) {
	for _, w := range workers {
		if k.tally.rounds[w.kind].Load() == 0 {
			t.Errorf("no %s round completed: the soak did not churn it", w.kind)
		}
	}
	for _, r := range k.tally.rows() {
		if r.n.Load() == 0 {
			t.Errorf("%s: none in the whole soak", r.name)
		}
	}
	if end.within(base, k.tol) {
		return
	}
	t.Errorf("after %v the server did not come back to its baseline within the tolerances:\nbaseline %s\nend      %s",
		settleTimeout, base, end)
	dump, _ := httpGet(t, "http://"+k.pprof+"/debug/pprof/goroutine?debug=1")
	t.Logf("ferry's goroutines:\n%s", dump)
}
