package main

import (
	"errors"
	"fmt"
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// The payload types Ferry's SFU registers for VP8 and Opus.
const (
	vp8PayloadType  = 96
	opusPayloadType = 111
)

// newAPI is the pion API of the benchmark's clients: VP8 and Opus only, ICE on 127.0.0.1
// only (no other interface, no mDNS), so that no packet leaves loopback. A publisher gets
// pion's default interceptors (NACK responder, reports, TWCC), as a browser would have;
// subscribers get none: no NACKs, so the loss measured is the loss there was, and the
// benchmark's CPU goes to receiving.
func newAPI(publisher bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range []struct {
		params webrtc.RTPCodecParameters
		kind   webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"}}}, PayloadType: vp8PayloadType},
			webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000,
			Channels: 2}, PayloadType: opusPayloadType}, webrtc.RTPCodecTypeAudio},
	} {
		if err := m.RegisterCodec(c.params, c.kind); err != nil {
			return nil, fmt.Errorf("register %s: %w", c.params.MimeType, err)
		}
	}
	ir := &interceptor.Registry{}
	if publisher {
		if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
			return nil, fmt.Errorf("interceptors: %w", err)
		}
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetRelayAcceptanceMinWait(0) // relay-only subscribers have nothing better to wait for
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// selectedType is the type of the local candidate of pc's selected pair.
func selectedType(pc *webrtc.PeerConnection) (webrtc.ICECandidateType, error) {
	for _, tr := range pc.GetTransceivers() {
		var dtls *webrtc.DTLSTransport
		switch {
		case tr.Receiver() != nil:
			dtls = tr.Receiver().Transport()
		case tr.Sender() != nil:
			dtls = tr.Sender().Transport()
		}
		if dtls == nil {
			continue
		}
		pair, err := dtls.ICETransport().GetSelectedCandidatePair()
		if err != nil {
			return 0, fmt.Errorf("selected candidate pair: %w", err)
		}
		if pair != nil {
			return pair.Local.Typ, nil
		}
	}
	return 0, errors.New("no selected candidate pair")
}
