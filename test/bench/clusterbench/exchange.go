package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
)

// client follows redirects as a WHIP/WHEP client does (the token is in the 307's query).
var client = &http.Client{Timeout: 10 * time.Second}

func token(publish bool) string {
	t, err := auth.NewToken(tokenSecret, auth.Claims{Room: room, Publish: publish, Subscribe: !publish,
		Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		panic(err) // a fixed secret and claims: cannot fail
	}
	return t
}

// newPC is a pion PeerConnection on loopback only, with one VP8 transceiver sending
// (publish) or receiving.
func newPC(publish bool, tracks ...webrtc.TrackLocal) (*webrtc.PeerConnection, error) {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	if publish {
		if len(tracks) == 0 {
			track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "cam")
			if err != nil {
				_ = pc.Close()
				return nil, err
			}
			tracks = append(tracks, track)
		}
		for _, t := range tracks {
			if _, err := pc.AddTrack(t); err != nil {
				_ = pc.Close()
				return nil, err
			}
		}
		return pc, nil
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		_ = pc.Close()
		return nil, err
	}
	return pc, nil
}

// offer makes pc's offer with its candidates gathered.
func offer(pc *webrtc.PeerConnection) (string, error) {
	o, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		return "", err
	}
	<-gathered
	return pc.LocalDescription().SDP, nil
}

// exchange POSTs sdp to url and returns how long until the 201 (redirects followed), the
// answer and the session's resource URL.
func exchange(ctx context.Context, url, bearer, sdp string) (time.Duration, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(sdp))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+bearer)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", "", fmt.Errorf("POST %s: %w", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	resp.Body.Close()
	if err != nil {
		return 0, "", "", fmt.Errorf("POST %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return 0, "", "", fmt.Errorf("POST %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return 0, "", "", fmt.Errorf("POST %s: Location: %w", url, err)
	}
	return took, string(body), loc.String(), nil
}

// end DELETEs a session.
func end(ctx context.Context, resource, bearer string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, resource, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("DELETE session: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("DELETE session: %s", resp.Status)
	}
	return nil
}

// timedExchange is one WHIP (publish) or WHEP exchange with a fresh PeerConnection, sent to
// url: the offer is made before the clock starts; the session ends after.
func timedExchange(ctx context.Context, url string, publish bool) (time.Duration, error) {
	pc, err := newPC(publish)
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	sdp, err := offer(pc)
	if err != nil {
		return 0, err
	}
	bearer := token(publish)
	took, _, resource, err := exchange(ctx, url, bearer, sdp)
	if err != nil {
		return 0, err
	}
	return took, end(ctx, resource, bearer)
}

// publisher is the publisher that makes node a the room's owner: connected, and sending
// a small VP8 packet every 20 ms (the SFU knows a stream's tracks by their packets) until
// stop.
type publisher struct {
	pc   *webrtc.PeerConnection
	stop chan struct{}
	done sync.WaitGroup
}

func publishOn(ctx context.Context, a *node) (*publisher, error) {
	p := &publisher{stop: make(chan struct{})}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "cam")
	if err != nil {
		return nil, err
	}
	if p.pc, err = newPC(true, track); err != nil {
		return nil, err
	}
	connected := make(chan struct{})
	p.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	sdp, err := offer(p.pc)
	if err == nil {
		var answer string
		if _, answer, _, err = exchange(ctx, a.sfuURL+"/whip/"+room+"?name=cam", token(true), sdp); err == nil {
			err = p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
		}
	}
	if err == nil {
		select {
		case <-connected:
		case <-time.After(10 * time.Second):
			err = errors.New("not connected in 10 s")
		}
	}
	if err != nil {
		_ = p.pc.Close()
		return nil, fmt.Errorf("publisher: %w", err)
	}
	p.done.Go(func() { p.send(track) })
	return p, nil
}

func (p *publisher) send(track *webrtc.TrackLocalStaticRTP) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true}, Payload: []byte{0x10, 0, 0x9d, 0x01, 0x2a, 0, 0, 0, 0}}
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		pkt.SequenceNumber++
		pkt.Timestamp += 1800
		_ = track.WriteRTP(pkt)
	}
}

func (p *publisher) Close() {
	close(p.stop)
	p.done.Wait()
	_ = p.pc.Close()
}
