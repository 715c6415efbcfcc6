package sfu

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// codecs are what the SFU forwards: Opus, VP8 and H.264 (constrained baseline and
// baseline, packetization mode 1, as browsers offer them). Forwarding never decodes, so a
// subscriber gets exactly the publisher's codec.
var codecs = []struct {
	params webrtc.RTPCodecParameters
	typ    webrtc.RTPCodecType
}{
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

// newAPI builds the pion API of one side. Publishers get transport-wide congestion control
// feedback (their browsers adapt their bitrate to it); subscribers negotiate REMB only, so
// their browsers estimate the bandwidth themselves and report it, which picks their
// simulcast layer. Both sides share the ICE UDP mux on the pool port.
func newAPI(settings webrtc.SettingEngine, publisher bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range codecs {
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
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return nil, fmt.Errorf("sfu: nack: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("sfu: rtcp reports: %w", err)
	}
	if publisher {
		if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
			return nil, fmt.Errorf("sfu: twcc: %w", err)
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(settings)), nil
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
