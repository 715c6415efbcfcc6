package sfu

import (
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// sendingSections counts the audio and video sections of an offer that send media: the
// tracks a publisher will deliver.
func sendingSections(offer string) (int, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return 0, fmt.Errorf("%w: %v", errBadOffer, err)
	}
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
	return n, nil
}

// fragment is a trickle ICE SDP fragment (RFC 8840): ICE credentials and candidates by
// media section.
type fragment struct {
	ufrag, pwd string
	candidates []webrtc.ICECandidateInit
}

// parseFragment reads an application/trickle-ice-sdpfrag body. Candidates before any
// a=mid line belong to the first section.
func parseFragment(body string) fragment {
	var f fragment
	var mid *string
	var index uint16
	sections := -1
	for _, line := range strings.Split(body, "\n") {
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

// restartOffer is the session's remote offer with new ICE credentials, for an ICE restart
// asked for by a PATCH (RFC 9725 section 4.4.2).
func restartOffer(offer, ufrag, pwd string) string {
	lines := strings.Split(offer, "\r\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			lines[i] = "a=ice-ufrag:" + ufrag
		case strings.HasPrefix(l, "a=ice-pwd:"):
			lines[i] = "a=ice-pwd:" + pwd
		}
	}
	return strings.Join(lines, "\r\n")
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
