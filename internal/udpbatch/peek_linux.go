//go:build linux

package udpbatch

import "golang.org/x/sys/unix"

// queued reports whether a datagram is waiting on the socket fd, without taking it.
func queued(fd uintptr) bool {
	_, _, err := unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC)
	return err != unix.EAGAIN && err != unix.EWOULDBLOCK
}
