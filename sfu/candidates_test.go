package sfu

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestCandidateGate(t *testing.T) {
	private := netip.MustParsePrefix("10.0.0.0/8")
	g := candidateGate{permit: func(ap netip.AddrPort) bool { return !private.Contains(ap.Addr()) }}
	tests := []struct {
		candidate string
		want      bool
	}{
		{"candidate:1 1 udp 2130706431 198.51.100.7 5000 typ host", true},
		{"a=candidate:1 1 udp 2130706431 198.51.100.7 5000 typ host", true},
		{"candidate:2 1 udp 16777215 203.0.113.9 6000 typ relay raddr 0.0.0.0 rport 0", true},
		{"candidate:3 1 udp 2130706431 10.1.2.3 5000 typ host", false},                 // denied by the policy
		{"candidate:4 1 udp 2130706431 2001:db8::1 5000 typ host", false},              // the SFU is IPv4
		{"candidate:5 1 tcp 1518280447 198.51.100.7 9 typ host tcptype active", false}, // UDP only
		{"candidate:6 1 udp 2130706431 3f1c.local 5000 typ host", false},               // mDNS names
		{"candidate:garbage", false},
	}
	for _, tt := range tests {
		if got := g.allow(tt.candidate); got != tt.want {
			t.Errorf("allow(%q) = %v, want %v", tt.candidate, got, tt.want)
		}
	}
}

func TestFilterOffer(t *testing.T) {
	g := candidateGate{}
	var b strings.Builder
	b.WriteString("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
	for i := range maxRemoteCandidates + 5 {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp 2130706431 198.51.100.%d 5000 typ host\r\n", i, i+1)
	}
	b.WriteString("a=candidate:x 1 udp 2130706431 fe80::1 5000 typ host\r\na=end-of-candidates\r\n")
	out, kept := g.filterOffer(b.String())
	if kept != maxRemoteCandidates || strings.Count(out, "a=candidate:") != maxRemoteCandidates {
		t.Fatalf("kept %d candidates (%d lines), want %d", kept, strings.Count(out, "a=candidate:"), maxRemoteCandidates)
	}
	if !strings.HasPrefix(out, "v=0\r\nm=audio") || !strings.HasSuffix(out, "a=end-of-candidates\r\n") {
		t.Fatalf("other lines changed:\n%s", out)
	}
}
