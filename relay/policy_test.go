package relay

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Pool of the policies below: the own relay addresses are allowed only with these ports.
const (
	testMinPort = 40000
	testMaxPort = 40099
)

// heldRange pretends every port of [min, max] is held by the pool for UDP.
func heldRange(min, max int) func(uint16, Proto) bool {
	return func(port uint16, proto Proto) bool {
		return proto == UDP && int(port) >= min && int(port) <= max
	}
}

func mustPolicy(t testing.TB, deny, allow []string, own ...string) *Policy {
	t.Helper()
	var ips []netip.Addr
	for _, s := range own {
		ips = append(ips, netip.MustParseAddr(s))
	}
	p, err := NewPolicy(deny, allow, ips, heldRange(testMinPort, testMaxPort))
	if err != nil {
		t.Fatalf("NewPolicy(%q, %q, %v): %v", deny, allow, own, err)
	}
	return p
}

// recommendedPolicy denies the recommended ranges and has no own relay address, so only the
// deny list decides.
func recommendedPolicy(t *testing.T) *Policy {
	return mustPolicy(t, []string{Recommended}, nil)
}

// firstMiddleLast returns the first and last address of p and one in between (a fixed bit
// pattern in the host part); for a single-address prefix the three are the same.
func firstMiddleLast(p netip.Prefix) []netip.Addr {
	p = p.Masked()
	first := p.Addr()
	if first.Is4() {
		b := first.As4()
		last, mid := b, b
		setHostBits(last[:], p.Bits(), 0xff)
		setHostBits(mid[:], p.Bits(), 0xa5)
		return []netip.Addr{first, netip.AddrFrom4(mid), netip.AddrFrom4(last)}
	}
	b := first.As16()
	last, mid := b, b
	setHostBits(last[:], p.Bits(), 0xff)
	setHostBits(mid[:], p.Bits(), 0xa5)
	return []netip.Addr{first, netip.AddrFrom16(mid), netip.AddrFrom16(last)}
}

// setHostBits ORs pattern into every bit of b after the first bits bits.
func setHostBits(b []byte, bits int, pattern byte) {
	for i := range b {
		for bit := range 8 {
			if i*8+bit >= bits {
				b[i] |= pattern & (0x80 >> bit)
			}
		}
	}
}

// mapped returns ::ffff:a.b.c.d, the IPv4-mapped IPv6 form of an IPv4 address.
func mapped(ip netip.Addr) netip.Addr { return netip.AddrFrom16(ip.As16()) }

// compat returns ::a.b.c.d, the (deprecated) IPv4-compatible IPv6 form of an IPv4 address.
func compat(ip netip.Addr) netip.Addr {
	var b [16]byte
	v4 := ip.As4()
	copy(b[12:], v4[:])
	return netip.AddrFrom16(b)
}

func TestFirstMiddleLast(t *testing.T) {
	// The helper decides what "every denied range" covers below, so check it first.
	tests := []struct {
		prefix string
		want   []string
	}{
		{"10.0.0.0/8", []string{"10.0.0.0", "10.165.165.165", "10.255.255.255"}},
		{"172.16.0.0/12", []string{"172.16.0.0", "172.21.165.165", "172.31.255.255"}},
		{"100.64.0.0/10", []string{"100.64.0.0", "100.101.165.165", "100.127.255.255"}},
		{"255.255.255.255/32", []string{"255.255.255.255", "255.255.255.255", "255.255.255.255"}},
		{"fe80::/10", []string{"fe80::", "fea5:a5a5:a5a5:a5a5:a5a5:a5a5:a5a5:a5a5", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{"::1/128", []string{"::1", "::1", "::1"}},
	}
	for _, tt := range tests {
		got := firstMiddleLast(netip.MustParsePrefix(tt.prefix))
		var gotS []string
		for _, a := range got {
			gotS = append(gotS, a.String())
		}
		if !slices.Equal(gotS, tt.want) {
			t.Errorf("firstMiddleLast(%s) = %v, want %v", tt.prefix, gotS, tt.want)
		}
	}
}

func TestRecommendedDenyListsTheIssueRanges(t *testing.T) {
	// The ranges the issues name (the security review added 6to4 and Teredo);
	// RecommendedDeny may list more (it adds the local-use NAT64 prefix 64:ff9b:1::/48),
	// never fewer.
	want := []string{
		"0.0.0.0/8", "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
		"100.64.0.0/10", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
		"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96",
		"2002::/16", "2001::/32",
	}
	got := RecommendedDeny()
	for _, w := range want {
		if !slices.Contains(got, netip.MustParsePrefix(w)) {
			t.Errorf("RecommendedDeny() lacks %s", w)
		}
	}
	for _, p := range got {
		if p != p.Masked() {
			t.Errorf("RecommendedDeny() has %s with host bits set", p)
		}
	}
}

// TestPolicyDeniesEveryRecommendedRange checks the first, a middle and the last address of
// every recommended range, and of every IPv4 range also its IPv4-mapped and IPv4-compatible
// IPv6 forms.
func TestPolicyDeniesEveryRecommendedRange(t *testing.T) {
	p := recommendedPolicy(t)
	for _, pfx := range RecommendedDeny() {
		t.Run(pfx.String(), func(t *testing.T) {
			var addrs []netip.Addr
			for _, ip := range firstMiddleLast(pfx) {
				addrs = append(addrs, ip)
				if ip.Is4() {
					addrs = append(addrs, mapped(ip), compat(ip))
				}
			}
			for _, ip := range addrs {
				if p.PermitIP(ip) {
					t.Errorf("PermitIP(%s) = true, want false", ip)
				}
				for _, port := range []uint16{1, 3478, testMinPort, 65535} {
					if ap := netip.AddrPortFrom(ip, port); p.PermitAddr(UDP, ap) {
						t.Errorf("PermitAddr(udp, %s) = true, want false", ap)
					}
				}
			}
		})
	}
}

func TestPolicyRecommended(t *testing.T) {
	p := recommendedPolicy(t)
	type ipCase struct {
		name string
		ip   string
		want bool
	}
	tests := []ipCase{
		// CVE-2020-26262: coturn let these through.
		{"unspecified v4", "0.0.0.0", false},
		{"unspecified v6", "::", false},
		{"loopback v6", "::1", false},
		{"mapped loopback", "::ffff:127.0.0.1", false},
		{"compat loopback", "::127.0.0.1", false},
		{"mapped unspecified", "::ffff:0.0.0.0", false},
		{"mapped private", "::ffff:10.1.2.3", false},
		{"NAT64 of loopback", "64:ff9b::7f00:1", false},
		{"NAT64 of a public address", "64:ff9b::808:808", false}, // the whole prefix is denied
		{"local-use NAT64", "64:ff9b:1::a00:1", false},
		{"zoned link-local", "fe80::1%eth0", false},
		{"zoned mapped loopback", "::ffff:127.0.0.1%eth0", false},
		{"zoned ULA", "fd00::1%1", false},
		{"mapped broadcast", "::ffff:255.255.255.255", false},
		{"compat broadcast", "::255.255.255.255", false},
		// :: and ::1 read as IPv4-compatible are 0.0.0.0 and 0.0.0.1, so the rest of ::/104
		// is 0.0.0.0/8 and denied too, though no IPv6 rule names it.
		{"compat 0.0.0.2", "::2", false},
		{"compat 0.255.255.255", "::ff:ffff", false},
		// 6to4 and Teredo addresses embed an IPv4 address (2002:7f00:1:: is 127.0.0.1's
		// 6to4 prefix); a relay that reaches them through a gateway reaches that address.
		{"6to4 of loopback", "2002:7f00:1::1", false},
		{"6to4 of a private address", "2002:a00:1::1", false},
		{"Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2", false},
		{"just after Teredo", "2001:1::1", true},
		{"just before 6to4", "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
		{"just after 6to4", "2003::1", true},

		// Public addresses, also when written as IPv6: canonicalisation turns
		// ::ffff:8.8.8.8 and ::8.8.8.8 into 8.8.8.8, which is allowed.
		{"public v4", "8.8.8.8", true},
		{"public v4 (cloudflare)", "1.1.1.1", true},
		{"public v6", "2001:4860:4860::8888", true},
		{"mapped public", "::ffff:8.8.8.8", true},
		{"compat public", "::8.8.8.8", true},
		{"documentation v4", "203.0.113.7", true},
		{"just after 64:ff9b::/96", "64:ff9b::1:0:0", true},
		{"just after fc00::/7", "fe00::", true},
		{"just after fe80::/10", "fec0::", true},
		{"just before ff00::/8", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
		{"just before fc00::/7", "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
	}
	// The public neighbours of every IPv4 range: the address before its first and after
	// its last.
	for _, ip := range []string{
		"1.0.0.0",                   // after 0.0.0.0/8
		"9.255.255.255", "11.0.0.0", // 10.0.0.0/8
		"100.63.255.255", "100.128.0.0", // 100.64.0.0/10
		"126.255.255.255", "128.0.0.0", // 127.0.0.0/8
		"169.253.255.255", "169.255.0.0", // 169.254.0.0/16
		"172.15.255.255", "172.32.0.0", // 172.16.0.0/12
		"192.167.255.255", "192.169.0.0", // 192.168.0.0/16
		"223.255.255.255", // before 224.0.0.0/4 (240/4 and 255.255.255.255 follow it)
	} {
		tests = append(tests,
			ipCase{"boundary " + ip, ip, true},
			ipCase{"mapped boundary " + ip, "::ffff:" + ip, true},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip := netip.MustParseAddr(tt.ip)
			if got := p.PermitIP(ip); got != tt.want {
				t.Errorf("PermitIP(%s) = %v, want %v", ip, got, tt.want)
			}
			ap := netip.AddrPortFrom(ip, 5000)
			if got := p.PermitAddr(UDP, ap); got != tt.want {
				t.Errorf("PermitAddr(udp, %s) = %v, want %v", ap, got, tt.want)
			}
		})
	}
}

func TestPolicyAllowWinsOverDeny(t *testing.T) {
	tests := []struct {
		name  string
		deny  []string
		allow []string
		ip    string
		want  bool
	}{
		{"allowed /32", []string{Recommended}, []string{"127.0.0.1/32"}, "127.0.0.1", true},
		{"neighbour of allowed /32", []string{Recommended}, []string{"127.0.0.1/32"}, "127.0.0.2", false},
		{"mapped form follows the IPv4 rule", []string{Recommended}, []string{"127.0.0.1/32"}, "::ffff:127.0.0.1", true},
		{"mapped neighbour", []string{Recommended}, []string{"127.0.0.1/32"}, "::ffff:127.0.0.2", false},
		{"compat form follows the IPv4 rule", []string{Recommended}, []string{"127.0.0.1/32"}, "::127.0.0.1", true},
		{"::1 stays denied", []string{Recommended}, []string{"127.0.0.1/32"}, "::1", false},
		{"allowed private /24", []string{Recommended}, []string{"10.1.2.0/24"}, "10.1.2.200", true},
		{"outside allowed /24", []string{Recommended}, []string{"10.1.2.0/24"}, "10.1.3.1", false},
		{"allowed v6 ULA /16", []string{Recommended}, []string{"fd12::/16"}, "fd12::1", true},
		{"outside allowed v6", []string{Recommended}, []string{"fd12::/16"}, "fd13::1", false},
		{"zoned address in allowed range", []string{Recommended}, []string{"fe80::/10"}, "fe80::1%eth0", true},
		{"CIDR with host bits is masked", []string{Recommended}, []string{"10.9.9.9/16"}, "10.9.0.1", true},

		// Single IPs as entries.
		{"single allowed IP", []string{Recommended}, []string{"192.168.1.10"}, "192.168.1.10", true},
		{"next to single allowed IP", []string{Recommended}, []string{"192.168.1.10"}, "192.168.1.11", false},
		{"single allowed v6", []string{Recommended}, []string{"fd00::5"}, "fd00::5", true},
		{"single denied IP", []string{"203.0.113.9"}, nil, "203.0.113.9", false},
		{"next to single denied IP", []string{"203.0.113.9"}, nil, "203.0.113.10", true},
		{"mapped single denied IP", []string{"203.0.113.9"}, nil, "::ffff:203.0.113.9", false},
		{"single denied v6", []string{"2001:db8::9"}, nil, "2001:db8::9", false},
		{"next to single denied v6", []string{"2001:db8::9"}, nil, "2001:db8::a", true},

		// Custom lists without "recommended".
		{"custom deny only", []string{"198.51.100.0/24"}, nil, "127.0.0.1", true},
		{"custom deny hit", []string{"198.51.100.0/24"}, nil, "198.51.100.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(t, tt.deny, tt.allow)
			ip := netip.MustParseAddr(tt.ip)
			if got := p.PermitIP(ip); got != tt.want {
				t.Errorf("PermitIP(%s) = %v, want %v", ip, got, tt.want)
			}
			for _, port := range []uint16{22, testMinPort, 50000} {
				ap := netip.AddrPortFrom(ip, port)
				if got := p.PermitAddr(UDP, ap); got != tt.want {
					t.Errorf("PermitAddr(udp, %s) = %v, want %v", ap, got, tt.want)
				}
			}
		})
	}
}

func TestPolicyEmptyDenyAllowsEverything(t *testing.T) {
	for _, deny := range [][]string{nil, {}} {
		p := mustPolicy(t, deny, nil)
		for _, s := range []string{"0.0.0.0", "127.0.0.1", "10.0.0.1", "::", "::1", "::ffff:127.0.0.1", "fe80::1%eth0", "8.8.8.8", "255.255.255.255"} {
			ip := netip.MustParseAddr(s)
			if !p.PermitIP(ip) {
				t.Errorf("deny %q: PermitIP(%s) = false, want true", deny, ip)
			}
			if ap := netip.AddrPortFrom(ip, 22); !p.PermitAddr(UDP, ap) {
				t.Errorf("deny %q: PermitAddr(udp, %s) = false, want true", deny, ap)
			}
			if ap := netip.AddrPortFrom(ip, 22); !p.PermitSource(UDP, ap) {
				t.Errorf("deny %q: PermitSource(udp, %s) = false, want true", deny, ap)
			}
		}
	}
}

func TestPolicyOwnRelayAddresses(t *testing.T) {
	denyOwn := mustPolicy(t, []string{Recommended}, nil, "127.0.0.1")
	// With an empty deny list the own address is still guarded: only pool ports.
	openOwn := mustPolicy(t, nil, nil, "127.0.0.1")
	// An own IP explicitly in allow_peers may use any port.
	allowOwn := mustPolicy(t, []string{Recommended}, []string{"127.0.0.1/32"}, "127.0.0.1")
	// Own addresses given in another form, or unusable ones, are canonicalised or ignored.
	mappedOwn := mustPolicy(t, []string{Recommended}, nil, "::ffff:127.0.0.1", "0.0.0.0", "::")
	v6Own := mustPolicy(t, []string{Recommended}, nil, "::1")

	tests := []struct {
		name   string
		policy *Policy
		peer   string
		want   bool
	}{
		{"pool port", denyOwn, "127.0.0.1:40050", true},
		{"first pool port", denyOwn, "127.0.0.1:40000", true},
		{"last pool port", denyOwn, "127.0.0.1:40099", true},
		{"ssh port", denyOwn, "127.0.0.1:22", false},
		{"port before pool", denyOwn, "127.0.0.1:39999", false},
		{"port after pool", denyOwn, "127.0.0.1:40100", false},
		{"other loopback IP, pool port", denyOwn, "127.0.0.2:40050", false},
		{"mapped own, pool port", denyOwn, "[::ffff:127.0.0.1]:40050", true},
		{"mapped own, other port", denyOwn, "[::ffff:127.0.0.1]:22", false},
		{"compat own, pool port", denyOwn, "[::127.0.0.1]:40050", true},
		{"::1 is not 127.0.0.1", denyOwn, "[::1]:40050", false},
		{"unspecified is not own", denyOwn, "0.0.0.0:40050", false},
		{"public peer unaffected", denyOwn, "8.8.8.8:22", true},

		{"empty deny, own pool port", openOwn, "127.0.0.1:40050", true},
		{"empty deny, own other port", openOwn, "127.0.0.1:22", false},
		{"empty deny, other loopback", openOwn, "127.0.0.2:22", true},

		{"allowed own, ssh port", allowOwn, "127.0.0.1:22", true},
		{"allowed own, pool port", allowOwn, "127.0.0.1:40050", true},
		{"allowed own, neighbour IP", allowOwn, "127.0.0.2:40050", false},

		{"own given mapped, pool port", mappedOwn, "127.0.0.1:40050", true},
		{"own given mapped, other port", mappedOwn, "127.0.0.1:22", false},
		{"unspecified own ignored", mappedOwn, "0.0.0.0:40050", false},
		{"unspecified v6 own ignored", mappedOwn, "[::]:40050", false},

		{"v6 own, pool port", v6Own, "[::1]:40050", true},
		{"v6 own, other port", v6Own, "[::1]:22", false},
		{"v6 own, v4 loopback", v6Own, "127.0.0.1:40050", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.peer)
			if got := tt.policy.PermitAddr(UDP, ap); got != tt.want {
				t.Errorf("PermitAddr(udp, %s) = %v, want %v", ap, got, tt.want)
			}
		})
	}

	// CreatePermission names an IP only: an own IP is permitted (the port is checked at
	// ChannelBind, Send and Connect), other denied IPs are not.
	ipTests := []struct {
		name   string
		policy *Policy
		ip     string
		want   bool
	}{
		{"own IP", denyOwn, "127.0.0.1", true},
		{"mapped own IP", denyOwn, "::ffff:127.0.0.1", true},
		{"other loopback IP", denyOwn, "127.0.0.2", false},
		{"private IP", denyOwn, "10.0.0.1", false},
		{"v6 own IP", v6Own, "::1", true},
		{"v6 own policy, v4 loopback", v6Own, "127.0.0.1", false},
		{"own given mapped", mappedOwn, "127.0.0.1", true},
		{"unspecified own ignored", mappedOwn, "0.0.0.0", false},
	}
	for _, tt := range ipTests {
		t.Run("PermitIP "+tt.name, func(t *testing.T) {
			ip := netip.MustParseAddr(tt.ip)
			if got := tt.policy.PermitIP(ip); got != tt.want {
				t.Errorf("PermitIP(%s) = %v, want %v", ip, got, tt.want)
			}
		})
	}
}

func TestPolicyPermitSource(t *testing.T) {
	noOwn := mustPolicy(t, []string{Recommended}, nil)
	own := mustPolicy(t, []string{Recommended}, nil, "127.0.0.1")
	allowOwn := mustPolicy(t, []string{Recommended}, []string{"127.0.0.1/32"}, "127.0.0.1")
	tests := []struct {
		name   string
		policy *Policy
		src    string
		want   bool
	}{
		{"own IP, pool port (another allocation)", own, "127.0.0.1:40050", true},
		{"own IP, first pool port", own, "127.0.0.1:40000", true},
		{"own IP, last pool port", own, "127.0.0.1:40099", true},
		{"own IP, service port", own, "127.0.0.1:53", false},
		{"own IP, port before pool", own, "127.0.0.1:39999", false},
		{"own IP, port after pool", own, "127.0.0.1:40100", false},
		{"mapped own IP, service port", own, "[::ffff:127.0.0.1]:53", false},
		{"mapped own IP, pool port", own, "[::ffff:127.0.0.1]:40050", true},
		{"other loopback IP", own, "127.0.0.2:53", true}, // permissions filter it later
		{"private source", own, "10.0.0.1:53", true},
		{"public source", own, "8.8.8.8:53", true},
		{"no own IPs: anything", noOwn, "127.0.0.1:53", true},
		{"own IP in allow_peers, service port", allowOwn, "127.0.0.1:53", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.src)
			if got := tt.policy.PermitSource(UDP, ap); got != tt.want {
				t.Errorf("PermitSource(udp, %s) = %v, want %v", ap, got, tt.want)
			}
		})
	}
}

func TestNewPolicyErrors(t *testing.T) {
	tests := []struct {
		name        string
		deny, allow []string
		wantErr     string // substring; "" = no error
	}{
		{"recommended in deny", []string{Recommended}, nil, ""},
		{"recommended twice", []string{Recommended, Recommended}, nil, ""},
		{"IPs and CIDRs", []string{"10.0.0.0/8", "::1", "2001:db8::/32"}, []string{"10.1.2.3", "fd00::/8"}, ""},
		{"recommended in allow", nil, []string{Recommended}, "allow_peers"},
		{"garbage in deny", []string{"not-an-ip"}, nil, "deny_peers"},
		{"garbage in allow", nil, []string{"not-an-ip"}, "allow_peers"},
		{"prefix too long", []string{"10.0.0.0/33"}, nil, "deny_peers"},
		{"v6 prefix too long", []string{"::/129"}, nil, "deny_peers"},
		{"bad octet", nil, []string{"300.1.1.1"}, "allow_peers"},
		{"keyword with space", []string{" recommended"}, nil, "deny_peers"},
		{"keyword in capitals", []string{"RECOMMENDED"}, nil, "deny_peers"},
		{"empty entry", []string{""}, nil, "deny_peers"},
		{"host name", nil, []string{"localhost"}, "allow_peers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(tt.deny, tt.allow, nil, heldRange(testMinPort, testMaxPort))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewPolicy(%q, %q): %v", tt.deny, tt.allow, err)
			case tt.wantErr == "" && p == nil:
				t.Fatalf("NewPolicy(%q, %q) = nil, nil", tt.deny, tt.allow)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("NewPolicy(%q, %q) succeeded, want an error mentioning %q", tt.deny, tt.allow, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("NewPolicy(%q, %q) = %v, want an error mentioning %q", tt.deny, tt.allow, err, tt.wantErr)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1", "127.0.0.1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"::127.0.0.1", "127.0.0.1"},
		{"::", "0.0.0.0"},
		{"::1", "0.0.0.1"},
		{"fe80::1%eth0", "fe80::1"},
		{"::ffff:10.0.0.1%eth0", "10.0.0.1"},
		{"2001:db8::1", "2001:db8::1"},
		{"64:ff9b::7f00:1", "64:ff9b::7f00:1"}, // NAT64 is denied as a prefix, not unwrapped
		{"::1:0:0:1", "::1:0:0:1"},             // not compat: the first 96 bits are not all zero
	}
	for _, tt := range tests {
		if got := canonical(netip.MustParseAddr(tt.in)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("canonical(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func ExamplePolicy() {
	pool, _ := NewPool(49152, 65535)
	port, _ := pool.Get(UDP) // 49152, as a relay allocation would take it
	own := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	p, _ := NewPolicy([]string{Recommended}, nil, own, pool.Held)
	for _, peer := range []string{"8.8.8.8:53", "10.0.0.1:80", "[::ffff:127.0.0.1]:22",
		fmt.Sprintf("127.0.0.1:%d", port), "127.0.0.1:50000"} {
		fmt.Println(peer, p.PermitAddr(UDP, netip.MustParseAddrPort(peer)))
	}
	// Output:
	// 8.8.8.8:53 true
	// 10.0.0.1:80 false
	// [::ffff:127.0.0.1]:22 false
	// 127.0.0.1:49152 true
	// 127.0.0.1:50000 false
}

// TestOwnAddressNeedsHeldPort: an own relay address is a permitted peer or source only on a
// port the pool has handed out, not on any port of its range (another program's ephemeral
// socket may sit there).
func TestOwnAddressNeedsHeldPort(t *testing.T) {
	pool := mustPool(t, 40000, 40009)
	own := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	p, err := NewPolicy([]string{Recommended}, nil, own, pool.Held)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort("127.0.0.1:40000")
	if p.PermitAddr(UDP, addr) || p.PermitSource(UDP, addr) {
		t.Fatalf("%v permitted while the pool has not handed the port out", addr)
	}
	if port, ok := pool.Get(UDP); !ok || port != 40000 {
		t.Fatalf("Get = %d, %v", port, ok)
	}
	if !p.PermitAddr(UDP, addr) || !p.PermitSource(UDP, addr) {
		t.Fatalf("%v refused while the pool holds the port", addr)
	}
	pool.Put(40000)
	if p.PermitAddr(UDP, addr) || p.PermitSource(UDP, addr) {
		t.Fatalf("%v permitted after the port went back to the pool", addr)
	}
}

// TestOwnAddressNeedsSameProto: a port Ferry holds for one protocol does not make the same
// port number of the other protocol a permitted peer or source. A TCP service listening on
// the port of a UDP relay (or of the SFU's ICE socket) is not Ferry's, and neither is a UDP
// service on the port of a TCP relay.
func TestOwnAddressNeedsSameProto(t *testing.T) {
	pool := mustPool(t, 40000, 40009)
	own := []netip.Addr{netip.MustParseAddr("203.0.113.10")}
	p, err := NewPolicy([]string{Recommended, "203.0.113.0/24"}, nil, own, pool.Held)
	if err != nil {
		t.Fatal(err)
	}
	udpPort, _ := pool.Get(UDP)
	tcpPort, _ := pool.Get(TCP)
	for _, tt := range []struct {
		proto Proto
		port  int
		want  bool
	}{
		{UDP, udpPort, true}, {TCP, udpPort, false},
		{TCP, tcpPort, true}, {UDP, tcpPort, false},
	} {
		addr := netip.AddrPortFrom(own[0], uint16(tt.port))
		if got := p.PermitAddr(tt.proto, addr); got != tt.want {
			t.Errorf("PermitAddr(%v, %v) = %v, want %v", tt.proto, addr, got, tt.want)
		}
		if got := p.PermitSource(tt.proto, addr); got != tt.want {
			t.Errorf("PermitSource(%v, %v) = %v, want %v", tt.proto, addr, got, tt.want)
		}
	}
}

func TestPolicySetPeers(t *testing.T) {
	p := mustPolicy(t, []string{Recommended}, nil, "127.0.0.1")
	type check struct {
		peer string
		want bool
	}
	steps := []struct {
		name        string
		deny, allow []string
		wantErr     string // substring; "" = the rules are swapped
		checks      []check
	}{
		{
			name: "swap", deny: []string{"8.8.8.0/24"}, allow: []string{"127.0.0.0/8"},
			checks: []check{
				{"10.0.0.1:80", true},   // denied by the old rules only
				{"8.8.8.8:53", false},   // denied by the new rules only
				{"127.0.0.2:22", true},  // allowed by the new rules
				{"127.0.0.1:22", true},  // own, and now in allow_peers
				{"203.0.113.9:1", true}, // in neither
			},
		},
		{
			name: "invalid deny entry", deny: []string{"10.0.0.0/8", "not-an-ip"}, wantErr: "relay: deny_peers",
			checks: []check{{"10.0.0.1:80", true}, {"8.8.8.8:53", false}}, // the rules of "swap"
		},
		{
			name: "invalid allow entry", deny: []string{"10.0.0.0/8"}, allow: []string{Recommended}, wantErr: "relay: allow_peers",
			checks: []check{{"10.0.0.1:80", true}, {"8.8.8.8:53", false}},
		},
		{
			name: "back to recommended", deny: []string{Recommended},
			checks: []check{
				{"10.0.0.1:80", false},
				{"8.8.8.8:53", true},
				{"127.0.0.2:22", false},
				{"127.0.0.1:22", false},   // own, not held
				{"127.0.0.1:40050", true}, // own, held: the own rule outlives any swap
				{"203.0.113.9:1", true},
			},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := p.SetPeers(st.deny, st.allow)
			switch {
			case st.wantErr == "" && err != nil:
				t.Fatalf("SetPeers(%q, %q): %v", st.deny, st.allow, err)
			case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
				t.Fatalf("SetPeers(%q, %q) = %v, want an error mentioning %q", st.deny, st.allow, err, st.wantErr)
			case st.wantErr != "":
				// The same mistake reads the same at start and at reload.
				_, newErr := NewPolicy(st.deny, st.allow, nil, heldRange(testMinPort, testMaxPort))
				if newErr == nil || newErr.Error() != err.Error() {
					t.Fatalf("SetPeers error %q, NewPolicy error %v", err, newErr)
				}
			}
			for _, c := range st.checks {
				ap := netip.MustParseAddrPort(c.peer)
				if got := p.PermitAddr(UDP, ap); got != c.want {
					t.Errorf("PermitAddr(udp, %s) = %v, want %v", ap, got, c.want)
				}
			}
		})
	}
}

// TestPolicySetPeersConcurrent runs checks while the rules are swapped back and forth (go
// test -race). Each check sees one rule set whole: an address both sets decide alike is
// decided so throughout.
func TestPolicySetPeersConcurrent(t *testing.T) {
	rules := [][2][]string{
		{{Recommended}, nil},
		{{"8.8.8.0/24", "10.0.0.0/8"}, {"10.1.0.0/16"}},
	}
	p := mustPolicy(t, rules[0][0], rules[0][1], "127.0.0.1")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = p.PermitAddr(UDP, netip.MustParseAddrPort("8.8.8.8:53")) // decided differently
				if !p.PermitAddr(UDP, netip.MustParseAddrPort("1.1.1.1:53")) || p.PermitIP(netip.MustParseAddr("10.0.0.1")) {
					t.Error("a check saw neither rule set")
					return
				}
				if p.PermitSource(UDP, netip.MustParseAddrPort("127.0.0.1:22")) {
					t.Error("PermitSource let an unheld own port through")
					return
				}
			}
		})
	}
	for i := range 1000 {
		r := rules[i%len(rules)]
		if err := p.SetPeers(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkPolicyPermitAddr(b *testing.B) {
	p := mustPolicy(b, []string{Recommended}, []string{"10.1.0.0/16"}, "127.0.0.1", "::1")
	peers := []struct {
		name string
		peer string
	}{
		{"public v4", "8.8.8.8:3478"},
		{"denied v4", "192.168.1.1:80"},
		{"allowed", "10.1.2.3:80"},
		{"own held port", "127.0.0.1:40050"},
		{"mapped own", "[::ffff:127.0.0.1]:22"},
		{"public v6", "[2001:4860:4860::8888]:443"},
	}
	for _, pp := range peers {
		b.Run(pp.name, func(b *testing.B) {
			ap := netip.MustParseAddrPort(pp.peer)
			b.ReportAllocs()
			for b.Loop() {
				p.PermitAddr(UDP, ap)
			}
		})
	}
}
