package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
)

const (
	selfTestRoom    = "ferry-self-test"
	selfTestTimeout = 10 * time.Second
)

// logSelfTest runs the self-test and logs its outcome.
func (s *Server) logSelfTest() {
	ctx, cancel := context.WithTimeout(context.Background(), selfTestTimeout)
	defer cancel()
	took, err := s.selfTest(ctx)
	if err != nil {
		s.log.Warn("self-test failed: clients relayed through this server may not reach the SFU; "+
			"check [relay] public_ip and the firewall", "err", err)
		return
	}
	s.log.Info("self-test passed: a client relayed through Ferry's TURN reached the SFU", "took", took.Round(time.Millisecond))
}

// selfTest publishes to the SFU from an in-process client that may only use Ferry's own
// TURN relay, over the first UDP listener: the path a browser behind a hostile NAT takes.
// A wrong public_ip shows here, at start, rather than at the first user's call (Galene
// does the same).
func (s *Server) selfTest(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	turnURL, ok := s.selfTestTURN()
	if !ok {
		return 0, errors.New("no UDP listener to relay through")
	}
	secrets := s.currentCreds().secrets()
	if len(secrets) == 0 {
		return 0, errors.New("no TURN REST secret to mint a credential with")
	}
	username, password := auth.RESTCredential(secrets[0], "self-test", time.Minute, time.Now())
	// Only relay candidates exist here: pion's wait for a better pair than a relayed one
	// (2 s by default) would only be added to the time reported.
	var se webrtc.SettingEngine
	se.SetRelayAcceptanceMinWait(0)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{
		ICEServers:         []webrtc.ICEServer{{URLs: []string{turnURL}, Username: username, Credential: password}},
		ICETransportPolicy: webrtc.ICETransportPolicyRelay,
	})
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "self-test")
	if err != nil {
		return 0, err
	}
	if _, err := pc.AddTrack(track); err != nil {
		return 0, err
	}
	connected := make(chan struct{})
	var once sync.Once // the state may come back to connected
	pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		if state == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	token, err := auth.NewToken(*s.sfu.tokenSecret.Load(), auth.Claims{Room: selfTestRoom, Publish: true,
		Expiry: time.Now().Add(time.Minute)})
	if err != nil {
		return 0, err
	}
	resource, err := s.selfTestPublish(ctx, pc, token)
	if err != nil {
		return 0, err
	}
	defer s.selfTestRequest(http.MethodDelete, resource, token, "") // the session's own token ends it
	select {
	case <-connected:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("no connection through %s within %s", turnURL, selfTestTimeout)
	}
}

// selfTestTURN is the turn: URL of the first UDP listener, dialled over loopback when it
// listens on a wildcard address: the self-test checks the relay's way to the SFU, not the
// way into the host.
func (s *Server) selfTestTURN() (string, bool) {
	cfg := s.cfg.Load()
	for i, l := range cfg.Listen {
		if l.Proto == "udp" {
			return "turn:" + dialable(s.turn.Addrs()[i].String()) + "?transport=udp", true
		}
	}
	return "", false
}

// selfTestPublish gathers the relay candidate and publishes over WHIP to the SFU's
// handler, in process, with token; it returns the session resource.
func (s *Server) selfTestPublish(ctx context.Context, pc *webrtc.PeerConnection, token string) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", errors.New("no relay candidate: the TURN allocation failed")
	}
	if !strings.Contains(pc.LocalDescription().SDP, "typ relay") {
		return "", errors.New("no relay candidate: the TURN allocation failed")
	}
	resp := s.selfTestRequest(http.MethodPost, "/whip/"+selfTestRoom, token, pc.LocalDescription().SDP)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("WHIP publish: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return "", err
	}
	return resp.Header.Get("Location"), nil
}

// selfTestRequest calls the SFU's HTTP handler directly.
func (s *Server) selfTestRequest(method, path, token, body string) *http.Response {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	s.sfu.handler.ServeHTTP(rec, req)
	return rec.Result()
}
