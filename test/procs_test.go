package test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
	"github.com/ferry-rtc/ferry/internal/udpbatch"
)

// TestProcsFollowLoad: `ferry serve` with server.procs = "auto" runs on one P while idle,
// takes every P once a TURN load fills the one, and goes back to one P about 5 s after the
// load stops.
func TestProcsFollowLoad(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: there is only one P to run on, nothing to adapt")
	}
	t.Setenv("GOMAXPROCS", "") // an operator's GOMAXPROCS would turn the controller off
	s, port := newSetup(t, 4)
	s.allowPeers = []string{"127.0.0.1/32"}
	s.offload = "off"                                    // the kernel fast path would relay the load without Ferry's CPU
	startFerry(t, s.toml()+"[log]\nlevel = \"debug\"\n") // the log shows each change with its load
	if got := scrape(t, s.metricsAddr)["ferry_runtime_procs"]; got < 1 {
		t.Fatalf("ferry_runtime_procs = %v at start: the controller is not running", got)
	}

	c := dialRaw(t, "udp4", addrString("127.0.0.1", port), testUser, testPass)
	c.allocate()
	sink := sinkPeer(t)
	mustSucceed(t, "ChannelBind", c.request(stun.MethodChannelBind, channelNumber(0x4000), testkit.PeerAddr(sink)))

	// Ferry's own start (the race detector makes it costly) may have raised the Ps already.
	idleOneP(t, s.metricsAddr)

	stop := relayLoad(t, c.conn, 0x4000)
	waitSeries(t, s.metricsAddr, "ferry_runtime_procs", 10*time.Second, func(v float64) bool { return v > 1 })
	stop()
	start := time.Now()
	waitSeries(t, s.metricsAddr, "ferry_runtime_procs", 15*time.Second, func(v float64) bool { return v == 1 })
	if quiet := time.Since(start); quiet < 4*time.Second {
		t.Errorf("back to one P %v after the load stopped, want after about 5 s of quiet", quiet)
	}
	if n := scrape(t, s.metricsAddr)["ferry_runtime_procs_changes_total"]; n < 3 {
		t.Errorf("ferry_runtime_procs_changes_total = %v, want at least 3 (to one at start, up, down)", n)
	}
}

// idleOneP waits until Ferry has stayed on one P for a second, scraped every 50 ms.
func idleOneP(t *testing.T, metricsAddr string) {
	t.Helper()
	var since time.Time
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		now := time.Now()
		switch {
		case scrape(t, metricsAddr)["ferry_runtime_procs"] != 1:
			since = time.Time{}
		case since.IsZero():
			since = now
		case now.Sub(since) >= time.Second:
			return
		}
		if now.After(deadline) {
			t.Fatal("Ferry did not stay on one P for a second while idle")
		}
	}
}

// sinkPeer is a UDP socket that never reads: the relayed datagrams end in its buffer.
func sinkPeer(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// relayLoad sends ChannelData frames of 200 bytes on conn, 32 per sendmmsg (the client pays
// one system call for what Ferry relays in several), 96 per millisecond at most (about 150
// Mbit/s), until the returned stop, which waits for the sender.
func relayLoad(t *testing.T, conn net.Conn, channel uint16) (stop func()) {
	t.Helper()
	bc, err := udpbatch.NewConn(conn.(*net.UDPConn))
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 4+200)
	binary.BigEndian.PutUint16(frame, channel)
	binary.BigEndian.PutUint16(frame[2:], 200)
	batch := make([][]byte, 32)
	for i := range batch {
		batch[i] = frame
	}
	server := conn.RemoteAddr().(*net.UDPAddr).AddrPort()
	w := udpbatch.NewWriter(len(batch))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for range 3 {
				if w.WriteTo(bc, batch, server) != nil {
					return
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
