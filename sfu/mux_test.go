package sfu

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
)

// TestCork: what pion writes to a corked address waits for the last release, or for a
// full batch, and then arrives whole and in order; other addresses are not held up.
func TestCork(t *testing.T) {
	mux := newTestMux(t)
	rcv, other := listenUDP(t), listenUDP(t)
	dst := rcv.LocalAddr().(*net.UDPAddr)
	path := &sendPath{mux: mux}
	ap := dst.AddrPort()
	path.dst.Store(&ap)

	write := func(to *net.UDPAddr, msg string) {
		t.Helper()
		if _, err := mux.WriteTo([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
	}
	held1, _ := path.hold()
	held2, _ := path.hold() // audio and video writers of one subscriber
	write(dst, "a")
	write(dst, "b")
	write(other.LocalAddr().(*net.UDPAddr), "not corked")
	expect(t, other, "not corked")
	expectNothing(t, rcv)
	path.release(held1)
	expectNothing(t, rcv)
	write(dst, "c")
	path.release(held2)
	for _, want := range []string{"a", "b", "c"} {
		expect(t, rcv, want)
	}

	held, _ := path.hold()
	for i := range corkBatch + 1 {
		write(dst, fmt.Sprint(i))
	}
	for i := range corkBatch { // a full batch goes at once
		expect(t, rcv, fmt.Sprint(i))
	}
	expectNothing(t, rcv)
	path.release(held)
	expect(t, rcv, fmt.Sprint(corkBatch))
	if mux.corked.Load() != 0 || len(mux.corks) != 0 {
		t.Fatalf("%d corks left", len(mux.corks))
	}
}

// TestCorkGSO: a corked video frame (packets of one size, a shorter last one) and an audio
// packet among them leave as UDP GSO datagrams, counted, and arrive as the packets they
// were, whole and in order, at a plain socket.
func TestCorkGSO(t *testing.T) {
	mux := newTestMux(t)
	rcv := listenUDP(t)
	path := &sendPath{mux: mux}
	ap := rcv.LocalAddr().(*net.UDPAddr).AddrPort()
	path.dst.Store(&ap)
	var sent []string
	held, _ := path.hold()
	for i, size := range []int{1100, 1100, 1100, 700, 160, 1100, 1100, 1100, 1100, 1100, 300} {
		p := fmt.Sprintf("%d:%s", i, strings.Repeat("x", size))[:size]
		if _, err := mux.WriteTo([]byte(p), net.UDPAddrFromAddrPort(ap)); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, p)
	}
	path.release(held)
	// two batches of corkBatch = 8 and 3: 1100×3+700 | 160 | 1100×3 ; 1100×2+300
	for _, p := range sent {
		expect(t, rcv, p)
	}
	c := mux.counts.gso
	got := fmt.Sprint(c.Sends.(*metrics.Counter).Get(), c.Segments.(*metrics.Counter).Get(), c.Fallbacks.(*metrics.Counter).Get())
	if got != "3 10 0" {
		t.Fatalf("GSO sends, segments, fallbacks: %s, want 3 10 0", got)
	}
}

// newTestMux opens an ICE socket on 127.0.0.1 with counters of its own.
func newTestMux(t *testing.T) *muxConn {
	t.Helper()
	sock := listenUDP(t)
	set := metrics.NewSet()
	counts := muxCounters{handoffDropped: set.NewCounter("handoff_dropped"), writeErrors: set.NewCounter("write_errors"),
		gso: udpbatch.GSOStats{Sends: set.NewCounter("gso_sends"), Segments: set.NewCounter("gso_segments"),
			Fallbacks: set.NewCounter("gso_fallbacks")}}
	batch, err := udpbatch.NewConn(sock)
	if err != nil {
		t.Fatal(err)
	}
	return newMuxConn(batch, nil, sock.LocalAddr().(*net.UDPAddr).AddrPort(), counts)
}

// TestMuxCountsLosses: datagrams handed over past the queue's room are dropped and counted,
// the others read in order; a corked batch whose write fails is counted.
func TestMuxCountsLosses(t *testing.T) {
	mux := newTestMux(t)
	from := netip.MustParseAddrPort("192.0.2.1:3478")
	batch := make([][]byte, handQueue+5)
	for i := range batch {
		batch[i] = []byte(fmt.Sprint(i))
	}
	mux.handIn(batch, from)
	if got := mux.counts.handoffDropped.Get(); got != 5 {
		t.Errorf("handoff dropped %d, want 5", got)
	}
	buf := make([]byte, 64)
	for i := range handQueue {
		n, addr, err := mux.ReadFrom(buf)
		if err != nil || string(buf[:n]) != fmt.Sprint(i) || addr.String() != from.String() {
			t.Fatalf("read %d: %q from %v (%v)", i, buf[:n], addr, err)
		}
	}

	path := &sendPath{mux: mux}
	v6 := netip.MustParseAddrPort("[2001:db8::1]:9") // an IPv4 socket cannot send there
	path.dst.Store(&v6)
	held, _ := path.hold()
	if _, err := mux.WriteTo([]byte("lost"), net.UDPAddrFromAddrPort(v6)); err != nil {
		t.Fatal(err) // kept in the cork: the write happens at the release
	}
	path.release(held)
	if got := mux.counts.writeErrors.Get(); got != 1 {
		t.Errorf("write errors %d, want 1", got)
	}
}

func listenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func expect(t *testing.T, c *net.UDPConn, want string) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != want {
		t.Fatalf("read %q (%v), want %q", buf[:n], err, want)
	}
}

func expectNothing(t *testing.T, c *net.UDPConn) {
	t.Helper()
	buf := make([]byte, 64)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("read %q while corked", buf[:n])
	}
}
