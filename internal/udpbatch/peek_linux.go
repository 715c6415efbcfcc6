//go:build linux

package udpbatch

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// queued reports whether a datagram is waiting on the socket fd, without taking it. It
// calls recvfrom(2) itself: unix.Recvfrom would allocate the source address it returns.
func queued(fd uintptr) bool {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, 0, 0,
		unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
	return errno != syscall.EAGAIN && errno != syscall.EWOULDBLOCK
}
