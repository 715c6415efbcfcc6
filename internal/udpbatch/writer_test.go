package udpbatch

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestWriter sends batches to IPv4 and IPv6 receivers: every datagram arrives whole, in
// order, from the sending socket.
func TestWriter(t *testing.T) {
	w := NewWriter(8)
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			sock := listen(t, ip)
			c, err := NewConn(sock)
			if err != nil {
				t.Fatal(err)
			}
			rcv := listen(t, ip)
			to := rcv.LocalAddr().(*net.UDPAddr).AddrPort()
			var bufs [][]byte
			for i := range 8 {
				bufs = append(bufs, []byte(fmt.Sprintf("datagram %d%s", i, make([]byte, i))))
			}
			for _, batch := range [][][]byte{bufs[:1], bufs[1:8]} {
				if err := w.WriteTo(c, batch, to); err != nil {
					t.Fatal(err)
				}
			}
			_ = rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			for i := range 8 {
				n, src, err := rcv.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != string(bufs[i]) || src != sock.LocalAddr().(*net.UDPAddr).AddrPort() {
					t.Fatalf("datagram %d: %q from %v (%v), want %q", i, buf[:n], src, err, bufs[i])
				}
			}
		})
	}
	if err := w.WriteTo(nil, make([][]byte, 9), netip.AddrPort{}); err == nil {
		t.Fatal("a batch larger than the writer was accepted")
	}
}

// BenchmarkWriter sends batches of 8 datagrams of a video frame's size, one by one
// (sendmmsg) and as one GSO datagram; allocations must be zero.
func BenchmarkWriter(b *testing.B) {
	for _, gso := range []bool{false, true} {
		b.Run(map[bool]string{false: "sendmmsg", true: "gso"}[gso], func(b *testing.B) {
			c, err := NewConn(listen(b, "127.0.0.1"))
			if err != nil {
				b.Fatal(err)
			}
			var t gsoTallies
			if gso && !c.EnableGSO(t.stats()) {
				b.Skip("no UDP GSO")
			}
			rcv := listen(b, "127.0.0.1")
			r, rc := newReader(b, rcv, 8, 1500)
			to := rcv.LocalAddr().(*net.UDPAddr).AddrPort()
			w := NewWriter(8)
			bufs := make([][]byte, 8)
			for i := range bufs {
				bufs[i] = make([]byte, 1100)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := w.WriteTo(c, bufs, to); err != nil {
					b.Fatal(err)
				}
				readN(b, r, rc, 8)
			}
		})
	}
}
