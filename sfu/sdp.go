package sfu

import (
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// sendingSections counts the audio and video sections of an offer that send media: the
// tracks a publisher will deliver.
func sendingSections(d *sdp.SessionDescription) int {
	n := 0
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "audio" && m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		_, recvOnly := m.Attribute("recvonly")
		_, inactive := m.Attribute("inactive")
		if !recvOnly && !inactive {
			n++
		}
	}
	return n
}

// fragment is a trickle ICE SDP fragment (RFC 8840): ICE credentials and candidates by
// media section.
type fragment struct {
	ufrag, pwd string
	candidates []webrtc.ICECandidateInit
}

// parseFragment reads an application/trickle-ice-sdpfrag body. Candidates before any
// a=mid line belong to the first section. CRLF, LF and a lone CR all end a line, so that
// no line hides a candidate behind a line ending the split did not know.
func parseFragment(body string) fragment {
	var f fragment
	var mid *string
	var index uint16
	sections := -1
	lineEnd := func(r rune) bool { return r == '\r' || r == '\n' }
	for _, line := range strings.FieldsFunc(body, lineEnd) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "m="):
			sections++
			index, mid = uint16(sections), nil
		case strings.HasPrefix(line, "a=mid:"):
			m := strings.TrimPrefix(line, "a=mid:")
			mid = &m
		case strings.HasPrefix(line, "a=candidate:"):
			i := index
			f.candidates = append(f.candidates, webrtc.ICECandidateInit{
				Candidate: strings.TrimPrefix(line, "a="), SDPMid: mid, SDPMLineIndex: &i})
		}
	}
	return f
}

// iceCredentials reports whether ufrag and pwd are ICE credentials (RFC 8839 section 5.4):
// 4 and 22 to 256 characters of letters, digits, "+" and "/". A PATCH's credentials go into
// the offer of an ICE restart, where anything else could smuggle in attributes.
func iceCredentials(ufrag, pwd string) bool {
	valid := func(s string, minLen int) bool {
		if len(s) < minLen || len(s) > 256 {
			return false
		}
		for _, c := range s {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
				return false
			}
		}
		return true
	}
	return valid(ufrag, 4) && valid(pwd, 22)
}

// setICECredentials gives every level of offer d that has ICE credentials new ones, for an
// ICE restart asked for by a PATCH (RFC 9725 section 4.4.2).
func setICECredentials(d *sdp.SessionDescription, ufrag, pwd string) {
	set := func(attrs []sdp.Attribute) {
		for i := range attrs {
			switch attrs[i].Key {
			case "ice-ufrag":
				attrs[i].Value = ufrag
			case "ice-pwd":
				attrs[i].Value = pwd
			}
		}
	}
	set(d.Attributes)
	for _, m := range d.MediaDescriptions {
		set(m.Attributes)
	}
}

// answerFragment is the sdpfrag answer to an ICE restart: the new local credentials and
// candidates of an answer.
func answerFragment(answer string) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, l := range strings.Split(answer, "\r\n") {
		if strings.HasPrefix(l, "a=ice-ufrag:") || strings.HasPrefix(l, "a=ice-pwd:") ||
			strings.HasPrefix(l, "a=candidate:") || strings.HasPrefix(l, "m=") || strings.HasPrefix(l, "a=mid:") {
			if (strings.HasPrefix(l, "a=ice-") && seen[l]) || l == "" {
				continue
			}
			seen[l] = true
			b.WriteString(l + "\r\n")
		}
	}
	return b.String()
}

// candidatesOutOfRejected moves the candidates of an answer's rejected (port 0) media
// sections into its first accepted one. pion writes the candidates into the first section
// even when it rejects that one (a viewer's video section without the stream's codec):
// browsers take no candidate from a rejected section, and a relay-only viewer that knows
// no candidate of the SFU has no TURN permission toward it and never connects.
func candidatesOutOfRejected(answer string) string {
	lines := strings.SplitAfter(answer, "\r\n")
	var moved, kept []string
	rejected, target := false, -1 // target: index in kept of the first accepted m= line
	for _, l := range lines {
		if strings.HasPrefix(l, "m=") {
			fields := strings.Fields(l)
			rejected = len(fields) > 1 && fields[1] == "0"
			if !rejected && target < 0 {
				target = len(kept)
			}
		}
		if rejected && (strings.HasPrefix(l, "a=candidate:") || strings.HasPrefix(l, "a=end-of-candidates")) {
			moved = append(moved, l)
			continue
		}
		kept = append(kept, l)
	}
	if len(moved) == 0 || target < 0 {
		return answer
	}
	end := target + 1 // the accepted section ends at the next m= line
	for end < len(kept) && !strings.HasPrefix(kept[end], "m=") {
		if strings.HasPrefix(kept[end], "a=candidate:") {
			return answer // it has candidates of its own
		}
		end++
	}
	out := append(append(slices.Clone(kept[:end]), moved...), kept[end:]...)
	return strings.Join(out, "")
}
