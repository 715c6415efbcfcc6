package udpbatch

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestGSORun cuts batches into runs the kernel splits back into the same datagrams.
func TestGSORun(t *testing.T) {
	for _, tc := range []struct {
		sizes []int
		runs  []int // the end of each run
	}{
		{[]int{1100, 1100, 1100, 700}, []int{4}},
		{[]int{1100, 1100, 700, 1100, 1100}, []int{3, 5}},                 // a shorter one ends its run
		{[]int{700, 1100, 1100}, []int{1, 3}},                             // a longer one starts one
		{[]int{1100, 160, 160, 1100}, []int{2, 3, 4}},                     // audio among video
		{[]int{1100, 1100, 0, 1100}, []int{2, 3, 4}},                      // empty datagrams go alone
		{[]int{0, 0}, []int{1, 2}},                                        //
		{repeat(1000, 70), []int{64, 70}},                                 // at most 64 segments
		{repeat(1400, 50), []int{46, 50}},                                 // at most 64 KB
		{append(repeat(1400, 46), 1107, 1), []int{47, 48}},                // 46×1400+1107 = 65507
		{append(repeat(1400, 46), 1108, 1), []int{46, 48}},                // a tail within 64 KB only
		{append(repeat(1400, 46), 1400, 1400), []int{46, 48}},             // at most 64 KB
		{append(repeat(10, 63), 5, 10), []int{64, 65}},                    //
		{append(repeat(10, 64), 5, 10), []int{64, 65, 66}},                //
		{[]int{5}, []int{1}},                                              //
		{[]int{5, 5, 6}, []int{2, 3}},                                     //
		{[]int{1200, 1199, 1200, 1199}, []int{2, 4}},                      //
		{[]int{1200, 1200, 1200, 1200, 1200, 1200, 1200, 1200}, []int{8}}, //
	} {
		bufs := make([][]byte, len(tc.sizes))
		for i, n := range tc.sizes {
			bufs[i] = make([]byte, n)
		}
		var runs []int
		for i := 0; i < len(bufs); i = runs[len(runs)-1] {
			runs = append(runs, gsoRun(bufs, i))
		}
		if fmt.Sprint(runs) != fmt.Sprint(tc.runs) {
			t.Errorf("sizes %v: runs end at %v, want %v", tc.sizes, runs, tc.runs)
		}
	}
}

func repeat(n, times int) []int {
	s := make([]int, times)
	for i := range s {
		s[i] = n
	}
	return s
}

// tally is a Counter for one goroutine.
type tally int

func (t *tally) Add(n int) { *t += tally(n) }

type gsoTallies struct{ sends, segments, fallbacks tally }

func (g *gsoTallies) stats() GSOStats {
	return GSOStats{Sends: &g.sends, Segments: &g.segments, Fallbacks: &g.fallbacks}
}

// TestWriterGSO sends batches of video-like bursts (equal sizes, a shorter last one, audio
// among them) through a socket with GSO; through one GSO is forced off on; through ones
// whose kernel refuses GSO for good (UDP-Lite: EIO); and through ones whose kernel refuses it
// per batch (a path MTU below the first batch's segments: EMSGSIZE; no UDP checksums:
// EINVAL, the error kernels before 6.14 give for a segment above the path MTU too).
// A plain receiver gets every datagram whole and in order each time, and the counters say
// how they went.
func TestWriterGSO(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("GSO is Linux's")
	}
	for _, tc := range []struct {
		name, ip string
		open     func(t *testing.T, ip string) *net.UDPConn
		prepare  func(t *testing.T, c *Conn)
		// the counts after the two batches, and whether GSO is off then
		sends, segments, fallbacks tally
		off                        bool
	}{
		{"gso4", "127.0.0.1", listenT, nil, 4, 83, 0, false},
		{"gso6", "::1", listenT, nil, 4, 83, 0, false},
		{"off", "127.0.0.1", listenT, func(_ *testing.T, c *Conn) { c.gso.off.Store(true) }, 0, 0, 4, true},
		{"einval", "127.0.0.1", listenT, sockopt(unix.SOL_SOCKET, unix.SO_NO_CHECK, 1), 0, 0, 4, false},
		{"eio", "127.0.0.1", udpLite, nil, 0, 0, 4, true},
		// 1300-byte segments with IPv6 and UDP headers are above 1280 bytes; 1000-byte ones fit
		{"emsgsize", "::1", listenT, sockopt(unix.IPPROTO_IPV6, unix.IPV6_MTU, 1280), 2, 70, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := tc.open(t, tc.ip)
			c, err := NewConn(sock)
			if err != nil {
				t.Fatal(err)
			}
			var got gsoTallies
			if !c.EnableGSO(got.stats()) {
				t.Fatal("this kernel has no UDP GSO (Linux 4.18 has it)")
			}
			if tc.prepare != nil {
				tc.prepare(t, c)
			}
			rcv := tc.open(t, tc.ip)
			_ = rcv.SetReadBuffer(1 << 20)
			to := rcv.LocalAddr().(*net.UDPAddr).AddrPort()
			w := NewWriter(70)
			// a keyframe's burst: 8 video packets and an audio one, then a frame of 5; then
			// 70 equal ones: 64, the most one GSO send takes, and 6
			first := burst(1, 1300, 1300, 1300, 1300, 1300, 1300, 1300, 700, 160, 1300, 1300, 1300, 1300, 300)
			second := burst(100, repeat(1000, 70)...)
			for _, batch := range [][][]byte{first, second} {
				if err := w.WriteTo(c, batch, to); err != nil {
					t.Fatal(err)
				}
				receive(t, rcv, batch)
			}
			want := gsoTallies{tc.sends, tc.segments, tc.fallbacks}
			if got != want || c.gso.off.Load() != tc.off {
				t.Fatalf("GSO sends, segments, fallbacks: %v, off %v; want %v, off %v", got, c.gso.off.Load(), want, tc.off)
			}
		})
	}
}

func listenT(t *testing.T, ip string) *net.UDPConn { return listen(t, ip) }

// udpLite opens a UDP-Lite socket on ip (IPv4): Linux refuses GSO on it with EIO, as on
// a device that cannot checksum. Only UDP-Lite sockets receive what it sends.
func udpLite(t *testing.T, ip string) *net.UDPConn {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_UDPLITE)
	if err != nil {
		t.Skipf("no UDP-Lite in this kernel (%v): the EIO refusal is not tested", err)
	}
	f := os.NewFile(uintptr(fd), "udplite")
	defer f.Close()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: netip.MustParseAddr(ip).As4()}); err != nil {
		t.Fatal(err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc.(*net.UDPConn)
}

// sockopt sets an integer socket option on the Conn.
func sockopt(level, opt, value int) func(t *testing.T, c *Conn) {
	return func(t *testing.T, c *Conn) {
		var err error
		if cerr := c.rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), level, opt, value) }); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			t.Fatalf("setsockopt %d/%d: %v", level, opt, err)
		}
	}
}

// burst makes datagrams of the sizes given, each filled with its number from first on.
func burst(first int, sizes ...int) [][]byte {
	bufs := make([][]byte, len(sizes))
	for i, n := range sizes {
		bufs[i] = bytes.Repeat([]byte{byte(first + i)}, n)
	}
	return bufs
}

// receive reads len(want) datagrams from rcv and checks that they are want, in order.
func receive(t *testing.T, rcv *net.UDPConn, want [][]byte) {
	t.Helper()
	_ = rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for i, w := range want {
		n, err := rcv.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: %d bytes of %d, want %d bytes of %d", i, n, buf[0], len(w), w[0])
		}
	}
}
