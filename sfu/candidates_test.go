package sfu

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestCandidateGate(t *testing.T) {
	g := testGate()
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

// testOffer is an offer of two media sections whose candidates sit at session level and
// in each section: allowed ones (198.51.100.x) and denied ones (10.x), then end-of-candidates.
func testOffer(allowed, denied int) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
	b.WriteString("a=candidate:s 1 udp 2130706431 10.9.9.9 5000 typ host\r\n")
	for section := range 2 {
		fmt.Fprintf(&b, "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:%d\r\n", section)
		for i := range allowed {
			fmt.Fprintf(&b, "a=candidate:%d 1 udp 2130706431 198.51.100.%d 5000 typ host\r\n", i, i+1)
			if i < denied {
				fmt.Fprintf(&b, "a=candidate:d%d 1 udp 2130706431 10.0.0.%d 5000 typ host\r\n", i, i+1)
			}
		}
		b.WriteString("a=end-of-candidates\r\n")
	}
	return b.String()
}

func testGate() candidateGate {
	private := netip.MustParsePrefix("10.0.0.0/8")
	return candidateGate{permit: func(ap netip.AddrPort) bool { return !private.Contains(ap.Addr()) }}
}

// TestFilterOffer: whatever the line endings, denied candidates go at every level, at most
// maxRemoteCandidates are kept across the whole offer (the first section's first), and the
// rest of the offer stays.
func TestFilterOffer(t *testing.T) {
	crlf := testOffer(20, 20)
	for name, offer := range map[string]string{"CRLF": crlf, "LF": strings.ReplaceAll(crlf, "\r\n", "\n")} {
		d, err := parseOffer(offer)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, kept, err := testGate().apply(d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if kept != maxRemoteCandidates || strings.Count(out, "a=candidate:") != maxRemoteCandidates {
			t.Errorf("%s: kept %d candidates (%d lines), want %d", name, kept, strings.Count(out, "a=candidate:"), maxRemoteCandidates)
		}
		if strings.Contains(out, " 10.") {
			t.Errorf("%s: a denied candidate is left:\n%s", name, out)
		}
		if !strings.Contains(out, "a=mid:0\r\na=candidate:0 1 udp 2130706431 198.51.100.1 5000 typ host\r\n") ||
			strings.Count(out, "a=end-of-candidates\r\n") != 2 || strings.Count(out, "m=audio 9 ") != 2 {
			t.Errorf("%s: other lines changed:\n%s", name, out)
		}
	}
}

// TestFilterOfferSpellings: a candidate key spelled another way does not pass unchecked,
// and a CR that does not end a line makes the offer bad.
func TestFilterOfferSpellings(t *testing.T) {
	offer := "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\n" +
		"a=Candidate:1 1 udp 2130706431 198.51.100.1 5000 typ host\n" +
		"a= candidate:2 1 udp 2130706431 198.51.100.2 5000 typ host\n" +
		"a=candidate:3 1 udp 2130706431 198.51.100.3 5000 typ host\n"
	d, err := parseOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	out, kept, err := testGate().apply(d)
	if err != nil || kept != 1 || strings.Count(strings.ToLower(out), "candidate:") != 1 {
		t.Errorf("apply = %d kept, %v:\n%s\nwant only candidate 3", kept, err, out)
	}
	loneCR := strings.Replace(offer, "typ host\na=candidate:3", "typ host\ra=candidate:3", 1)
	if _, err := parseOffer(loneCR); !errors.Is(err, errBadOffer) {
		t.Errorf("an offer with a lone CR: %v, want errBadOffer", err)
	}
}
