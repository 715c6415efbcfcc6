//go:build !linux

package udpbatch

import "net/netip"

// sysReader reads one datagram per Read where recvmmsg is not available.
type sysReader struct{}

func (sysReader) init(*Reader) error { return nil }

func (sysReader) read(r *Reader) (int, error) {
	n, addr, err := r.conn.ReadFromUDPAddrPort(r.bufs[0])
	if err != nil {
		return 0, err
	}
	r.sizes[0], r.addrs[0] = n, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return 1, nil
}
