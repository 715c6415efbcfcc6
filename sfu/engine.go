package sfu

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// codec is one codec a side of the SFU negotiates, with its kind.
type codec struct {
	params webrtc.RTPCodecParameters
	typ    webrtc.RTPCodecType
}

// codecs are what publishers may send: Opus, VP8 and H.264 (constrained baseline and
// baseline, packetization mode 1, as browsers offer them). Forwarding never decodes, so a
// subscriber gets exactly the publisher's codec, and is offered nothing else
// (streamCodecs).
var codecs = []codec{
	{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType: 111}, webrtc.RTPCodecTypeAudio},
	{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, webrtc.RTPCodecTypeVideo},
	{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
		webrtc.RTPCodecTypeVideo},
	{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"}, PayloadType: 108},
		webrtc.RTPCodecTypeVideo},
}

// videoFeedback is what video receivers may ask of a sender: retransmissions, keyframes
// and congestion feedback.
var videoFeedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK}, {Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"}, {Type: webrtc.TypeRTCPFBGoogREMB},
}

// newAPI builds the pion API of one side with the codecs it may negotiate. Publishers get
// transport-wide congestion control feedback (their browsers adapt their bitrate to it).
// A subscriber's API is its own (sub, its bandwidth estimate, nil for publishers): it
// negotiates transport-cc, and its first interceptor, the innermost, numbers every packet
// the others send (NACK retransmissions too) and records it in sub, which estimates the
// subscriber's bandwidth from the feedback; a subscriber without transport-cc reports its
// bandwidth with REMB instead. Either picks its simulcast layer. Both sides share the ICE
// UDP mux on the pool port.
//
// pion's NACK interceptors run on the publisher's side only: its generator asks the
// publisher for lost packets. A subscriber's NACKs are answered by its downTracks from the
// packets its subscribers share (downTrack.history); the videoFeedback of its codecs
// negotiates them.
func newAPI(settings webrtc.SettingEngine, publisher bool, offered []codec, sub *bwe) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range offered {
		params := c.params
		if c.typ == webrtc.RTPCodecTypeVideo {
			params.RTCPFeedback = videoFeedback
		}
		if err := m.RegisterCodec(params, c.typ); err != nil {
			return nil, fmt.Errorf("sfu: register %s: %w", params.MimeType, err)
		}
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, fmt.Errorf("sfu: simulcast extensions: %w", err)
	}
	ir := &interceptor.Registry{}
	if !publisher {
		for _, typ := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, typ)
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, typ); err != nil {
				return nil, fmt.Errorf("sfu: transport-cc extension: %w", err)
			}
		}
		ir.Add(twccFactory{b: sub})
		if err := addSenderReports(ir); err != nil {
			return nil, err
		}
	} else if err := configurePublisher(m, ir); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(settings)), nil
}

// configurePublisher gives a publisher's connection NACKs toward it, receiver reports and
// transport-cc feedback.
func configurePublisher(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return fmt.Errorf("sfu: nack: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return fmt.Errorf("sfu: rtcp reports: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return fmt.Errorf("sfu: twcc: %w", err)
	}
	return nil
}

// addSenderReports gives a subscriber's connection sender reports, which its player needs to
// put audio and video in step (lip sync). Not pion's receiver-report interceptor: a
// subscriber sends the SFU no media to report on, and its RTCP reader would decode every
// RTCP packet the subscriber sends (allocating) only to look for sender reports, which a
// subscriber does not send; the SFU's own reader decodes each packet once (readRTCP).
func addSenderReports(ir *interceptor.Registry) error {
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		return fmt.Errorf("sfu: sender reports: %w", err)
	}
	ir.Add(sr)
	return nil
}

// streamCodecs are the codecs of a stream's tracks, each once, as its publisher negotiated
// them (payload type and format parameters): all that a subscriber of the stream can be
// sent, so all that its answer may list.
func streamCodecs(tracks []*track) []codec {
	var out []codec
	for _, t := range tracks {
		c := codec{params: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: t.codec.MimeType, ClockRate: t.codec.ClockRate, Channels: t.codec.Channels,
			SDPFmtpLine: t.codec.SDPFmtpLine}, PayloadType: t.codec.PayloadType}, typ: t.kind}
		if !slices.ContainsFunc(out, func(o codec) bool { return sameCodec(o.params, c.params) }) {
			out = append(out, c)
		}
	}
	return out
}

// sameCodec reports whether a and b are one codec: MIME type (in any case) and format
// parameters.
func sameCodec(a, b webrtc.RTPCodecParameters) bool {
	return strings.EqualFold(a.MimeType, b.MimeType) && a.SDPFmtpLine == b.SDPFmtpLine
}

// settingEngine puts every PeerConnection's ICE on mux and advertises the right address:
// the bind address when it is specific (loopback included, for tests), and the public one
// instead of it behind 1:1 NAT, as a host candidate (a srflx mapping with a mux gives the
// wrong port, pion/webrtc#1791).
func settingEngine(mux net.PacketConn, bind, public netip.Addr, lf logging.LoggerFactory) (webrtc.SettingEngine, error) {
	var s webrtc.SettingEngine
	s.LoggerFactory = lf
	s.SetICEUDPMux(webrtc.NewICEUDPMux(lf.NewLogger("sfu-mux"), mux))
	// The ICE socket is the IPv4 relay address's: one family, one port.
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled) // never advertise .local names
	s.SetIncludeLoopbackCandidate(bind.IsLoopback())
	s.SetIPFilter(func(ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return false
		}
		a = a.Unmap()
		if bind.IsUnspecified() { // every IPv4 address of the host, each advertised as public
			return a.Is4() && !a.IsLoopback() && !a.IsLinkLocalUnicast()
		}
		return a == bind
	})
	if public.IsValid() && public != bind {
		rule := webrtc.ICEAddressRewriteRule{External: []string{public.String()},
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace}
		if err := s.SetICEAddressRewriteRules(rule); err != nil {
			return s, fmt.Errorf("sfu: advertise %s: %w", public, err)
		}
	}
	return s, nil
}
