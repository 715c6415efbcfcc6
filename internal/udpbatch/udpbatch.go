// Package udpbatch reads several UDP datagrams per system call (recvmmsg on Linux) without
// allocating: under load a read loop then pays one syscall and one wake-up for a batch
// instead of one per datagram.
package udpbatch

import (
	"net"
	"net/netip"
)

// Reader reads batches of datagrams from one socket into fixed buffers. One goroutine at a
// time may use it.
type Reader struct {
	conn  *net.UDPConn
	bufs  [][]byte
	sizes []int
	addrs []netip.AddrPort
	sys   sysReader
}

// NewReader reads from conn into bufs: one datagram per buffer, at most len(bufs) per batch.
func NewReader(conn *net.UDPConn, bufs [][]byte) (*Reader, error) {
	r := &Reader{conn: conn, bufs: bufs, sizes: make([]int, len(bufs)), addrs: make([]netip.AddrPort, len(bufs))}
	if err := r.sys.init(r); err != nil {
		return nil, err
	}
	return r, nil
}

// Read waits for at least one datagram and returns how many it read; datagram i is
// Datagram(i). A datagram longer than its buffer is truncated.
func (r *Reader) Read() (int, error) { return r.sys.read(r) }

// Datagram returns the i-th datagram of the last Read and its source address, IPv4-mapped
// addresses unmapped. The bytes are valid until the next Read.
func (r *Reader) Datagram(i int) ([]byte, netip.AddrPort) {
	return r.bufs[i][:r.sizes[i]], r.addrs[i]
}
