package udpbatch

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

func listen(t testing.TB, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Skipf("no %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newReader(t testing.TB, conn *net.UDPConn, n, size int) (*Reader, *Conn) {
	t.Helper()
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	c, err := NewConn(conn)
	if err != nil {
		t.Fatal(err)
	}
	return NewReader(bufs), c
}

// TestReader reads datagrams from two senders in batches: every byte and source arrives,
// in order per sender, and a datagram longer than its buffer is truncated.
func TestReader(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			conn := listen(t, ip)
			r, c := newReader(t, conn, 4, 8)
			a, b := listen(t, ip), listen(t, ip)
			to := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			var want []string
			for i := range 6 {
				from := a
				if i%2 == 1 {
					from = b
				}
				msg := fmt.Sprintf("m%d", i)
				if i == 5 {
					msg = "truncated to 8"
				}
				if _, err := from.WriteToUDPAddrPort([]byte(msg), to); err != nil {
					t.Fatal(err)
				}
				want = append(want, fmt.Sprintf("%.8s from %v", msg, from.LocalAddr().(*net.UDPAddr).AddrPort()))
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var got []string
			for len(got) < len(want) {
				n, err := r.Read(c)
				if err != nil {
					t.Fatalf("Read after %q: %v", got, err)
				}
				for i := range n {
					b, src := r.Datagram(i)
					got = append(got, fmt.Sprintf("%s from %v", b, src))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %q\nwant %q", got, want)
			}
		})
	}
}

// TestReaderClosed: Read returns an error once the socket closes.
func TestReaderClosed(t *testing.T) {
	conn := listen(t, "127.0.0.1")
	r, c := newReader(t, conn, 2, 16)
	go func() { time.Sleep(20 * time.Millisecond); _ = conn.Close() }()
	if _, err := r.Read(c); err == nil {
		t.Fatal("Read on a closed socket succeeded")
	}
}

// BenchmarkReader sends a batch of 8 datagrams and reads them; allocations must be zero.
func BenchmarkReader(b *testing.B) {
	conn := listen(b, "127.0.0.1")
	r, c := newReader(b, conn, 8, 256)
	peer := listen(b, "127.0.0.1")
	to := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	msg := make([]byte, 200)
	b.ReportAllocs()
	for b.Loop() {
		for range 8 {
			if _, err := peer.WriteToUDPAddrPort(msg, to); err != nil {
				b.Fatal(err)
			}
		}
		readN(b, r, c, 8)
	}
}

// readN reads batches until n datagrams have arrived.
func readN(tb testing.TB, r *Reader, c *Conn, n int) {
	for got := 0; got < n; {
		k, err := r.Read(c)
		if err != nil {
			tb.Fatal(err)
		}
		got += k
	}
}

// TestTryReadAndWait: TryRead returns what is queued and 0 when the socket is empty, without
// waiting; WaitReadable returns once a datagram is queued, which a TryRead then reads.
func TestTryReadAndWait(t *testing.T) {
	conn := listen(t, "127.0.0.1")
	r, c := newReader(t, conn, 4, 16)
	peer := listen(t, "127.0.0.1")
	to := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if n, err := r.TryRead(c); n != 0 || err != nil {
		t.Fatalf("TryRead on an empty socket = %d, %v", n, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.WaitReadable() }()
	select {
	case err := <-done:
		t.Fatalf("WaitReadable returned %v on an empty socket", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("hello"), to); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n, err := r.TryRead(c)
	if err != nil || n != 1 {
		t.Fatalf("TryRead after WaitReadable = %d, %v", n, err)
	}
	if b, _ := r.Datagram(0); string(b) != "hello" {
		t.Fatalf("read %q", b)
	}
}

// TestWaitReadableQueuedAllocs: waiting on a socket that has a datagram queued, the case of
// every wake-up of a busy relay, allocates nothing and leaves the datagram to the read.
func TestWaitReadableQueuedAllocs(t *testing.T) {
	conn := listen(t, "127.0.0.1")
	r, c := newReader(t, conn, 4, 16)
	peer := listen(t, "127.0.0.1")
	if _, err := peer.WriteToUDPAddrPort([]byte("queued"), conn.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	var err error
	allocs := testing.AllocsPerRun(100, func() { err = c.WaitReadable() })
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("WaitReadable allocated %v times with a datagram queued", allocs)
	}
	if n, err := r.TryRead(c); n != 1 || err != nil {
		t.Fatalf("TryRead after the waits = %d, %v", n, err)
	}
	if b, _ := r.Datagram(0); string(b) != "queued" {
		t.Fatalf("read %q", b)
	}
}
