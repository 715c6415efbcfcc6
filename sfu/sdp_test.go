package sfu

import (
	"slices"
	"strings"
	"testing"

	"github.com/ferry-rtc/ferry/auth"
)

func TestSendingSections(t *testing.T) {
	offer := func(sections ...string) string {
		return "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" + strings.Join(sections, "")
	}
	section := func(media, dir string, port int) string {
		return "m=" + media + " " + map[bool]string{true: "9", false: "0"}[port != 0] + " UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=" + dir + "\r\n"
	}
	tests := []struct {
		name  string
		offer string
		want  int
	}{
		{"audio and video sent", offer(section("audio", "sendonly", 9), section("video", "sendrecv", 9)), 2},
		{"recvonly and inactive", offer(section("audio", "recvonly", 9), section("video", "inactive", 9)), 0},
		{"rejected section", offer(section("video", "sendonly", 0)), 0},
		{"data channel only", offer("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"), 0},
	}
	for _, tt := range tests {
		d, err := parseOffer(tt.offer)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := sendingSections(d); got != tt.want {
			t.Errorf("%s: sendingSections = %d; want %d", tt.name, got, tt.want)
		}
	}
	if _, err := parseOffer("not sdp"); err == nil {
		t.Error("garbage parsed as an offer")
	}
}

func TestParseFragment(t *testing.T) {
	body := "a=ice-ufrag:abcd\r\na=ice-pwd:secretsecret\r\n" +
		"m=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\n" +
		"m=video 9 RTP/AVP 0\r\na=mid:1\r\na=candidate:2 1 udp 16777215 198.51.100.1 6000 typ relay raddr 0.0.0.0 rport 0\r\n" +
		"a=end-of-candidates\r\n"
	f := parseFragment(body)
	if f.ufrag != "abcd" || f.pwd != "secretsecret" || len(f.candidates) != 2 {
		t.Fatalf("parseFragment = %+v", f)
	}
	c := f.candidates[1]
	if *c.SDPMid != "1" || *c.SDPMLineIndex != 1 || !strings.HasPrefix(c.Candidate, "candidate:2 ") {
		t.Errorf("second candidate %q mid %s index %d", c.Candidate, *c.SDPMid, *c.SDPMLineIndex)
	}
}

// TestParseFragmentLineEnds: LF and a lone CR end a line as CRLF does, so a candidate
// after either is a candidate of its own, which the gate then sees.
func TestParseFragmentLineEnds(t *testing.T) {
	for name, end := range map[string]string{"CRLF": "\r\n", "LF": "\n", "CR": "\r"} {
		body := strings.Join([]string{"a=ice-ufrag:abcd", "m=audio 9 RTP/AVP 0", "a=mid:0",
			"a=candidate:1 1 udp 2130706431 198.51.100.1 5000 typ host",
			"a=candidate:2 1 udp 2130706431 127.0.0.1 5000 typ host"}, end)
		f := parseFragment(body)
		if f.ufrag != "abcd" || len(f.candidates) != 2 || f.candidates[1].Candidate != "candidate:2 1 udp 2130706431 127.0.0.1 5000 typ host" {
			t.Errorf("%s: parseFragment = %+v", name, f)
		}
	}
}

func TestRestartOffer(t *testing.T) {
	d, err := parseOffer("v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\na=ice-ufrag:old\na=ice-pwd:oldpwd\n" +
		"m=audio 9 RTP/AVP 0\na=ice-ufrag:old\na=ice-pwd:oldpwd\n")
	if err != nil {
		t.Fatal(err)
	}
	setICECredentials(d, "new", "newpwd")
	b, err := d.Marshal()
	if got := string(b); err != nil || strings.Contains(got, "old") || strings.Count(got, "a=ice-ufrag:new\r\n") != 2 ||
		strings.Count(got, "a=ice-pwd:newpwd\r\n") != 2 {
		t.Errorf("setICECredentials: %q, %v", got, err)
	}
	for _, bad := range [][2]string{
		{"abc", "0123456789012345678901"},                      // ufrag too short
		{"abcd", "012345678901234567890"},                      // pwd too short
		{"abcd\ra=candidate:1", "0123456789012345678901"},      // a line in disguise
		{"abcd", "0123456789012345678901 a=candidate:1 1 udp"}, // not ice-chars
	} {
		if iceCredentials(bad[0], bad[1]) {
			t.Errorf("iceCredentials(%q, %q) = true", bad[0], bad[1])
		}
	}
	if !iceCredentials("aB+/", "0123456789abcdefABCD+/") {
		t.Error("iceCredentials refused valid credentials")
	}
	answer := "v=0\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=candidate:1 1 udp 1 192.0.2.1 9 typ host\r\na=rtpmap:0 PCMU/8000\r\n"
	frag := answerFragment(answer)
	if strings.Contains(frag, "rtpmap") || !strings.Contains(frag, "a=ice-ufrag:u\r\n") || !strings.Contains(frag, "a=candidate:1 ") {
		t.Errorf("answerFragment = %q", frag)
	}
}

func TestLinkHeaders(t *testing.T) {
	got := linkHeaders([]auth.ICEServer{
		{URLs: []string{"stun:192.0.2.1:3478"}},
		{URLs: []string{"turn:192.0.2.1:3478?transport=udp", "turns:192.0.2.1:5349?transport=tcp"}, Username: "1700000000:sfu-x", Credential: "c=="},
	})
	want := []string{
		`<stun:192.0.2.1:3478>; rel="ice-server"`,
		`<turn:192.0.2.1:3478?transport=udp>; rel="ice-server"; username="1700000000:sfu-x"; credential="c=="; credential-type="password"`,
		`<turns:192.0.2.1:5349?transport=tcp>; rel="ice-server"; username="1700000000:sfu-x"; credential="c=="; credential-type="password"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("linkHeaders =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCandidatesOutOfRejected: candidates pion put into a rejected first section move to
// the first accepted one; an answer without a rejected section, or whose accepted section
// has candidates, stays as it is.
func TestCandidatesOutOfRejected(t *testing.T) {
	const (
		head     = "v=0\r\ns=-\r\na=group:BUNDLE 1\r\n"
		cand     = "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
		rejected = "m=video 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n"
		audio    = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendonly\r\n"
		app      = "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"
	)
	for _, c := range []struct{ name, in, want string }{
		{"rejected first", head + rejected + cand + audio, head + rejected + audio + cand},
		{"rejected first, then two", head + rejected + cand + audio + app, head + rejected + audio + cand + app},
		{"nothing rejected", head + audio + cand, head + audio + cand},
		{"accepted has its own", head + rejected + cand + audio + cand, head + rejected + cand + audio + cand},
		{"all rejected", head + rejected + cand, head + rejected + cand},
	} {
		if got := candidatesOutOfRejected(c.in); got != c.want {
			t.Errorf("%s:\n%q\nwant\n%q", c.name, got, c.want)
		}
	}
}
