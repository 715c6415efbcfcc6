package udpbatch

import "net/netip"

// Writer sends several datagrams to one address per system call (sendmmsg on Linux), for
// one goroutine at a time, through any Conn. Through a Conn with GSO enabled, each run of
// equal-size datagrams (and a shorter last one) goes as one GSO datagram.
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
