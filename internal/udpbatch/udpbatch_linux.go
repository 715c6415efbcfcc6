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

// mmsghdr is struct mmsghdr of recvmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

type sysReader struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for either family
	n     int
	errno syscall.Errno
	wait  bool // the read waits for a datagram (Read), or not (TryRead)
	// recv is s.recvmmsg bound once: a closure made per read would be allocated per read.
	recv func(fd uintptr) bool
}

func (s *sysReader) init(r *Reader) {
	s.hdrs = make([]mmsghdr, len(r.bufs))
	s.iovs = make([]unix.Iovec, len(r.bufs))
	s.names = make([]unix.RawSockaddrInet6, len(r.bufs))
	for i, b := range r.bufs {
		s.iovs[i].Base = &b[0]
		s.iovs[i].SetLen(len(b))
		h := &s.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
	}
	s.recv = s.recvmmsg
}

// recvmmsg is the RawConn.Read callback: false asks the runtime to wait for the socket.
func (s *sysReader) recvmmsg(fd uintptr) bool {
	for i := range s.hdrs {
		s.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])),
		uintptr(len(s.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	for errno == unix.EINTR {
		n, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])),
			uintptr(len(s.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	}
	if errno == unix.EAGAIN || errno == unix.EWOULDBLOCK {
		s.n, s.errno = 0, 0
		return !s.wait
	}
	s.n, s.errno = int(n), errno
	return true
}

func (s *sysReader) read(r *Reader, c *Conn, wait bool) (int, error) {
	s.wait = wait
	if err := c.rc.Read(s.recv); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, fmt.Errorf("udpbatch: recvmmsg: %w", s.errno)
	}
	for i := range s.n {
		r.sizes[i] = int(s.hdrs[i].len)
		r.addrs[i] = sockaddr(&s.names[i])
	}
	return s.n, nil
}

// sockaddr decodes a sockaddr_in or sockaddr_in6 (port in network byte order).
func sockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}
