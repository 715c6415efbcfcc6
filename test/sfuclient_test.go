package test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
)

const sfuTokenSecret = "sfu-test-secret-0123456789"

// sfuSetup is a Ferry with the SFU on 127.0.0.1; peers on 127.0.0.1 are not allowed, so
// relayed clients reach the SFU only by the rule that allows Ferry's own addresses.
func sfuSetup(t *testing.T) (*setup, int) {
	t.Helper()
	s, port := newSetup(t, 20)
	s.sfuAddr = addrString("127.0.0.1", freePort(t, "127.0.0.1"))
	s.tokenSecret = sfuTokenSecret
	return s, port
}

func accessToken(t *testing.T, room string, publish, subscribe bool, ttl time.Duration) string {
	t.Helper()
	token, err := auth.NewToken(sfuTokenSecret, auth.Claims{Room: room, Publish: publish, Subscribe: subscribe,
		Expiry: time.Now().Add(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// peerOptions shape a test client.
type peerOptions struct {
	// relayVia makes the client relay-only (iceTransportPolicy relay) through these ICE
	// servers. pion cannot apply a relay policy after its offer exists, as browsers do with
	// the Link headers of the 201, so test clients get theirs up front, the way an
	// application server hands them out; TestSFUPublishSubscribe checks the Link
	// credentials on their own.
	relayVia []webrtc.ICEServer
	conn     net.PacketConn // the client's UDP socket (a lossy one); nil: a plain one
}

// newPeer is a pion client with the default codecs and interceptors (NACK, reports, TWCC)
// and loopback candidates.
func newPeer(t *testing.T, opt peerOptions) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if opt.conn != nil {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, opt.conn))
	}
	se.SetRelayAcceptanceMinWait(0) // relay-only clients have nothing better to wait for
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	cfg := webrtc.Configuration{}
	if opt.relayVia != nil {
		cfg.ICEServers, cfg.ICETransportPolicy = opt.relayVia, webrtc.ICETransportPolicyRelay
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// sfuSession is a WHIP or WHEP session as the client sees it.
type sfuSession struct {
	resource string // absolute URL of the session resource: secret
	token    string // the access token that made it, which its resource wants too
	stream   string // the stream it publishes or watches (Ferry-Stream)
	links    []string
}

// do sends a request to the session's resource, with suffix appended, and its token.
func (sess sfuSession) do(t *testing.T, method, suffix, contentType, body string) *http.Response {
	t.Helper()
	return httpDo(t, method, sess.resource+suffix, sess.token, contentType, body)
}

// signal runs the RFC 9725 exchange for pc against url: POST the offer, gather, set the
// answer, and trickle the local candidates with PATCH.
func signal(t *testing.T, pc *webrtc.PeerConnection, url, token string) (sfuSession, int) {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(offer.SDP))
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return sfuSession{}, resp.StatusCode
	}
	// The Location is the session's on the server that answered: after a cluster's 307, not
	// the one first asked.
	resource, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("Location %q: %v", resp.Header.Get("Location"), err)
	}
	sess := sfuSession{resource: resource.String(), token: token,
		stream: resp.Header.Get("Ferry-Stream"), links: resp.Header.Values("Link")}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatalf("answer: %v\n%s", err, body)
	}
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		t.Fatal("ICE gathering did not complete")
	}
	trickle(t, sess, pc.LocalDescription().SDP)
	return sess, resp.StatusCode
}

// trickle PATCHes the candidates of a local description as one sdpfrag.
func trickle(t *testing.T, sess sfuSession, local string) {
	t.Helper()
	var frag strings.Builder
	for _, l := range strings.Split(local, "\r\n") {
		if strings.HasPrefix(l, "a=ice-ufrag:") || strings.HasPrefix(l, "a=ice-pwd:") || strings.HasPrefix(l, "m=") ||
			strings.HasPrefix(l, "a=mid:") || strings.HasPrefix(l, "a=candidate:") {
			frag.WriteString(l + "\r\n")
		}
	}
	if resp := sess.do(t, http.MethodPatch, "", "application/trickle-ice-sdpfrag", frag.String()); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH (trickle): %s", resp.Status)
	}
}

var linkRE = regexp.MustCompile(`^<([^>]+)>; rel="ice-server"(?:; username="([^"]*)"; credential="([^"]*)"; credential-type="password")?$`)

// iceServersFromLinks reads RFC 9725 Link headers.
func iceServersFromLinks(t *testing.T, links []string) []webrtc.ICEServer {
	t.Helper()
	var out []webrtc.ICEServer
	for _, l := range links {
		m := linkRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("Link header %q is not an RFC 9725 ice-server link", l)
		}
		out = append(out, webrtc.ICEServer{URLs: []string{m[1]}, Username: m[2], Credential: m[3]})
	}
	return out
}

func waitConnected(t *testing.T, pc *webrtc.PeerConnection) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		select {
		case <-ctx.Done():
			t.Fatalf("not connected: %s", pc.ConnectionState())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// selectedLocalType is the type of the local candidate of the selected pair.
func selectedLocalType(t *testing.T, pc *webrtc.PeerConnection) webrtc.ICECandidateType {
	t.Helper()
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() == nil && tr.Receiver() == nil {
			continue
		}
		var dtls *webrtc.DTLSTransport
		if tr.Sender() != nil {
			dtls = tr.Sender().Transport()
		} else {
			dtls = tr.Receiver().Transport()
		}
		if dtls == nil {
			continue
		}
		pair, err := dtls.ICETransport().GetSelectedCandidatePair()
		if err == nil && pair != nil {
			return pair.Local.Typ
		}
	}
	t.Fatal("no selected candidate pair")
	return 0
}

// publisher sends synthetic VP8 on one or more simulcast layers: each packet carries the
// layer and a counter, a keyframe comes when a PLI asks for one (and every 30 packets).
type publisher struct {
	pc     *webrtc.PeerConnection
	layers []*webrtc.TrackLocalStaticRTP
	mu     sync.Mutex
	plis   map[uint32]int // PLIs received by media SSRC
	ssrcs  map[string]uint32
	want   map[string]bool // a keyframe is due on this layer
	stop   chan struct{}
}

func newPublisher(t *testing.T, opt peerOptions, rids ...string) *publisher {
	t.Helper()
	p := &publisher{pc: newPeer(t, opt), plis: map[uint32]int{}, ssrcs: map[string]uint32{}, want: map[string]bool{},
		stop: make(chan struct{})}
	var sender *webrtc.RTPSender
	for i, rid := range rids {
		var opts []func(*webrtc.TrackLocalStaticRTP)
		if rid != "" {
			opts = append(opts, webrtc.WithRTPStreamID(rid))
		}
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "pub", opts...)
		if err != nil {
			t.Fatal(err)
		}
		p.layers = append(p.layers, track)
		if i == 0 {
			if sender, err = p.pc.AddTrack(track); err != nil {
				t.Fatal(err)
			}
		} else if err := sender.AddEncoding(track); err != nil {
			t.Fatal(err)
		}
		p.want[rid] = true
	}
	for _, rid := range rids {
		go p.readRTCP(sender, rid)
	}
	t.Cleanup(func() { close(p.stop) })
	return p
}

// readRTCP notes the keyframe requests for one layer: pion reads each simulcast
// encoding's RTCP separately.
func (p *publisher) readRTCP(sender *webrtc.RTPSender, rid string) {
	read := sender.ReadRTCP
	if rid != "" {
		read = func() ([]rtcp.Packet, interceptor.Attributes, error) { return sender.ReadSimulcastRTCP(rid) }
	}
	for {
		pkts, _, err := read()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			if pli, ok := pkt.(*rtcp.PictureLossIndication); ok {
				p.mu.Lock()
				p.plis[pli.MediaSSRC]++
				for rid, ssrc := range p.ssrcs {
					if ssrc == pli.MediaSSRC {
						p.want[rid] = true
					}
				}
				p.mu.Unlock()
			}
		}
	}
}

// simulcastExtensions are the IDs the sender's negotiation gave the mid and rid header
// extensions; 0 for one it did not negotiate.
func simulcastExtensions(params webrtc.RTPSendParameters) (midID, ridID uint8) {
	for _, ext := range params.HeaderExtensions {
		switch ext.URI {
		case sdp.SDESMidURI:
			midID = uint8(ext.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(ext.ID)
		}
	}
	return midID, ridID
}

// run sends a packet per layer every 5 ms until the test ends. pion does not add the mid
// and rid header extensions a simulcast receiver needs: a browser does, so do it here.
func (p *publisher) run() {
	sender := p.pc.GetSenders()[0]
	params := sender.GetParameters()
	midID, ridID := simulcastExtensions(params)
	mid := p.pc.GetTransceivers()[0].Mid()
	p.mu.Lock()
	for _, track := range p.layers {
		for _, enc := range params.Encodings {
			if enc.RID == track.RID() {
				p.ssrcs[track.RID()] = uint32(enc.SSRC)
			}
		}
	}
	p.mu.Unlock()
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for n := uint32(0); ; n++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			for _, track := range p.layers {
				p.mu.Lock()
				key := p.want[track.RID()] || n%30 == 0
				p.want[track.RID()] = false
				p.mu.Unlock()
				pkt := &rtp.Packet{
					Header:  rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: n * 450, Marker: true},
					Payload: vp8Payload(key, track.RID(), n),
				}
				if track.RID() != "" && midID != 0 && ridID != 0 {
					_ = pkt.SetExtension(midID, []byte(mid))
					_ = pkt.SetExtension(ridID, []byte(track.RID()))
				}
				_ = track.WriteRTP(pkt)
			}
		}
	}()
}

// vp8Payload is a VP8 payload descriptor (start of partition 0), one frame byte whose P
// bit says key or inter frame, then the layer and the counter.
func vp8Payload(key bool, rid string, n uint32) []byte {
	frame := byte(0x01)
	if key {
		frame = 0x00
	}
	b := []byte{0x10, frame}
	b = append(b, fmt.Sprintf("%-2s", rid)...)
	return binary.BigEndian.AppendUint32(b, n)
}

// received is what a subscriber got: layer and counter of each packet, and sequence numbers.
type received struct {
	mu      sync.Mutex
	layers  []string
	counter []uint32
	seqs    []uint16
	ended   chan struct{}
}

// receive collects the video packets arriving at pc.
func receive(pc *webrtc.PeerConnection) *received {
	r := &received{ended: make(chan struct{})}
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if remote.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		defer close(r.ended)
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			if len(pkt.Payload) < 8 {
				continue
			}
			r.mu.Lock()
			r.layers = append(r.layers, strings.TrimSpace(string(pkt.Payload[2:4])))
			r.counter = append(r.counter, binary.BigEndian.Uint32(pkt.Payload[4:8]))
			r.seqs = append(r.seqs, pkt.SequenceNumber)
			r.mu.Unlock()
		}
	})
	return r
}

// waitFor waits until cond holds over what arrived.
func (r *received) waitFor(t *testing.T, what string, cond func(layers []string, counter []uint32, seqs []uint16) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond(r.layers, r.counter, r.seqs)
		n := len(r.counter)
		r.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%d packets arrived)", what, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// subscriber is a recvonly video client.
func newSubscriber(t *testing.T, opt peerOptions) (*webrtc.PeerConnection, *received) {
	t.Helper()
	pc := newPeer(t, opt)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	return pc, receive(pc)
}

// httpDo sends a request, with a bearer token unless token is "", and closes the answer's
// body.
func httpDo(t *testing.T, method, url, token, contentType, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp
}
