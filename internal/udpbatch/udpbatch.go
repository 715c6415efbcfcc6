// Package udpbatch reads and writes several UDP datagrams per system call (recvmmsg and
// sendmmsg on Linux) without allocating: under load a read loop then pays one syscall and
// one wake-up for a batch instead of one per datagram.
package udpbatch

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Conn is a UDP socket that Readers read from and Writers send through.
type Conn struct {
	*net.UDPConn
	rc syscall.RawConn // made once: SyscallConn allocates
	// woke and wait make WaitReadable's callback, bound once for the same reason; only
	// the socket's one reading goroutine uses them.
	woke bool
	wait func(fd uintptr) bool
	gso  *gsoState // nil: Writers send every datagram on its own
}

// NewConn prepares conn for Readers and Writers.
func NewConn(conn *net.UDPConn) (*Conn, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpbatch: %w", err)
	}
	c := &Conn{UDPConn: conn, rc: rc}
	c.wait = func(fd uintptr) bool {
		if c.woke || queued(fd) {
			return true
		}
		c.woke = true
		return false // wait for the socket to become readable, then call again
	}
	return c, nil
}

// WaitReadable waits until the socket has a datagram to read, holding no buffer: an idle
// socket then costs no memory for its batch. It first looks whether one is queued already:
// the runtime forgets a readiness it noticed once a read starts, so a datagram that came
// after the last read would otherwise wait for the next one.
func (c *Conn) WaitReadable() error {
	c.woke = false
	return c.rc.Read(c.wait)
}

// Reader reads batches of datagrams into fixed buffers, from any Conn. One goroutine at a
// time may use it.
type Reader struct {
	bufs  [][]byte
	sizes []int
	addrs []netip.AddrPort
	sys   sysReader
}

// NewReader reads into bufs: one datagram per buffer, at most len(bufs) per batch.
func NewReader(bufs [][]byte) *Reader {
	r := &Reader{bufs: bufs, sizes: make([]int, len(bufs)), addrs: make([]netip.AddrPort, len(bufs))}
	r.sys.init(r)
	return r
}

// Read waits for at least one datagram on c and returns how many it read; datagram i is
// Datagram(i). A datagram longer than its buffer is truncated.
func (r *Reader) Read(c *Conn) (int, error) { return r.sys.read(r, c, true) }

// TryRead reads what c has queued without waiting for more: 0 when there is nothing.
func (r *Reader) TryRead(c *Conn) (int, error) { return r.sys.read(r, c, false) }

// Datagram returns the i-th datagram of the last read and its source address, IPv4-mapped
// addresses unmapped. The bytes are valid until the next read.
func (r *Reader) Datagram(i int) ([]byte, netip.AddrPort) {
	return r.bufs[i][:r.sizes[i]], r.addrs[i]
}
