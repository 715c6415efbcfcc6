package auth

import (
	"net/netip"
	"slices"
	"testing"
)

// TestURIs: every listener gives its URI, at its name when it has one, so that a turns:
// client can check the certificate; IPv4 and IPv6 listeners of one name give one URI.
func TestURIs(t *testing.T) {
	ep := func(proto, addr, name string) Endpoint {
		return Endpoint{Proto: proto, Addr: netip.MustParseAddrPort(addr), Name: name}
	}
	stun, turn := URIs([]Endpoint{
		ep("udp", "203.0.113.10:3478", ""),
		ep("tls", "[2001:db8::10]:5349", ""),
	})
	if want := []string{"stun:203.0.113.10:3478"}; !slices.Equal(stun, want) {
		t.Errorf("stun URIs by address %v, want %v", stun, want)
	}
	if want := []string{"turn:203.0.113.10:3478?transport=udp", "turns:[2001:db8::10]:5349?transport=tcp"}; !slices.Equal(turn, want) {
		t.Errorf("turn URIs by address %v, want %v", turn, want)
	}

	stun, turn = URIs([]Endpoint{
		ep("udp", "203.0.113.10:3478", "turn.example.com"),
		ep("udp", "[2001:db8::10]:3478", "turn.example.com"),
		ep("tcp", "203.0.113.10:3478", "turn.example.com"),
		ep("tls", "203.0.113.10:5349", "turn.example.com"),
		ep("dtls", "203.0.113.10:5349", "turn.example.com"),
	})
	if want := []string{"stun:turn.example.com:3478"}; !slices.Equal(stun, want) {
		t.Errorf("stun URIs by name %v, want %v", stun, want)
	}
	want := []string{"turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp",
		"turns:turn.example.com:5349?transport=tcp", "turns:turn.example.com:5349?transport=udp"}
	if !slices.Equal(turn, want) {
		t.Errorf("turn URIs by name %v, want %v", turn, want)
	}
}
