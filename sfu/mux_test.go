package sfu

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestCork: what pion writes to a corked address waits for the last release, or for a
// full batch, and then arrives whole and in order; other addresses are not held up.
func TestCork(t *testing.T) {
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	mux, err := newMuxConn(sock, nil, sock.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
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
	buf := make([]byte, 64)
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
