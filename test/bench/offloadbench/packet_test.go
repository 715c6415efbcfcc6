package main

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

// TestUDPFrame: a frame is the datagram a UDP socket would send once the device completes
// its checksum as the virtio-net header asks: the IP header sums to 0xffff, and the
// completed UDP checksum verifies against the pseudo header of the addresses.
func TestUDPFrame(t *testing.T) {
	src, dst := netip.MustParseAddrPort("198.51.100.2:40001"), netip.MustParseAddrPort("203.0.113.2:3478")
	srcMAC, dstMAC := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	payload := []byte{0x40, 0x00, 0x00, 0x06, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02}
	f := udpFrame(srcMAC, dstMAC, src, dst, payload)
	v, eth := f[:vnetHdrLen], f[vnetHdrLen:]
	start, off := binary.LittleEndian.Uint16(v[6:]), binary.LittleEndian.Uint16(v[8:])
	if v[0] != vnetNeedsCsum || start != ethLen+ipLen || off != 6 {
		t.Fatalf("virtio-net header % x", v)
	}
	if net.HardwareAddr(eth[:6]).String() != dstMAC.String() || net.HardwareAddr(eth[6:12]).String() != srcMAC.String() ||
		binary.BigEndian.Uint16(eth[12:]) != 0x0800 {
		t.Fatalf("Ethernet header % x", eth[:ethLen])
	}
	ip, udp := eth[ethLen:ethLen+ipLen], eth[start:]
	if sum := csumFold(csumAdd(0, ip)); sum != 0xffff {
		t.Errorf("IP header sums to %#x", sum)
	}
	if got := int(binary.BigEndian.Uint16(ip[2:])); got != len(eth)-ethLen {
		t.Errorf("IP total length %d, want %d", got, len(eth)-ethLen)
	}
	// The device: the sum from csum_start to the end, the field included, complemented.
	binary.BigEndian.PutUint16(udp[off:], ^csumFold(csumAdd(0, udp)))
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	pseudo := uint32(binary.BigEndian.Uint16(s4[:])) + uint32(binary.BigEndian.Uint16(s4[2:])) +
		uint32(binary.BigEndian.Uint16(d4[:])) + uint32(binary.BigEndian.Uint16(d4[2:])) + 17 + uint32(len(udp))
	if sum := csumFold(csumAdd(pseudo, udp)); sum != 0xffff {
		t.Errorf("UDP checksum does not verify: sum %#x", sum)
	}
	if got := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(udp)); got != src {
		t.Errorf("source %v", got)
	}
	if got := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(udp[2:])); got != dst {
		t.Errorf("destination %v", got)
	}
	if string(udp[udpLen:]) != string(payload) {
		t.Errorf("payload % x", udp[udpLen:])
	}
}
