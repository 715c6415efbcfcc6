// Package portprobe tells whether another socket already holds a listening address.
//
// Ferry's UDP listeners bind one SO_REUSEPORT socket per CPU to their address, and Linux
// lets any process of the same user join such a group: a second Ferry on the same config,
// or any server that sets SO_REUSEPORT (coturn does), would start without an error and
// silently get part of the clients, split by the kernel. A probe socket bound without
// SO_REUSEPORT cannot join the group, so its bind fails while anyone holds the address.
// Ferry probes every listener before it opens it; whichever code opens the listeners.
package portprobe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// InUseError says that another socket holds the address.
type InUseError struct {
	Network string // "udp" or "tcp"
	Addr    netip.AddrPort
	Err     error // the probe's bind error
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("%s %s is already in use by another process (another Ferry, or a server "+
		"sharing the port with SO_REUSEPORT): %v", e.Network, e.Addr, e.Err)
}

func (e *InUseError) Unwrap() error { return e.Err }

// Free binds a probe socket to addr on network ("udp" or "tcp", of addr's family alone, as
// Ferry's listeners are) and closes it again. It returns nil if the bind succeeded, an
// *InUseError if another socket holds the address, and the bind's error otherwise (an
// address of no interface, a port below 1024 without the capability).
//
// The TCP probe sets SO_REUSEADDR, as Go's listeners do, so connections of a previous run
// left in TIME_WAIT do not count as a holder; a listening socket does.
func Free(network string, addr netip.AddrPort) error {
	family := "4"
	if addr.Addr().Is6() {
		family = "6"
	}
	err := bindAndClose(network+family, addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return &InUseError{Network: network, Addr: addr, Err: err}
	}
	return err
}

func bindAndClose(network string, addr netip.AddrPort) error {
	switch network {
	case "udp4", "udp6":
		// Go sets no SO_REUSEADDR or SO_REUSEPORT on a unicast UDP socket.
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		return c.Close()
	case "tcp4", "tcp6":
		ln, err := net.ListenTCP(network, net.TCPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		return ln.Close()
	}
	return fmt.Errorf("portprobe: unknown network %q", network)
}
