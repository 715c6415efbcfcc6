package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
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

// startSelfTest runs the self-test on a goroutine of its own, so that the start does not
// wait for it; Close stops it and waits for it.
func (s *Server) startSelfTest() {
	ctx, cancel := context.WithTimeout(context.Background(), selfTestTimeout)
	done := make(chan struct{})
	s.stopSelfTest = func() { cancel(); <-done }
	go func() {
		defer close(done)
		defer cancel()
		s.logSelfTest(ctx)
	}()
}

// logSelfTest runs the self-test and logs its outcome.
func (s *Server) logSelfTest(ctx context.Context) {
	start := time.Now()
	reached, err := s.selfTest(ctx)
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		s.log.Debug("self-test stopped: the server is closing")
	case err != nil:
		attrs := []any{"err", err, "reached", strings.Join(reached, ", ")}
		if hint := s.publicIPHint(); hint != "" {
			attrs = append(attrs, "hint", hint)
		}
		s.log.Warn("self-test failed: clients may not reach Ferry at the addresses it hands out; "+
			"check [relay] public_ip and the firewall", attrs...)
	default:
		s.log.Info("self-test passed: Ferry answered at the addresses it hands out, and a client relayed "+
			"through its TURN reached the SFU", "reached", strings.Join(reached, ", "), "took", time.Since(start).Round(time.Millisecond))
	}
}

// publicIPHint explains a failure when the advertised IPv4 address is on no interface of
// this host: that is right behind 1:1 NAT, where the datagrams of the self-test come back
// only if the NAT loops the host's own packets back in (most clouds' do).
func (s *Server) publicIPHint() string {
	public := s.relays.v4.Public
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil && pfx.Addr().Unmap() == public {
			return ""
		}
	}
	return fmt.Sprintf("%s is on no interface of this host: right only behind 1:1 NAT, and this test reaches "+
		"it only through a NAT that loops the host's own datagrams back (check from outside, e.g. "+
		"turnutils_stunclient %s)", public, public)
}

// selfTest checks the ways clients reach Ferry, as a remote client would take them, and
// returns the addresses that answered. Datagrams from this host go to each udp listener's
// advertised address (a STUN Binding) and to the SFU's advertised ICE address (an ICE
// check), so a public_ip on no interface or unroutable, or a firewall in the way, shows at
// start (Galene and LiveKit check their external address the same way). An in-process
// client that may only use Ferry's own TURN relay publishes to the SFU over the first udp
// listener: the path a browser behind a hostile NAT takes; the relay reaches the SFU in
// process, so that part checks the allocation, the peer policy and the SFU, not the
// addresses.
func (s *Server) selfTest(ctx context.Context) ([]string, error) {
	targets, err := listenerTargets(s.cfg.Load(), s.relays.v4, s.relays.v6)
	if err != nil {
		return nil, err
	}
	pub, relayErr := s.selfTestPublish(ctx)
	if pub != nil {
		defer pub.close()
	}
	if relayErr == nil { // the SFU is probed with the ICE credentials of the session
		var target reachTarget
		if target, relayErr = iceTarget(s.sfu.sfu.ICEAddr(), pub.offer, pub.answer); relayErr == nil {
			targets = append(targets, target)
		}
	}
	reached, reachErr := reach(ctx, targets)
	if relayErr == nil {
		relayErr = pub.wait(ctx)
	}
	return reached, joinErrors(reachErr, relayErr)
}

// selfTestPub is the self-test's relay-only publisher and its SFU session.
type selfTestPub struct {
	s             *Server
	pc            *webrtc.PeerConnection
	connected     chan struct{}
	token         string
	resource      string // the session's URL path; "" until the SFU made one
	offer, answer string
	turnURL       string
}

// selfTestPublish publishes to the SFU from an in-process client that may only use Ferry's
// own TURN relay, over the first udp listener. On success the session is open and the
// connection on its way (wait); on an error pub, if not nil, holds what must be closed.
func (s *Server) selfTestPublish(ctx context.Context) (*selfTestPub, error) {
	turnURL, ok := s.selfTestTURN()
	if !ok {
		return nil, errors.New("no udp listener to relay through")
	}
	secrets := s.currentCreds().secrets()
	if len(secrets) == 0 {
		return nil, errors.New("no TURN REST secret to mint a credential with")
	}
	token, err := auth.NewToken(*s.sfu.tokenSecret.Load(), auth.Claims{Room: selfTestRoom, Publish: true,
		Expiry: time.Now().Add(time.Minute)})
	if err != nil {
		return nil, err
	}
	pc, err := selfTestPeer(turnURL, secrets[0])
	if err != nil {
		return nil, err
	}
	pub := &selfTestPub{s: s, pc: pc, connected: make(chan struct{}), token: token, turnURL: turnURL}
	var once sync.Once // the state may come back to connected
	pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		if state == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(pub.connected) })
		}
	})
	return pub, pub.publish(ctx)
}

// selfTestPeer is a relay-only PeerConnection with an audio track, whose TURN credential
// for turnURL is minted with secret.
func selfTestPeer(turnURL, secret string) (*webrtc.PeerConnection, error) {
	username, password := auth.RESTCredential(secret, "self-test", time.Minute, time.Now())
	// Only relay candidates exist here: pion's wait for a better pair than a relayed one
	// (2 s by default) would only be added to the time the self-test takes.
	var se webrtc.SettingEngine
	se.SetRelayAcceptanceMinWait(0)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{
		ICEServers:         []webrtc.ICEServer{{URLs: []string{turnURL}, Username: username, Credential: password}},
		ICETransportPolicy: webrtc.ICETransportPolicyRelay,
	})
	if err != nil {
		return nil, err
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", "self-test")
	if err == nil {
		_, err = pc.AddTrack(track)
	}
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	return pc, nil
}

// publish gathers the relay candidate and publishes over WHIP to the SFU's handler, in
// process.
func (p *selfTestPub) publish(ctx context.Context) error {
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(offer); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
	}
	p.offer = p.pc.LocalDescription().SDP
	if !strings.Contains(p.offer, "typ relay") {
		return fmt.Errorf("no relay candidate through %s: the TURN allocation failed", p.turnURL)
	}
	resp := p.s.selfTestRequest(http.MethodPost, "/whip/"+selfTestRoom, p.token, p.offer)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("WHIP publish: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	p.resource, p.answer = resp.Header.Get("Location"), string(body)
	return p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: p.answer})
}

// wait waits for the relayed connection to come up.
func (p *selfTestPub) wait(ctx context.Context) error {
	select {
	case <-p.connected:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no connection to the SFU through %s within %s", p.turnURL, selfTestTimeout)
	}
}

// close ends the session, with its own token, and the client.
func (p *selfTestPub) close() {
	if p.resource != "" {
		p.s.selfTestRequest(http.MethodDelete, p.resource, p.token, "")
	}
	_ = p.pc.Close()
}

// selfTestTURN is the turn: URL of the first UDP listener, dialled over loopback when it
// listens on a wildcard address: the relayed publish checks the relay's way to the SFU,
// the probes the ways into the host.
func (s *Server) selfTestTURN() (string, bool) {
	cfg := s.cfg.Load()
	for i, l := range cfg.Listen {
		if l.Proto == "udp" {
			return "turn:" + dialable(s.turn.Addrs()[i].String()) + "?transport=udp", true
		}
	}
	return "", false
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
