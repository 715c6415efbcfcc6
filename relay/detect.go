package relay

import (
	"net"
	"net/netip"
)

// hostIPs are the unicast addresses of the wanted family on the up, non-loopback
// interfaces, in interface order. It reads interface addresses only; it sends nothing.
func hostIPs(want6 bool) []netip.Addr {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		out = append(out, unicast(addrs, want6)...)
	}
	return out
}

func unicast(addrs []net.Addr, want6 bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if ip := pfx.Addr(); ip.Is6() == want6 && ip.IsGlobalUnicast() {
			out = append(out, ip)
		}
	}
	return out
}

// OwnIPs are the addresses a's relay sockets are reached at: the public and the bind
// address, and, when the bind address is the wildcard, every unicast address of the host in
// the family (a relay socket bound to 0.0.0.0 answers on all of them, and so may the other
// services of the host: the peer policy must treat them all as Ferry's own).
func (a Addrs) OwnIPs() []netip.Addr {
	if !a.Bind.IsValid() {
		return nil
	}
	out := []netip.Addr{a.Public}
	if !a.Bind.IsUnspecified() {
		return append(out, a.Bind)
	}
	return append(out, hostIPs(a.Bind.Is6())...)
}

// ResolveAddrs turns configured bind and public IPs into the addresses relays use. An
// invalid bind means the family is off. Without a public IP the bind IP is advertised, or,
// when it is the wildcard (zero config), the first of the host's addresses of the family;
// ok is false when there is none to advertise.
func ResolveAddrs(bind, public netip.Addr) (addrs Addrs, ok bool) {
	if !bind.IsValid() {
		return Addrs{}, true
	}
	addrs.Bind = bind
	switch {
	case public.IsValid():
		addrs.Public = public
	case !bind.IsUnspecified():
		addrs.Public = bind
	default:
		ips := hostIPs(bind.Is6())
		if len(ips) == 0 {
			return Addrs{Bind: bind}, false
		}
		addrs.Public = ips[0]
	}
	return addrs, true
}
