//go:build !linux

package udpbatch

import "net/netip"

// sysReader reads one datagram per read where recvmmsg is not available. It always waits,
// TryRead too: a reader there is held while its socket is idle.
type sysReader struct{}

func (sysReader) init(*Reader) {}

func (sysReader) read(r *Reader, c *Conn, _ bool) (int, error) {
	n, addr, err := c.ReadFromUDPAddrPort(r.bufs[0])
	if err != nil {
		return 0, err
	}
	r.sizes[0], r.addrs[0] = n, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return 1, nil
}

// sysWriter sends one datagram per system call where sendmmsg is not available.
type sysWriter struct{}

func (sysWriter) init(int) {}

func (sysWriter) write(c *Conn, bufs [][]byte, to netip.AddrPort) error {
	for _, b := range bufs {
		if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
			return err
		}
	}
	return nil
}

// EnableGSO reports that GSO is not available: Writers send datagrams one by one.
func (c *Conn) EnableGSO(GSOStats) bool { return false }
