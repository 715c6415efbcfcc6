package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ferry-rtc/ferry/relay"
)

// These tests run the program in the kernel (BPF_PROG_TEST_RUN) on packets built here:
// the verifier accepts it, and it rewrites, counts and passes up exactly as it should.
// They need root (CAP_BPF, CAP_NET_ADMIN); without it they skip loudly, and with
// FERRY_TEST_REQUIRE_BPF=1 (CI) they fail.

const requireBPFEnv = "FERRY_TEST_REQUIRE_BPF"

// tcActRedirect is TC_ACT_REDIRECT, what bpf_redirect_neigh returns; tcxNext is TCX_NEXT
// (-1), the program's "up to user space".
const (
	tcActRedirect = 7
	tcxNext       = 0xFFFFFFFF
)

func bpfSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(requireBPFEnv) != "" {
		t.Fatalf("eBPF unavailable: "+format+" (%s is set)", append(args, requireBPFEnv)...)
	}
	t.Skipf("SKIPPED LOUDLY: eBPF unavailable: "+format, args...)
}

// loadForTest loads the program and its maps without attaching it; its "interface" is
// loopback (ifindex 1), which every network namespace has.
func loadForTest(t *testing.T) *Offload {
	t.Helper()
	spec, err := loadRelay()
	if err != nil {
		t.Fatal(err)
	}
	spec.Maps[relayMapUsage].MaxEntries = 100
	o := &Offload{min: 50000, owners: map[netip.Addr]int{}}
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if !errors.As(err, &ve) && (errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported)) {
			bpfSkip(t, "%v", err)
		}
		t.Fatalf("load: %+v", err)
	}
	if o.ncpu, err = ebpf.PossibleCPU(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

var (
	testClient   = netip.MustParseAddrPort("203.0.113.7:40000")
	testListener = netip.MustParseAddrPort("198.51.100.1:3478")
	testRelay    = netip.MustParseAddrPort("198.51.100.1:50010")
	testPeer     = netip.MustParseAddrPort("192.0.2.9:6000")
)

// install puts a channel into the maps as Alloc.write does, for the test's addresses.
func install(t *testing.T, o *Offload, number uint16, until uint64) *Alloc {
	t.Helper()
	if err := o.objs.Listeners.Put(relayListenerKey{Ip: ip4(testListener.Addr()), Port: port16(testListener.Port())}, uint8(1)); err != nil {
		t.Fatal(err)
	}
	a := &Alloc{o: o, client: testClient, listener: testListener, relayBound: testRelay.Addr(), relayPort: testRelay.Port(),
		slot: uint32(testRelay.Port()) - 50000, installed: map[uint16]entry{},
		toClient: route{src: testListener.Addr(), ifindex: 1}, routed: true}
	o.zero(a.slot)
	if !a.write(number, entry{peer: testPeer, until: until, via: route{src: testRelay.Addr(), ifindex: 1}}) {
		t.Fatal("map write failed")
	}
	return a
}

// packet builds an Ethernet/IPv4/UDP frame; zeroCsum leaves the UDP checksum 0.
func packet(src, dst netip.AddrPort, payload []byte, zeroCsum bool) []byte {
	b := make([]byte, 14+20+8+len(payload))
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 2})
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0] = 0x45
	ip[1] = 0x2e // a DSCP the relayed datagram does not keep
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	ip[8] = 17 // TTL a relay does not keep
	ip[9] = 17
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], ^sum16(ip, 0))
	udp := b[34:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	if !zeroCsum {
		binary.BigEndian.PutUint16(udp[6:], udpChecksum(b))
	}
	return b
}

// sum16 adds b's 16-bit words to sum, one's complement, folded.
func sum16(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// udpChecksum computes the checksum the UDP datagram of frame b must carry (its own field
// taken as zero).
func udpChecksum(b []byte) uint16 {
	ip, udp := b[14:34], append([]byte(nil), b[34:]...)
	udp[6], udp[7] = 0, 0
	pseudo := make([]byte, 12)
	copy(pseudo, ip[12:20])
	pseudo[9] = 17
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(udp)))
	c := ^sum16(udp, uint32(sum16(pseudo, 0)))
	if c == 0 {
		c = 0xffff
	}
	return c
}

func channelData(number uint16, payload []byte, padding []byte) []byte {
	b := make([]byte, 4, 4+len(payload)+len(padding))
	binary.BigEndian.PutUint16(b, number)
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
	return append(append(b, payload...), padding...)
}

func run(t *testing.T, o *Offload, in []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+64)
	ret, err := o.objs.FerryIngress.Run(&ebpf.RunOptions{Data: in, DataOut: out})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, out
}

// checkIP checks what a relayed datagram's IPv4 header must be: as from a fresh socket.
func checkIP(t *testing.T, frame []byte, src, dst netip.AddrPort, udpLen int) {
	t.Helper()
	ip := frame[14:34]
	if got := binary.BigEndian.Uint16(ip[2:]); int(got) != 20+udpLen {
		t.Errorf("IP total length %d, want %d", got, 20+udpLen)
	}
	if ip[1] != 0 || ip[8] != 64 || binary.BigEndian.Uint16(ip[6:]) != 0x4000 || binary.BigEndian.Uint16(ip[4:]) != 0x1234 {
		t.Errorf("IP header tos %#x ttl %d frag %#x id %#x: want 0, 64, DF, the original ID", ip[1], ip[8], binary.BigEndian.Uint16(ip[6:]), binary.BigEndian.Uint16(ip[4:]))
	}
	if sum16(ip, 0) != 0xffff {
		t.Errorf("IP header checksum is wrong")
	}
	s, d := src.Addr().As4(), dst.Addr().As4()
	if !bytes.Equal(ip[12:16], s[:]) || !bytes.Equal(ip[16:20], d[:]) {
		t.Errorf("IP %v -> %v, want %v -> %v", ip[12:16], ip[16:20], src.Addr(), dst.Addr())
	}
	udp := frame[34:]
	if p := binary.BigEndian.Uint16(udp); p != src.Port() {
		t.Errorf("source port %d, want %d", p, src.Port())
	}
	if p := binary.BigEndian.Uint16(udp[2:]); p != dst.Port() {
		t.Errorf("destination port %d, want %d", p, dst.Port())
	}
	if l := binary.BigEndian.Uint16(udp[4:]); int(l) != udpLen {
		t.Errorf("UDP length %d, want %d", l, udpLen)
	}
}

func TestProgramToPeer(t *testing.T) {
	o := loadForTest(t)
	a := install(t, o, 0x4001, uint64(monoNow())+60e9)
	for _, tc := range []struct {
		name     string
		size     int
		padding  []byte
		zeroCsum bool
	}{
		{"even", 200, nil, false},
		{"padded", 997, []byte{0, 0, 0}, false},
		{"unpadded odd", 1001, nil, false},
		{"no checksum", 118, []byte{0, 0}, true},
		{"large", 1400, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.size)
			for i := range payload {
				payload[i] = byte(i*7 + 3)
			}
			in := packet(testClient, testListener, channelData(0x4001, payload, tc.padding), tc.zeroCsum)
			ret, out := run(t, o, in)
			if ret != tcActRedirect {
				t.Fatalf("returned %#x, want TC_ACT_REDIRECT", ret)
			}
			frame := out[:14+20+8+tc.size]
			checkIP(t, frame, netip.AddrPortFrom(testRelay.Addr(), testRelay.Port()), testPeer, 8+tc.size)
			if !bytes.Equal(frame[42:], payload) {
				t.Errorf("payload differs")
			}
			got := binary.BigEndian.Uint16(frame[40:])
			switch {
			case tc.zeroCsum && got != 0:
				t.Errorf("UDP checksum %#x, want 0 (as the client sent none)", got)
			case !tc.zeroCsum && got != udpChecksum(frame):
				t.Errorf("UDP checksum %#x, want %#x", got, udpChecksum(frame))
			}
		})
	}
	u := a.Usage()
	if u.ToPeerPackets != 5 || u.ToPeerBytes != 200+997+1001+118+1400 {
		t.Errorf("usage %+v, want 5 packets of %d bytes", u, 200+997+1001+118+1400)
	}
	if st := o.Stats(); st.ToPeerPackets != 5 {
		t.Errorf("stats %+v, want 5 packets to peers", st)
	}
}

func TestProgramToClient(t *testing.T) {
	o := loadForTest(t)
	a := install(t, o, 0x7ffe, uint64(monoNow())+60e9)
	for _, size := range []int{1, 200, 999, 1000, 1400} {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(i*13 + 1)
		}
		in := packet(testPeer, testRelay, payload, false)
		ret, out := run(t, o, in)
		if ret != tcActRedirect {
			t.Fatalf("%d bytes: returned %#x, want TC_ACT_REDIRECT", size, ret)
		}
		frame := out[:14+20+8+4+size]
		checkIP(t, frame, testListener, testClient, 8+4+size)
		if !bytes.Equal(frame[42:46], []byte{0x7f, 0xfe, byte(size >> 8), byte(size)}) {
			t.Errorf("%d bytes: ChannelData header % x", size, frame[42:46])
		}
		if !bytes.Equal(frame[46:], payload) {
			t.Errorf("%d bytes: payload differs", size)
		}
		if got, want := binary.BigEndian.Uint16(frame[40:]), udpChecksum(frame); got != want {
			t.Errorf("%d bytes: UDP checksum %#x, want %#x", size, got, want)
		}
	}
	if u := a.Usage(); u.FromPeerPackets != 5 || u.FromPeerBytes != 1+200+999+1000+1400 {
		t.Errorf("usage %+v", u)
	}
	// A peer without a channel of this relay: up.
	other := netip.MustParseAddrPort("192.0.2.9:6001")
	if ret, _ := run(t, o, packet(other, testRelay, []byte("x"), false)); ret != tcxNext {
		t.Errorf("datagram from a peer without a channel: returned %#x, want TCX_NEXT", ret)
	}
	// To another address than the relay's: up.
	if ret, _ := run(t, o, packet(testPeer, netip.MustParseAddrPort("198.51.100.2:50010"), []byte("x"), false)); ret != tcxNext {
		t.Errorf("datagram to another address: returned %#x, want TCX_NEXT", ret)
	}
}

// TestProgramPassesUp: what the kernel must not relay goes up to user space unchanged.
func TestProgramPassesUp(t *testing.T) {
	o := loadForTest(t)
	a := install(t, o, 0x4001, uint64(monoNow())+60e9)
	payload := bytes.Repeat([]byte{0xab}, 100)
	fragment := packet(testClient, testListener, channelData(0x4001, payload, nil), false)
	binary.BigEndian.PutUint16(fragment[20:], 0x2000) // MF
	options := packet(testClient, testListener, channelData(0x4001, payload, nil), false)
	options[14] = 0x46
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"STUN", packet(testClient, testListener, append([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...), false)},
		{"unbound channel", packet(testClient, testListener, channelData(0x4002, payload, nil), false)},
		{"other client port", packet(netip.MustParseAddrPort("203.0.113.7:40001"), testListener, channelData(0x4001, payload, nil), false)},
		{"length past the datagram", packet(testClient, testListener, channelData(0x4001, payload, nil)[:90], false)},
		{"more than padding", packet(testClient, testListener, channelData(0x4001, payload, []byte{0, 0, 0, 0}), false)},
		{"non-zero padding", packet(testClient, testListener, channelData(0x4001, payload[:99], []byte{1}), false)},
		{"fragment", fragment},
		{"IP options", options},
	} {
		ret, out := run(t, o, tc.in)
		if ret != tcxNext {
			t.Errorf("%s: returned %#x, want TCX_NEXT", tc.name, ret)
		}
		if !bytes.Equal(out[:len(tc.in)], tc.in) {
			t.Errorf("%s: the packet was changed", tc.name)
		}
	}
	if u := a.Usage(); u != (relay.Usage{}) {
		t.Errorf("usage %+v after nothing relayed", u)
	}
}

// TestProgramExpired: past its lifetime a channel is not relayed, either way, whatever the
// maps still hold; and End removes it, so that nothing is relayed for it any more.
func TestProgramExpired(t *testing.T) {
	o := loadForTest(t)
	install(t, o, 0x4001, uint64(monoNow())-1)
	payload := bytes.Repeat([]byte{1}, 50)
	if ret, _ := run(t, o, packet(testClient, testListener, channelData(0x4001, payload, nil), false)); ret != tcxNext {
		t.Errorf("expired channel, client to peer: returned %#x, want TCX_NEXT", ret)
	}
	if ret, _ := run(t, o, packet(testPeer, testRelay, payload, false)); ret != tcxNext {
		t.Errorf("expired channel, peer to client: returned %#x, want TCX_NEXT", ret)
	}
	if st := o.Stats(); st.Passed[passExpired] != 2 || st.ToPeerPackets+st.FromPeerPackets != 0 {
		t.Errorf("stats %+v, want 2 passed as expired and nothing relayed", st)
	}

	a := install(t, o, 0x4003, uint64(monoNow())+60e9)
	in := packet(testClient, testListener, channelData(0x4003, payload, nil), false)
	if ret, _ := run(t, o, in); ret != tcActRedirect {
		t.Fatalf("live channel: returned %#x", ret)
	}
	if u := a.End(); u.ToPeerPackets != 1 {
		t.Errorf("End returned %+v, want the one packet", u)
	}
	if ret, _ := run(t, o, in); ret != tcxNext {
		t.Errorf("after End: returned %#x, want TCX_NEXT", ret)
	}
	if n := o.Channels(); n != 1 { // the expired one installed above is still there
		t.Errorf("%d channels in the maps, want 1", n)
	}
}
