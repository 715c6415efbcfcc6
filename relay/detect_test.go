package relay

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestUnicast(t *testing.T) {
	ipnet := func(cidr string) net.Addr {
		ip, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	addrs := []net.Addr{
		ipnet("127.0.0.1/8"),
		ipnet("169.254.1.1/16"),
		ipnet("fe80::1/64"),
		ipnet("224.0.0.1/4"),
		ipnet("10.0.0.5/24"),
		ipnet("192.0.2.9/24"),
		ipnet("2001:db8::5/64"),
	}
	tests := []struct {
		name  string
		addrs []net.Addr
		want6 bool
		want  string // the addresses, in order
	}{
		{"global v4", addrs, false, "[10.0.0.5 192.0.2.9]"},
		{"global v6", addrs, true, "[2001:db8::5]"},
		{"only loopback and link-local", addrs[:4], false, "[]"},
		{"only loopback and link-local v6", addrs[:4], true, "[]"},
		{"no addresses", nil, false, "[]"},
		{"unparsable entries are skipped", []net.Addr{&net.UnixAddr{Name: "/x", Net: "unix"}, ipnet("192.0.2.9/24")}, false, "[192.0.2.9]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(unicast(tt.addrs, tt.want6)); got != tt.want {
				t.Fatalf("unicast = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestOwnIPs: a relay bound to the wildcard is reached at every address of the host, so
// all of them are Ferry's own to the peer policy; a specific bind address is reached there
// and at the public address only.
func TestOwnIPs(t *testing.T) {
	ip := netip.MustParseAddr
	specific := Addrs{Bind: ip("10.0.0.5"), Public: ip("203.0.113.7")}
	if got := fmt.Sprint(specific.OwnIPs()); got != "[203.0.113.7 10.0.0.5]" {
		t.Errorf("OwnIPs of %+v = %s", specific, got)
	}
	if got := (Addrs{}).OwnIPs(); got != nil {
		t.Errorf("OwnIPs of a family that is off = %v", got)
	}
	wildcard := Addrs{Bind: netip.IPv4Unspecified(), Public: ip("203.0.113.7")}
	got := wildcard.OwnIPs()
	if want := append([]netip.Addr{wildcard.Public}, hostIPs(false)...); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("OwnIPs of %+v = %v, want %v", wildcard, got, want)
	}
	if host := hostIPs(false); len(host) > 0 && !slices.Contains(got, host[0]) {
		t.Errorf("OwnIPs of %+v = %v lacks the host's address %v", wildcard, got, host[0])
	}
}

func TestResolveAddrs(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		name         string
		bind, public netip.Addr
		want         Addrs
	}{
		{"family off", netip.Addr{}, netip.Addr{}, Addrs{}},
		{"family off even with a public IP", netip.Addr{}, ip("203.0.113.7"), Addrs{}},
		{"bind advertised", ip("192.0.2.1"), netip.Addr{}, Addrs{Bind: ip("192.0.2.1"), Public: ip("192.0.2.1")}},
		{"1:1 NAT", ip("10.0.0.5"), ip("203.0.113.7"), Addrs{Bind: ip("10.0.0.5"), Public: ip("203.0.113.7")}},
		{"wildcard with public", netip.IPv4Unspecified(), ip("203.0.113.7"), Addrs{Bind: netip.IPv4Unspecified(), Public: ip("203.0.113.7")}},
		{"v6", ip("::1"), ip("2001:db8::7"), Addrs{Bind: ip("::1"), Public: ip("2001:db8::7")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ResolveAddrs(tt.bind, tt.public)
			if !ok || got != tt.want {
				t.Fatalf("ResolveAddrs(%s, %s) = %+v, %v; want %+v, true", tt.bind, tt.public, got, ok, tt.want)
			}
		})
	}

	// The wildcard without a public IP advertises whatever this machine has, if anything.
	for _, wildcard := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		host := hostIPs(wildcard.Is6())
		found := len(host) > 0
		var detected netip.Addr
		if found {
			detected = host[0]
		}
		got, ok := ResolveAddrs(wildcard, netip.Addr{})
		if ok != found {
			t.Errorf("ResolveAddrs(%s) ok = %v, but the host has addresses = %v", wildcard, ok, found)
		}
		if found && (got.Bind != wildcard || got.Public != detected) {
			t.Errorf("ResolveAddrs(%s) = %+v, want Bind %s Public %s", wildcard, got, wildcard, detected)
		}
		if found && (!detected.IsGlobalUnicast() || detected.Is6() != wildcard.Is6() || detected.IsLoopback()) {
			t.Errorf("hostIPs(%v)[0] = %s, not a global unicast address of the family", wildcard.Is6(), detected)
		}
	}
}
