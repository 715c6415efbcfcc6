package main

// The load's sender. One core of load generator has to send (and receive, at the sinks)
// more than the server's core relays, or the rate steps measure the generator: sending
// through UDP sockets took a whole core at about 210,000 messages/s (a route lookup, the IP
// output path and socket accounting per datagram). So the load writes prebuilt Ethernet
// frames on AF_PACKET sockets bound to c0 and p0, past any qdisc, with sendmmsg: the
// kernel's work per datagram is an skb, a copy and the veth's transmit.
//
// The frames are what the same UDP sockets would send over veth: the UDP checksum left to
// "offload" (a virtio-net header asks for CHECKSUM_PARTIAL, the field holding the pseudo
// header's sum, as the kernel's UDP output leaves it for a device that checksums), so the
// servers receive the same skbs as from a socket; a device or program that needs the sum
// computes it, as it would for a socket's datagram.

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	vnetHdrLen = 10 // struct virtio_net_hdr
	ethLen     = 14
	ipLen      = 20
	udpLen     = 8
	// virtio_net_hdr: VIRTIO_NET_HDR_F_NEEDS_CSUM, the checksum from csum_start stored at
	// csum_start+csum_offset.
	vnetNeedsCsum = 1
)

// frameSender sends prebuilt frames out of one interface, a batch at a time.
type frameSender struct {
	fd     int
	frames [][]byte
	// hdrs[i] sends frames[i%len(frames)]; a batch of n from frame k is hdrs[k:k+n].
	hdrs []mmsghdr
	iovs []unix.Iovec
	next int // the frame the next batch starts with
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// newFrameSender opens an AF_PACKET socket on dev in netns; frames start with their
// virtio-net header (udpFrame).
func newFrameSender(netns, dev string, frames [][]byte) (*frameSender, error) {
	s := &frameSender{fd: -1, frames: frames}
	err := inNetns(netns, func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		// Protocol 0: the socket receives nothing, so no frame is copied to it.
		if s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		for _, o := range []int{unix.PACKET_QDISC_BYPASS, unix.PACKET_VNET_HDR} {
			if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, o, 1); err != nil {
				return fmt.Errorf("AF_PACKET option %d: %w", o, err)
			}
		}
		return unix.Bind(s.fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index})
	})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("frames on %s: %w", dev, err)
	}
	s.hdrs = make([]mmsghdr, batchMax+len(frames))
	s.iovs = make([]unix.Iovec, len(s.hdrs))
	for i := range s.hdrs {
		f := frames[i%len(frames)]
		s.iovs[i].Base = unsafe.SliceData(f)
		s.iovs[i].SetLen(len(f))
		s.hdrs[i].hdr.Iov = &s.iovs[i]
		s.hdrs[i].hdr.SetIovlen(1)
	}
	return s, nil
}

// send sends n <= batchMax frames, taking turns over the frames.
func (s *frameSender) send(n int) error {
	for done := 0; done < n; {
		k, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.hdrs[s.next])),
			uintptr(n-done), 0, 0, 0)
		switch errno {
		case 0:
			done += int(k)
			s.next = (s.next + int(k)) % len(s.frames)
		case unix.EINTR:
		default:
			return fmt.Errorf("sendmmsg: %w", errno)
		}
	}
	return nil
}

func (s *frameSender) close() {
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
	}
}

// macOf is the hardware address of dev in netns.
func macOf(netns, dev string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := inNetns(netns, func() error {
		ifc, err := net.InterfaceByName(dev)
		if err == nil {
			mac = ifc.HardwareAddr
		}
		return err
	})
	return mac, err
}

// udpFrame builds a virtio-net header and an Ethernet frame with an IPv4 UDP datagram of
// payload from src to dst, as a UDP socket on veth would send it (DF, TTL 64, the UDP
// checksum left to the device).
func udpFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) []byte {
	f := make([]byte, vnetHdrLen+ethLen+ipLen+udpLen+len(payload))
	v := f[:vnetHdrLen]
	v[0] = vnetNeedsCsum
	binary.LittleEndian.PutUint16(v[6:], ethLen+ipLen) // csum_start
	binary.LittleEndian.PutUint16(v[8:], 6)            // csum_offset: udphdr.check
	eth := f[vnetHdrLen:]
	copy(eth, dstMAC)
	copy(eth[6:], srcMAC)
	binary.BigEndian.PutUint16(eth[12:], unix.ETH_P_IP)
	ip := eth[ethLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+udpLen+len(payload)))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8], ip[9] = 64, unix.IPPROTO_UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ^csumFold(csumAdd(0, ip[:ipLen])))
	udp := ip[ipLen:]
	n := uint16(udpLen + len(payload))
	binary.BigEndian.PutUint16(udp, src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], n)
	copy(udp[udpLen:], payload)
	// The pseudo header's sum, not complemented: the device adds the datagram's.
	pseudo := csumAdd(csumAdd(0, ip[12:20]), []byte{0, unix.IPPROTO_UDP, byte(n >> 8), byte(n)})
	binary.BigEndian.PutUint16(udp[6:], csumFold(pseudo))
	return f
}

// csumAdd adds b's 16-bit big-endian words (even length) to a one's-complement sum.
func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
