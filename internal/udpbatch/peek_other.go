//go:build !linux

package udpbatch

// queued says a datagram may be waiting: reads wait for one where recvmmsg is not
// available, so WaitReadable need not.
func queued(uintptr) bool { return true }
