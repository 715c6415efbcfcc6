package relay

import (
	"net"
	"net/netip"
)

// DetectIP returns the first unicast address of the wanted family on an up, non-loopback
// interface: the address a zero-config Ferry advertises when it binds the wildcard address
// and no public_ip is set. It reads interface addresses only; it sends nothing.
func DetectIP(want6 bool) (netip.Addr, bool) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		if ip, ok := pickUnicast(addrs, want6); ok {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func pickUnicast(addrs []net.Addr, want6 bool) (netip.Addr, bool) {
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr()
		if ip.Is6() != want6 || !ip.IsGlobalUnicast() {
			continue
		}
		return ip, true
	}
	return netip.Addr{}, false
}

// ResolveAddrs turns configured bind and public IPs into the addresses relays use. An
// invalid bind means the family is off. Without a public IP the bind IP is advertised, or,
// when it is the wildcard, the detected address of the machine; ok is false when there is
// none to advertise.
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
		detected, found := DetectIP(bind.Is6())
		if !found {
			return Addrs{Bind: bind}, false
		}
		addrs.Public = detected
	}
	return addrs, true
}
