//go:build linux

package udpbatch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EnableGSO makes Writers send runs of equal-size datagrams through c as GSO datagrams
// (UDP_SEGMENT), which cross the kernel's IP and device layers once per run instead of
// once per datagram. It reports whether the kernel supports GSO on the socket (Linux
// 4.18). Writers send the datagrams one by one with sendmmsg, and count each run so sent
// in stats.Fallbacks, if it does not, from the first time the kernel refuses a GSO send on
// the socket's path (a device without checksum offload), and for a batch whose segments
// are above the path MTU toward its address. Call it before any write.
func (c *Conn) EnableGSO(stats GSOStats) bool {
	c.gso = &gsoState{stats: stats}
	var err error
	if cerr := c.rc.Control(func(fd uintptr) {
		_, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	}); cerr != nil {
		err = cerr
	}
	if err != nil {
		c.gso.off.Store(true)
	}
	return err == nil
}

// cmsgSpace is the control message room of one GSO message: UDP_SEGMENT's uint16.
var cmsgSpace = unix.CmsgSpace(2)

type sysWriter struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	ctrl  []byte // one UDP_SEGMENT control message per message, cmsgSpace bytes each
	first []int  // the datagram each message starts with
	name4 unix.RawSockaddrInet4
	name6 unix.RawSockaddrInet6
	// the batch being sent: its datagrams, GSO (nil: off), whether GSO was refused for it,
	// its messages, and those sent
	bufs  [][]byte
	gso   *gsoState
	plain bool
	n     int
	done  int
	errno syscall.Errno
	// send is w.sendmmsg bound once: a closure made per write would be allocated per write.
	send func(fd uintptr) bool
}

func (s *sysWriter) init(n int) {
	s.hdrs = make([]mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	s.ctrl = make([]byte, n*cmsgSpace)
	s.first = make([]int, n)
	for i := range n {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&s.ctrl[i*cmsgSpace]))
		h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
	}
	s.send = s.sendmmsg
}

func (s *sysWriter) write(c *Conn, bufs [][]byte, to netip.AddrPort) error {
	if len(bufs) > len(s.hdrs) {
		return fmt.Errorf("udpbatch: %d datagrams for a writer of %d", len(bufs), len(s.hdrs))
	}
	name, namelen := s.sockaddr(to)
	for i, b := range bufs {
		s.iovs[i].Base = unsafe.SliceData(b)
		s.iovs[i].SetLen(len(b))
		s.hdrs[i].hdr.Name = name
		s.hdrs[i].hdr.Namelen = namelen
	}
	s.bufs, s.gso, s.plain = bufs, c.gso, false
	s.done, s.errno = 0, 0
	s.n = s.layout(0, 0)
	err := c.rc.Write(s.send)
	s.countSent()
	for i := range bufs {
		s.iovs[i].Base = nil // keep no buffer alive
	}
	s.bufs, s.gso = nil, nil
	if err != nil {
		return err
	}
	if s.errno != 0 {
		return fmt.Errorf("udpbatch: sendmmsg: %w", s.errno)
	}
	return nil
}

// layout makes messages k on of the datagrams from bufs[i] on, a GSO message per run while
// GSO is on for the socket and the batch, else one per datagram (counting the runs so
// split), and returns the number of messages.
func (s *sysWriter) layout(k, i int) int {
	for i < len(s.bufs) {
		j := i + 1
		if s.gso != nil {
			j = gsoRun(s.bufs, i)
		}
		if j-i > 1 && (s.plain || s.gso.off.Load()) {
			s.gso.stats.Fallbacks.Add(1)
			for ; i < j; i, k = i+1, k+1 {
				s.message(k, i, 1)
			}
			continue
		}
		s.message(k, i, j-i)
		i, k = j, k+1
	}
	return k
}

// message makes message k of the n datagrams from bufs[i] on: a GSO one if n > 1.
func (s *sysWriter) message(k, i, n int) {
	h := &s.hdrs[k].hdr
	s.first[k], h.Iov, h.Control = i, &s.iovs[i], nil
	h.SetIovlen(n)
	h.SetControllen(0)
	if n > 1 {
		c := s.ctrl[k*cmsgSpace : (k+1)*cmsgSpace]
		binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(len(s.bufs[i])))
		h.Control = &c[0]
		h.SetControllen(cmsgSpace)
	}
}

// sendmmsg is the RawConn.Write callback: it sends what is left of the batch, and asks the
// runtime to wait (false) while the socket buffer is full.
func (s *sysWriter) sendmmsg(fd uintptr) bool {
	for s.done < s.n {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[s.done])),
			uintptr(s.n-s.done), 0, 0, 0)
		switch errno {
		case 0:
			s.done += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			if !s.refused(errno) {
				s.errno = errno
				return true
			}
		}
	}
	return true
}

// refused tells whether errno is the kernel refusing the GSO message the batch is at; if
// so, that message and the rest of the batch are laid out again as separate datagrams.
// EIO (the device cannot checksum, or IPsec) refuses GSO on the socket for good. EMSGSIZE
// (a segment above the path MTU toward the batch's address) and EINVAL refuse it for the
// batch only: kernels before 6.14 say EINVAL for a segment above the path MTU, and one
// subscriber behind a small MTU must not turn GSO off for all the others. (EINVAL's other
// cause, a socket with UDP checksums off, is not one Ferry makes.)
func (s *sysWriter) refused(errno syscall.Errno) bool {
	if s.hdrs[s.done].hdr.Controllen == 0 {
		return false
	}
	switch errno {
	case unix.EIO:
		s.gso.off.Store(true)
	case unix.EMSGSIZE, unix.EINVAL:
	default:
		return false
	}
	s.plain = true
	s.n = s.layout(s.done, s.first[s.done])
	return true
}

// countSent counts the GSO messages sent and their datagrams.
func (s *sysWriter) countSent() {
	if s.gso == nil {
		return
	}
	for k := range s.done {
		if s.hdrs[k].hdr.Controllen > 0 {
			s.gso.stats.Sends.Add(1)
			s.gso.stats.Segments.Add(int(s.hdrs[k].hdr.Iovlen))
		}
	}
}

// sockaddr encodes to for the batch's headers.
func (s *sysWriter) sockaddr(to netip.AddrPort) (*byte, uint32) {
	if to.Addr().Is4() {
		s.name4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.Addr().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s.name4.Port))[:], to.Port())
		return (*byte)(unsafe.Pointer(&s.name4)), unix.SizeofSockaddrInet4
	}
	s.name6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: to.Addr().As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s.name6.Port))[:], to.Port())
	return (*byte)(unsafe.Pointer(&s.name6)), unix.SizeofSockaddrInet6
}
