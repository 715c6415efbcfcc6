package sfu

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// addTracks gives the subscriber each of the stream's tracks that its offer can take, and
// notes in sub.notTaken why each other one is left out. A viewer without the stream's video
// codec (Firefox without H.264 watching an H.264 stream) still gets the audio: its video
// section, which no track goes into, is rejected in the answer with port 0 (JSEP, RFC 9429
// section 5.3.1: none of the offered formats is supported), since the subscriber's API
// knows only the stream's codecs. A track must never go into a section without its codec:
// pion would then fail the whole answer ("codec is not supported by remote"). errNoMedia
// (422) when the offer can take no track at all: offering again will not help.
func (sub *subscription) addTracks(tracks []*track, offer *sdp.SessionDescription, layer string) error {
	for _, t := range tracks {
		if why := whyNotTaken(sub.pc, offer, t); why != "" {
			sub.notTaken = append(sub.notTaken, why)
			continue
		}
		local, err := webrtc.NewTrackLocalStaticRTP(t.codec.RTPCodecCapability, t.id, sub.stream.id)
		if err != nil {
			return fmt.Errorf("sfu: track %s: %w", t.id, err)
		}
		sender, err := sub.pc.AddTrack(local)
		if err != nil {
			return fmt.Errorf("sfu: add track %s: %w", t.id, err)
		}
		if len(sub.downs) == 0 { // every track shares the one (bundled) transport
			sub.path.follow(sender.Transport().ICETransport())
		}
		d := newDownTrack(t, local, layer, sub.path, sub.bw)
		if encs := sender.GetParameters().Encodings; len(encs) > 0 {
			d.ssrc = uint32(encs[0].SSRC)
		}
		sub.downs = append(sub.downs, d)
		go sub.readRTCP(sender, d)
	}
	if len(sub.downs) == 0 {
		return fmt.Errorf("%w: %s", errNoMedia, strings.Join(sub.notTaken, "; "))
	}
	return nil
}

// whyNotTaken says why the offer cannot take track t, or "" when it can. pion's AddTrack
// puts a track into the first transceiver of its kind that has no sender and whose remote
// end receives; that one must have negotiated the track's codec. The subscriber's API
// knows only the stream's codecs, so any codec of the same MIME type it negotiated is the
// track's (pion has matched the format parameters, H.264's profile among them).
func whyNotTaken(pc *webrtc.PeerConnection, offer *sdp.SessionDescription, t *track) string {
	what := fmt.Sprintf("%s track %s (%s)", t.kind, t.id, mimeSubtype(t.codec.MimeType))
	for _, tr := range pc.GetTransceivers() {
		if tr.Kind() != t.kind || tr.Sender() != nil || tr.Receiver() == nil {
			continue
		}
		section := sectionByMid(offer, tr.Mid())
		if section == nil || !receives(section) {
			continue
		}
		for _, c := range tr.Receiver().GetParameters().Codecs {
			if strings.EqualFold(c.MimeType, t.codec.MimeType) {
				return ""
			}
		}
		return fmt.Sprintf("%s: the offer's %s section (mid %s) takes only %s", what, t.kind, tr.Mid(),
			strings.Join(offeredCodecs(section), ", "))
	}
	return fmt.Sprintf("%s: the offer has no %s section that receives", what, t.kind)
}

// sectionByMid is the media section of d with the mid, or nil.
func sectionByMid(d *sdp.SessionDescription, mid string) *sdp.MediaDescription {
	for _, m := range d.MediaDescriptions {
		if v, ok := m.Attribute(sdp.AttrKeyMID); ok && v == mid {
			return m
		}
	}
	return nil
}

// receives reports whether the offerer wants media in the section: not rejected, not
// sendonly, not inactive.
func receives(m *sdp.MediaDescription) bool {
	_, sendOnly := m.Attribute(sdp.AttrKeySendOnly)
	_, inactive := m.Attribute(sdp.AttrKeyInactive)
	return m.MediaName.Port.Value != 0 && !sendOnly && !inactive
}

// offeredCodecs are the codec names of a section's rtpmap lines, each once, without the
// ones that carry no media of their own (retransmission, redundancy, FEC, comfort noise,
// DTMF): what a 422 tells the viewer it offered.
func offeredCodecs(m *sdp.MediaDescription) []string {
	var out []string
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		_, enc, ok := strings.Cut(a.Value, " ")
		name, _, _ := strings.Cut(enc, "/")
		if !ok || name == "" || slices.Contains([]string{"rtx", "red", "ulpfec", "flexfec-03", "cn", "telephone-event"}, strings.ToLower(name)) {
			continue
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return []string{"no codec"}
	}
	return out
}

// mimeSubtype is "H264" of "video/H264".
func mimeSubtype(mime string) string {
	_, sub, ok := strings.Cut(mime, "/")
	if !ok {
		return mime
	}
	return sub
}
