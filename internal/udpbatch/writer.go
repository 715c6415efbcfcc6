package udpbatch

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Conn is a UDP socket that Writers send through.
type Conn struct {
	*net.UDPConn
	rc syscall.RawConn // made once: SyscallConn allocates
}

// NewConn prepares conn for Writers.
func NewConn(conn *net.UDPConn) (*Conn, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpbatch: %w", err)
	}
	return &Conn{UDPConn: conn, rc: rc}, nil
}

// Writer sends several datagrams to one address per system call (sendmmsg on Linux), for
// one goroutine at a time, through any Conn.
type Writer struct {
	sys sysWriter
}

// NewWriter returns a Writer for batches of up to n datagrams.
func NewWriter(n int) *Writer {
	w := &Writer{}
	w.sys.init(n)
	return w
}

// WriteTo sends every buffer of bufs (at most n) as one datagram to to, through c.
func (w *Writer) WriteTo(c *Conn, bufs [][]byte, to netip.AddrPort) error {
	if len(bufs) == 1 {
		_, err := c.WriteToUDPAddrPort(bufs[0], to)
		return err
	}
	return w.sys.write(c, bufs, to)
}
