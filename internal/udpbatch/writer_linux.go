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

type sysWriter struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	name4 unix.RawSockaddrInet4
	name6 unix.RawSockaddrInet6
	n     int // datagrams of the batch being sent
	done  int // of them, those sent
	errno syscall.Errno
	// send is w.sendmmsg bound once: a closure made per write would be allocated per write.
	send func(fd uintptr) bool
}

func (s *sysWriter) init(n int) {
	s.hdrs = make([]mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	for i := range s.hdrs {
		s.hdrs[i].hdr.Iov = &s.iovs[i]
		s.hdrs[i].hdr.SetIovlen(1)
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
	s.n, s.done, s.errno = len(bufs), 0, 0
	err := c.rc.Write(s.send)
	for i := range bufs {
		s.iovs[i].Base = nil // keep no buffer alive
	}
	if err != nil {
		return err
	}
	if s.errno != 0 {
		return fmt.Errorf("udpbatch: sendmmsg: %w", s.errno)
	}
	return nil
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
			s.errno = errno
			return true
		}
	}
	return true
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
