package turnserver

import (
	"net"
	"net/netip"
)

// boundListener is a listener's proto and the address it is bound to.
type boundListener struct {
	proto string
	addr  netip.AddrPort
}

// transportOf names the listener proto an allocation's 5-tuple came through, for the
// transport label and the sessions list: pion reports only UDP or TCP, and a TLS or DTLS
// client looks like those. A TCP connection's server address is the concrete address it
// was accepted on, so a wildcard listener of the same family and port matches too.
func transportOf(listeners []boundListener, client, server net.Addr) string {
	local, ok := addrPort(server)
	if !ok {
		return "unknown"
	}
	kind := client.Network()
	var wildcard string
	for _, l := range listeners {
		if network(l.proto) != kind || l.addr.Port() != local.Port() {
			continue
		}
		if l.addr.Addr() == local.Addr() {
			return l.proto
		}
		if l.addr.Addr().IsUnspecified() && l.addr.Addr().Is4() == local.Addr().Is4() && wildcard == "" {
			wildcard = l.proto
		}
	}
	if wildcard == "" {
		return "unknown"
	}
	return wildcard
}

// network is the socket type a listener proto runs on.
func network(proto string) string {
	if proto == "udp" || proto == "dtls" {
		return "udp"
	}
	return "tcp"
}

// addrPort converts a UDP or TCP address, with IPv4-mapped addresses unmapped.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// sourceIP is the IP address of a client address, unmapped.
func sourceIP(a net.Addr) netip.Addr {
	ap, _ := addrPort(a)
	return ap.Addr()
}
