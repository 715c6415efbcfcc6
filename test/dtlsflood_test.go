package test

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/turn/v5"
)

// TestDTLSFlood: twice, 20,000 DTLS ClientHellos in 4 s, each from a new source port, on
// 16 source IPs, at a Ferry with the default caps on DTLS handshakes, while a UDP client
// relays and DTLS clients allocate. The flooder never returns a cookie, as a spoofed
// source could not. Ferry's goroutines and memory stay bounded, its DTLS clients
// allocate during each flood and after it, and after each flood its goroutines and live
// heap are back where they were. Its RSS is not: the Go runtime hands freed memory back
// to the kernel only minutes later, so RSS is bounded at its peak.
//
// The 16 IPs' per-IP caps (32 each) stay under the total cap (1000): a flood that fills
// the total from more addresses also keeps new DTLS clients out until it ends or its
// peers give up (3 s without a cookie), which dtlsgate's unit tests show.
func TestDTLSFlood(t *testing.T) {
	const (
		// The gate holds at most floodIPs x 32 handshakes in progress, each 4 goroutines
		// (5 while pion writes). Measured on 2 cores with the race-built Ferry, which
		// holds some 8 times the memory of a normal build: the gate about 2,060
		// goroutines and 230 MiB more RSS at the peak (normal build: 23 MiB); the
		// listener before it, a connection for every ClientHello, over 22,000 goroutines
		// and 1.5 GiB more RSS.
		maxGoroutineGrowth = floodIPs * 32 * 5
		maxRSSGrowth       = 400 << 20
		// maxHeapGrowth is how much more live heap Ferry may hold after a flood than
		// before (measured: at most 1.2 MiB).
		maxHeapGrowth = 4 << 20
	)
	s, addrs, roots := transportSetup(t)
	pprof := addrString("127.0.0.1", freePort(t, "127.0.0.1"))
	f := startFerry(t, s.toml()+fmt.Sprintf("[debug]\npprof = %q\n", pprof))
	_, udpPort, _ := net.SplitHostPort(addrs["udp"])
	port, _ := strconv.Atoi(udpPort)
	l := underAttack(t, f, s, port)
	fl := &dtlsFlooder{f: f, s: s, addr: addrs["dtls"], roots: roots, hello: pionClientHello(t),
		base: scrape(t, s.metricsAddr)["go_goroutines"]}
	before, heap := f.stats(t).rssKiB<<10, liveHeap(t, s, pprof)

	for round := 1; round <= 2; round++ {
		goroutines, rss := fl.round(t)
		after := liveHeap(t, s, pprof)
		t.Logf("flood %d: ferry before: %.0f goroutines, RSS %.1f MiB, live heap %.1f MiB; peak: %.0f goroutines, RSS %.1f MiB; after: live heap %.1f MiB",
			round, fl.base, mib(before), mib(heap), goroutines, mib(rss), mib(after))
		if goroutines > fl.base+maxGoroutineGrowth {
			t.Errorf("flood %d: ferry ran %.0f goroutines, %.0f before: want at most %d more", round, goroutines, fl.base, maxGoroutineGrowth)
		}
		if rss-before > maxRSSGrowth {
			t.Errorf("flood %d: ferry's RSS grew by %.1f MiB, want at most %.0f", round, mib(rss-before), mib(maxRSSGrowth))
		}
		if after-heap > maxHeapGrowth {
			t.Errorf("flood %d: ferry holds %.1f MiB more live heap than before it, want at most %.0f", round, mib(after-heap), mib(maxHeapGrowth))
		}
	}
	m := scrape(t, s.metricsAddr)
	t.Logf("after: %.0f goroutines, %s; %.0f refused by the per-IP cap, %.0f by the total, %.0f HelloVerifyRequests",
		m["go_goroutines"], f.stats(t), m[`ferry_dtls_handshakes_refused_total{reason="per_ip"}`],
		m[`ferry_dtls_handshakes_refused_total{reason="total"}`], m["ferry_dtls_hello_verify_total"])
	m.atLeast(t, `ferry_dtls_handshakes_refused_total{reason="per_ip"}`, floodHellos)
	m.atLeast(t, `ferry_dtls_handshakes_total{result="cookie_timeout"}`, 2*floodIPs)
	m.want(t, `ferry_dtls_handshakes_total{result="ok"}`, 4)
	checkFlow(t, l)
}

// One flood of TestDTLSFlood.
const (
	floodHellos = 20000
	floodIPs    = 16
	floodTime   = 4 * time.Second
)

// dtlsFlooder floods a Ferry's dtls listener with a ClientHello.
type dtlsFlooder struct {
	f     *ferry
	s     *setup
	addr  string
	roots *x509.CertPool
	hello []byte
	base  float64 // Ferry's goroutines before any flood
}

// round floods once, with a DTLS client allocating meanwhile, and returns the highest
// goroutine count and RSS (bytes) Ferry reached. It waits for the flood's handshakes to
// be gone and Ferry's goroutines to be back, and has a DTLS client allocate then.
func (fl *dtlsFlooder) round(t *testing.T) (goroutines float64, rss int64) {
	t.Helper()
	peak := watchPeak(fl.f.cmd.Process.Pid, fl.s.metricsAddr)
	defer peak() // should the test fail first
	flood := floodHellosFrom(netip.MustParseAddrPort(fl.addr), fl.hello, floodHellos, floodIPs, floodTime)
	defer flood.wait()
	dtlsAllocate(t, fl.addr, fl.roots)
	if flood.done() {
		t.Errorf("the flood was over before the DTLS client had allocated: nothing shown about during")
	}
	if sent := flood.wait(); sent < floodHellos*9/10 {
		t.Fatalf("only %d of %d ClientHellos sent", sent, floodHellos)
	}
	goroutines, rss = peak()
	// The peers that never returned a cookie give up their places within 3 s.
	waitLonger(t, "no DTLS handshake in progress", func() bool {
		return scrape(t, fl.s.metricsAddr)["ferry_dtls_handshakes_in_progress"] == 0
	})
	waitLonger(t, "ferry's goroutines back", func() bool {
		return scrape(t, fl.s.metricsAddr)["go_goroutines"] <= fl.base+10
	})
	dtlsAllocate(t, fl.addr, fl.roots)
	return goroutines, rss
}

// checkFlow is legit.check without its bound on RSS, which a race-built Ferry under this
// flood goes far past (see maxRSSGrowth): the legitimate client lost at most
// maxLegitLoss of its echoes, and Ferry holds no more descriptors than before.
func checkFlow(t *testing.T, l *legit) {
	t.Helper()
	lost, sent := l.flow.loss()
	after, fdLimit := l.settled(t)
	t.Logf("legitimate UDP client: %.2f%% of %d packets lost; ferry holds %d fds, %d before", lost*100, sent, after.fds, l.before.fds)
	if sent < minLegitSent || lost > maxLegitLoss {
		t.Errorf("the legitimate UDP client lost %.2f%% of %d echoes, want at most %.0f%% of %d or more",
			lost*100, sent, maxLegitLoss*100, minLegitSent)
	}
	if after.fds > fdLimit {
		t.Errorf("ferry holds %d descriptors after the flood, %d before; want at most %d", after.fds, l.before.fds, fdLimit)
	}
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

// liveHeap returns the bytes of Ferry's heap in use right after two garbage collections,
// forced through its profiler (a heap profile with gc=1): a sync.Pool keeps what it held
// through the first.
func liveHeap(t *testing.T, s *setup, pprof string) int64 {
	t.Helper()
	for range 2 {
		if _, status := httpGet(t, "http://"+pprof+"/debug/pprof/heap?gc=1"); status != http.StatusOK {
			t.Fatalf("heap profile: %d", status)
		}
	}
	return int64(scrape(t, s.metricsAddr)["go_memstats_alloc_bytes"])
}

// waitLonger polls cond for up to 20 s.
func waitLonger(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// dtlsAllocate allocates over DTLS with pion's TURN client, relays through the
// allocation, and closes the connection.
func dtlsAllocate(t *testing.T, addr string, roots *x509.CertPool) {
	t.Helper()
	conn := dialTransport(t, "dtls", addr, roots)
	defer conn.Close()
	c := turnClient(t, conn, addr, testUser, testPass, turn.RequestedAddressFamilyIPv4)
	defer c.Close()
	relayConn, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate over DTLS: %v", err)
	}
	defer relayConn.Close()
	echoAll(t, relayConn, net.UDPAddrFromAddrPort(udpPeer(t, "127.0.0.1")), 10)
}

// pionClientHello returns the first datagram pion's DTLS client sends: a ClientHello
// without a cookie, as a flooder would replay it.
func pionClientHello(t *testing.T) []byte {
	t.Helper()
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	conn, err := dtls.DialWithOptions("udp4", sink.LocalAddr().(*net.UDPAddr), dtls.WithInsecureSkipVerify(true))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = conn.HandshakeContext(ctx) })
	defer func() { cancel(); wg.Wait(); _ = conn.Close() }()
	_ = sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2048)
	n, err := sink.Read(b)
	if err != nil {
		t.Fatalf("no ClientHello from pion: %v", err)
	}
	return b[:n]
}

// helloFlood sends datagrams in the background.
type helloFlood struct {
	sent     atomic.Int64
	finished chan struct{}
}

func (f *helloFlood) done() bool {
	select {
	case <-f.finished:
		return true
	default:
	}
	return false
}

// wait returns how many were sent once all are.
func (f *helloFlood) wait() int {
	<-f.finished
	return int(f.sent.Load())
}

// floodHellosFrom sends hello n times to dst, evenly over d and never for longer than 2d,
// each time from a new socket (a new source port) on one of ips addresses 127.0.1.x.
func floodHellosFrom(dst netip.AddrPort, hello []byte, n, ips int, d time.Duration) *helloFlood {
	f := &helloFlood{finished: make(chan struct{})}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n) && time.Since(start) < 2*d; i = next.Add(1) - 1 {
				if wait := time.Until(start.Add(d * time.Duration(i) / time.Duration(n))); wait > 0 {
					time.Sleep(wait) // pacing: the flood is bounded in rate
				}
				src := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + int(i)%ips)})
				if sendFrom(src, dst, hello) == nil {
					f.sent.Add(1)
				}
			}
		})
	}
	go func() { wg.Wait(); close(f.finished) }()
	return f
}

func sendFrom(src netip.Addr, dst netip.AddrPort, b []byte) error {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WriteToUDPAddrPort(b, dst)
	return err
}

// watchPeak samples a process's goroutines (from its metrics) and RSS every 100 ms
// until the returned function is first called; it returns the highest of each (RSS in
// bytes).
func watchPeak(pid int, metricsAddr string) func() (goroutines float64, rss int64) {
	stop := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	var maxG float64
	var maxRSS int64
	sample := func() {
		if g, err := goroutinesOf(metricsAddr); err == nil {
			maxG = max(maxG, g)
		}
		if r, err := rssOf(pid); err == nil {
			maxRSS = max(maxRSS, r)
		}
	}
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	return func() (float64, int64) {
		once.Do(func() {
			close(stop)
			wg.Wait()
			sample()
		})
		return maxG, maxRSS
	}
}

func goroutinesOf(metricsAddr string) (float64, error) {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no go_goroutines in %s's metrics", metricsAddr)
}

func rssOf(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}
