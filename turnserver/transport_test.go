package turnserver

import (
	"net"
	"net/netip"
	"testing"
)

func TestTransportOf(t *testing.T) {
	listeners := []boundListener{
		{"udp", netip.MustParseAddrPort("0.0.0.0:3478")},
		{"tcp", netip.MustParseAddrPort("0.0.0.0:3478")},
		{"tls", netip.MustParseAddrPort("0.0.0.0:5349")},
		{"dtls", netip.MustParseAddrPort("0.0.0.0:5349")},
		{"tls", netip.MustParseAddrPort("192.0.2.1:443")},
		{"tcp", netip.MustParseAddrPort("[::]:443")},
	}
	udp := func(s string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tests := []struct {
		name           string
		client, server net.Addr
		want           string
	}{
		{"udp on the wildcard socket", udp("198.51.100.7:5000"), udp("0.0.0.0:3478"), "udp"},
		{"tcp accepted on a concrete address", tcp("198.51.100.7:5000"), tcp("203.0.113.5:3478"), "tcp"},
		{"tls on its own port", tcp("198.51.100.7:5000"), tcp("203.0.113.5:5349"), "tls"},
		{"dtls on its own port", udp("198.51.100.7:5000"), udp("0.0.0.0:5349"), "dtls"},
		{"exact address wins", tcp("198.51.100.7:5000"), tcp("192.0.2.1:443"), "tls"},
		{"IPv6 wildcard", tcp("[2001:db8::7]:5000"), tcp("[2001:db8::1]:443"), "tcp"},
		{"IPv4 on a port only IPv6 listens on", tcp("198.51.100.7:5000"), tcp("203.0.113.5:443"), "unknown"},
		{"IPv4-mapped server address", tcp("198.51.100.7:5000"), tcp("[::ffff:203.0.113.5]:3478"), "tcp"},
		{"no listener", udp("198.51.100.7:5000"), udp("0.0.0.0:9999"), "unknown"},
	}
	for _, tt := range tests {
		if got := transportOf(listeners, tt.client, tt.server); got != tt.want {
			t.Errorf("%s: transportOf = %q, want %q", tt.name, got, tt.want)
		}
	}
}
