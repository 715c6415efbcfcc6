package test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/testkit"
)

// publishVideo starts a publisher of the given layers in room and returns it with its
// session, once connected.
func publishVideo(t *testing.T, s *setup, room string, opt peerOptions, rids ...string) (*publisher, sfuSession) {
	t.Helper()
	p := newPublisher(t, opt, rids...)
	sess, status := signal(t, p.pc, "http://"+s.sfuAddr+"/whip/"+room, accessToken(t, room, true, false, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHIP publish: %d", status)
	}
	waitConnected(t, p.pc)
	p.run()
	return p, sess
}

func streamID(sess sfuSession) string { return sess.stream }

// TestSFUPublishSubscribe publishes over WHIP and subscribes over WHEP: the packets arrive
// with the payloads sent; when the publisher leaves, the subscriber's track ends and the
// room's event feed says so.
func TestSFUPublishSubscribe(t *testing.T) {
	s, port := sfuSetup(t)
	startFerry(t, s.toml())
	events := openFeed(t, s, "demo")

	pub, pubSess := publishVideo(t, s, "demo", peerOptions{}, "")
	if ev := events.next(t); ev.name != "stream" || !strings.Contains(ev.data, streamID(pubSess)) {
		t.Fatalf("first event %+v, want a stream event for %s", ev, streamID(pubSess))
	}
	checkLinks(t, pubSess.links, port)

	sub, got := newSubscriber(t, peerOptions{})
	subSess, status := signal(t, sub, "http://"+s.sfuAddr+"/whep/demo/"+streamID(pubSess), accessToken(t, "demo", false, true, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHEP subscribe: %d", status)
	}
	waitConnected(t, sub)
	got.waitFor(t, "50 packets", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 50 })
	got.mu.Lock()
	for i := 1; i < len(got.counter); i++ {
		if got.counter[i] != got.counter[i-1]+1 || got.seqs[i] != got.seqs[i-1]+1 {
			t.Fatalf("packet %d: counter %d after %d, seq %d after %d: the payloads or their order changed",
				i, got.counter[i], got.counter[i-1], got.seqs[i], got.seqs[i-1])
		}
	}
	got.mu.Unlock()
	room := roomInfo(t, s, "demo")
	if len(room.Streams) != 1 || room.Streams[0].Subscribers != 1 || room.Streams[0].Tracks[0].Codec != "VP8" {
		t.Fatalf("rooms API: %+v; want one VP8 stream with one subscriber", room)
	}

	if resp := pubSess.do(t, http.MethodDelete, "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE publisher: %s", resp.Status)
	}
	select {
	case <-got.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber's track did not end when the publisher left")
	}
	if ev := events.next(t); ev.name != "stream-end" || !strings.Contains(ev.data, streamID(pubSess)) {
		t.Fatalf("event %+v, want stream-end for %s", ev, streamID(pubSess))
	}
	if resp := subSess.do(t, http.MethodDelete, "", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the subscriber's session outlived its publisher: DELETE gave %s", resp.Status)
	}
	_ = pub
}

// roomInfo reads the rooms API.
func roomInfo(t *testing.T, s *setup, room string) struct {
	Streams []struct {
		ID          string
		Subscribers int
		Tracks      []struct {
			Kind, Codec string
			Layers      []string
		}
	}
} {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.sfuAddr+"/api/rooms/"+room, nil)
	req.Header.Set("Authorization", "Bearer "+accessToken(t, room, false, true, time.Hour))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Streams []struct {
			ID          string
			Subscribers int
			Tracks      []struct {
				Kind, Codec string
				Layers      []string
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("rooms API: %v", err)
	}
	return out
}

// feed reads a room's server-sent events.
type feed struct{ events chan sse }

type sse struct{ name, data string }

func openFeed(t *testing.T, s *setup, room string) *feed {
	t.Helper()
	resp, err := http.Get("http://" + s.sfuAddr + "/api/rooms/" + room + "/events?token=" + accessToken(t, room, false, true, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event feed: %s", resp.Status)
	}
	t.Cleanup(func() { resp.Body.Close() })
	f := &feed{events: make(chan sse, 16)}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				f.events <- ev
				ev = sse{}
			}
		}
	}()
	return f
}

func (f *feed) next(t *testing.T) sse {
	t.Helper()
	select {
	case ev := <-f.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the room's feed")
		return sse{}
	}
}

// TestSFURelayOnly: a relay-only publisher and a relay-only subscriber reach the SFU
// through Ferry's own TURN, with the credentials of the Link headers; loopback is not an
// allowed peer, so only the rule for Ferry's own addresses lets them through.
func TestSFURelayOnly(t *testing.T) {
	s, port := sfuSetup(t)
	startFerry(t, s.toml())
	username, password := auth.RESTCredential(testSecret, "relayed", time.Hour, time.Now())
	relay := peerOptions{relayVia: []webrtc.ICEServer{{URLs: []string{"turn:" + addrString("127.0.0.1", port) + "?transport=udp"},
		Username: username, Credential: password}}}
	pub, pubSess := publishVideo(t, s, "relayed", relay, "")
	sub, got := newSubscriber(t, relay)
	if _, status := signal(t, sub, "http://"+s.sfuAddr+"/whep/relayed/"+streamID(pubSess),
		accessToken(t, "relayed", false, true, time.Hour)); status != http.StatusCreated {
		t.Fatalf("WHEP subscribe: %d", status)
	}
	waitConnected(t, sub)
	got.waitFor(t, "20 packets", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 20 })
	for name, pc := range map[string]*webrtc.PeerConnection{"publisher": pub.pc, "subscriber": sub} {
		if typ := selectedLocalType(t, pc); typ != webrtc.ICECandidateTypeRelay {
			t.Errorf("%s's selected candidate is %s, want relay", name, typ)
		}
	}
	m := scrape(t, s.metricsAddr)
	m.want(t, `ferry_allocations_active{transport="udp",family="ipv4"}`, 2)
	m.atLeast(t, `ferry_relay_packets_total{direction="client_to_peer"}`, 20)
	m.want(t, "ferry_sfu_publishers", 1)
	m.want(t, "ferry_sfu_subscribers", 1)
}

// TestSFUSimulcast publishes three layers; a subscriber pinned to h gets h, then switches
// to l: a keyframe is asked of the publisher on l, and the sequence numbers run on without
// a gap across the switch.
func TestSFUSimulcast(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	pub, pubSess := publishVideo(t, s, "sim", peerOptions{}, "h", "m", "l")
	waitFor(t, "three layers in the rooms API", func() bool {
		r := roomInfo(t, s, "sim")
		return len(r.Streams) == 1 && len(r.Streams[0].Tracks) == 1 && len(r.Streams[0].Tracks[0].Layers) == 3
	})

	sub, got := newSubscriber(t, peerOptions{})
	subSess, status := signal(t, sub, "http://"+s.sfuAddr+"/whep/sim/"+streamID(pubSess)+"?layer=h",
		accessToken(t, "sim", false, true, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHEP subscribe: %d", status)
	}
	waitConnected(t, sub)
	got.waitFor(t, "packets of layer h", func(layers []string, _ []uint32, _ []uint16) bool {
		return len(layers) >= 20 && layers[len(layers)-1] == "h"
	})
	pub.mu.Lock()
	plisOnL := pub.plis[pub.ssrcs["l"]]
	pub.mu.Unlock()

	resp := subSess.do(t, http.MethodPost, "/layer", "application/x-www-form-urlencoded", "layer=l")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("layer switch: %s", resp.Status)
	}
	got.waitFor(t, "packets of layer l", func(layers []string, _ []uint32, _ []uint16) bool {
		return len(layers) > 0 && layers[len(layers)-1] == "l"
	})
	pub.mu.Lock()
	if pub.plis[pub.ssrcs["l"]] <= plisOnL {
		t.Errorf("no keyframe request reached the publisher on layer l (SSRC %d): %v", pub.ssrcs["l"], pub.plis)
	}
	pub.mu.Unlock()
	got.mu.Lock()
	defer got.mu.Unlock()
	for i := 1; i < len(got.seqs); i++ {
		if got.seqs[i] != got.seqs[i-1]+1 {
			t.Fatalf("sequence gap at packet %d (%s→%s): %d after %d", i, got.layers[i-1], got.layers[i], got.seqs[i], got.seqs[i-1])
		}
		if got.layers[i] != got.layers[i-1] && (got.layers[i-1] != "h" || got.layers[i] != "l") {
			t.Fatalf("layer went %s→%s", got.layers[i-1], got.layers[i])
		}
	}
}

// lossyConn drops the first copy of every 10th RTP packet arriving at the client, so only
// a retransmission can fill the gap.
type lossyConn struct {
	net.PacketConn
	mu      sync.Mutex
	dropped map[uint16]bool
}

func (c *lossyConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || n < 12 || p[0]>>6 != 2 || p[1]&0x7f < 96 || p[1]&0x7f > 127 {
			return n, addr, err // not RTP (STUN, DTLS, RTCP)
		}
		seq := uint16(p[2])<<8 | uint16(p[3])
		c.mu.Lock()
		drop := seq%10 == 3 && !c.dropped[seq]
		if drop {
			c.dropped[seq] = true
		}
		c.mu.Unlock()
		if !drop {
			return n, addr, err
		}
	}
}

// TestSFUNACK: with every 10th packet lost on the way to the subscriber, NACKs bring
// them back from the SFU's packet cache: every counter arrives.
func TestSFUNACK(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	_, pubSess := publishVideo(t, s, "lossy", peerOptions{}, "")
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lossy := &lossyConn{PacketConn: udp, dropped: map[uint16]bool{}}
	opt := peerOptions{conn: lossy}
	sub, got := newSubscriber(t, opt)
	if _, status := signal(t, sub, "http://"+s.sfuAddr+"/whep/lossy/"+streamID(pubSess),
		accessToken(t, "lossy", false, true, time.Hour)); status != http.StatusCreated {
		t.Fatalf("WHEP subscribe: %d", status)
	}
	waitConnected(t, sub)
	got.waitFor(t, "200 packets with every gap filled", func(_ []string, counter []uint32, _ []uint16) bool {
		if len(counter) < 200 {
			return false
		}
		seen := map[uint32]bool{}
		lo, hi := counter[0], counter[0]
		for _, c := range counter {
			seen[c] = true
			lo, hi = min(lo, c), max(hi, c)
		}
		for c := lo; c < hi-50; c++ { // the last ones may still be on their way back
			if !seen[c] {
				return false
			}
		}
		return true
	})
	lossy.mu.Lock()
	dropped := len(lossy.dropped)
	lossy.mu.Unlock()
	if dropped < 10 {
		t.Fatalf("only %d packets were dropped: the shim did not see the RTP", dropped)
	}
	scrape(t, s.metricsAddr).atLeast(t, "ferry_sfu_nacks_total", 1)
}

// TestSFUTokens: missing, invalid and expired tokens get 401; a token of another room, or
// without the right, gets 403.
func TestSFUTokens(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	whip := "http://" + s.sfuAddr + "/whip/room1"
	cases := []struct {
		name  string
		token string
		want  int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"garbage", "not-a-jwt", http.StatusUnauthorized},
		{"expired", accessToken(t, "room1", true, true, -time.Minute), http.StatusUnauthorized},
		{"another room", accessToken(t, "room2", true, true, time.Hour), http.StatusForbidden},
		{"subscribe only", accessToken(t, "room1", false, true, time.Hour), http.StatusForbidden},
	}
	for _, tc := range cases {
		p := newPublisher(t, peerOptions{}, "")
		if _, status := signal(t, p.pc, whip, tc.token); status != tc.want {
			t.Errorf("%s: WHIP answered %d, want %d", tc.name, status, tc.want)
		}
	}
	// Subscribing needs the subscribe right.
	sub, _ := newSubscriber(t, peerOptions{})
	if _, status := signal(t, sub, "http://"+s.sfuAddr+"/whep/room1", accessToken(t, "room1", true, false, time.Hour)); status != http.StatusForbidden {
		t.Errorf("WHEP with a publish-only token: %d, want 403", status)
	}
	// CORS pre-flight.
	resp := httpDo(t, http.MethodOptions, whip, "", "", "")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("OPTIONS: %s %v", resp.Status, resp.Header)
	}
}

// checkLinks: the Link headers name the STUN and TURN listeners (RFC 9725 section 4.6),
// and the TURN credential they carry makes an allocation that reaches the SFU's address
// and nothing else.
func checkLinks(t *testing.T, links []string, port int) {
	t.Helper()
	servers := iceServersFromLinks(t, links)
	listener := addrString("127.0.0.1", port)
	want := []string{"stun:" + listener, "turn:" + listener + "?transport=udp", "turn:" + listener + "?transport=tcp"}
	if len(servers) != len(want) {
		t.Fatalf("Link headers %q; want %v", links, want)
	}
	for i, srv := range servers {
		if srv.URLs[0] != want[i] || (i > 0 && (srv.Username == "" || srv.Credential == nil || srv.Credential == "")) {
			t.Fatalf("Link header %d: %+v; want %s with a credential", i, srv, want[i])
		}
	}
	c := dialRaw(t, "udp", listener, servers[1].Username, servers[1].Credential.(string))
	c.allocate()
	mustSucceed(t, "CreatePermission for the SFU's address",
		c.request(stun.MethodCreatePermission, testkit.PeerAddr(netip.MustParseAddrPort("127.0.0.1:9"))))
	mustCode(t, "CreatePermission for another peer with an SFU credential",
		c.request(stun.MethodCreatePermission, testkit.PeerAddr(netip.MustParseAddrPort("198.51.100.7:5000"))), stun.CodeForbidden)
	mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
}

// TestSFUSelfTest: at start Ferry reaches its own SFU through its own TURN relay and logs
// it.
func TestSFUSelfTest(t *testing.T) {
	s, _ := sfuSetup(t)
	s.sfuSelfTest = true
	f := startFerry(t, s.toml())
	f.waitLog(t, `msg="self-test passed`, 1)
	waitFor(t, "the self-test's session to end", func() bool {
		return scrape(t, s.metricsAddr)["ferry_sfu_publishers"] == 0
	})
}

// TestSFUDrain: while draining, new WHIP/WHEP sessions get 503 and live ones go on; the
// process exits once the last one ends.
func TestSFUDrain(t *testing.T) {
	s, _ := sfuSetup(t)
	s.drainTimeout = "20s"
	f := startFerry(t, s.toml())
	_, pubSess := publishVideo(t, s, "drain", peerOptions{}, "")
	sub, got := newSubscriber(t, peerOptions{})
	subSess, status := signal(t, sub, "http://"+s.sfuAddr+"/whep/drain/"+streamID(pubSess), accessToken(t, "drain", false, true, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHEP subscribe: %d", status)
	}
	waitConnected(t, sub)
	f.signal(t, syscall.SIGTERM)
	f.waitLog(t, `msg="draining: no new allocations"`, 1)

	late := newPublisher(t, peerOptions{}, "")
	if _, status := signal(t, late.pc, "http://"+s.sfuAddr+"/whip/drain", accessToken(t, "drain", true, false, time.Hour)); status != http.StatusServiceUnavailable {
		t.Fatalf("WHIP while draining: %d, want 503", status)
	}
	got.mu.Lock()
	before := len(got.counter)
	got.mu.Unlock()
	got.waitFor(t, "packets during the drain", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) > before+20 })

	subSess.do(t, http.MethodDelete, "", "", "")
	pubSess.do(t, http.MethodDelete, "", "", "")
	if code := f.exit(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status %d after the last session ended, want 0", code)
	}
}

// TestSFUICERestart: a PATCH with new ICE credentials restarts ICE (RFC 9725 section
// 4.4.2); the answer fragment carries the SFU's new credentials and candidates, and media
// flows over the restarted connection. The subscriber here asks for the room's first
// publisher (/whep/{room}).
func TestSFUICERestart(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	publishVideo(t, s, "restart", peerOptions{}, "")
	sub, got := newSubscriber(t, peerOptions{})
	sess, status := signal(t, sub, "http://"+s.sfuAddr+"/whep/restart", accessToken(t, "restart", false, true, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHEP subscribe to the room's first publisher: %d", status)
	}
	waitConnected(t, sub)
	got.waitFor(t, "packets before the restart", func(_ []string, c []uint32, _ []uint16) bool { return len(c) >= 10 })

	offer, err := sub.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	var frag strings.Builder
	for _, l := range strings.Split(offer.SDP, "\r\n") {
		if strings.HasPrefix(l, "a=ice-ufrag:") || strings.HasPrefix(l, "a=ice-pwd:") || strings.HasPrefix(l, "m=") || strings.HasPrefix(l, "a=mid:") {
			frag.WriteString(l + "\r\n")
		}
	}
	req, _ := http.NewRequest(http.MethodPatch, sess.resource, strings.NewReader(frag.String()))
	req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
	req.Header.Set("Authorization", "Bearer "+sess.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "a=ice-ufrag:") {
		t.Fatalf("ICE restart PATCH: %s\n%s", resp.Status, body)
	}
	// The client's new remote description: the old answer with the fragment's credentials
	// and candidates, which must be new.
	previous := sub.RemoteDescription().SDP
	answer := restartAnswer(previous, string(body))
	if oldUfrag := regexp.MustCompile(`a=ice-ufrag:\S+`).FindString(previous); strings.Contains(answer, oldUfrag) {
		t.Fatalf("the SFU kept its ICE credentials (%s) across the restart", oldUfrag)
	}
	if err := sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("applying the restarted answer: %v", err)
	}
	got.mu.Lock()
	before := len(got.counter)
	got.mu.Unlock()
	got.waitFor(t, "packets after the restart", func(_ []string, c []uint32, _ []uint16) bool { return len(c) >= before+20 })
	if sub.ConnectionState() != webrtc.PeerConnectionStateConnected {
		t.Fatalf("state after the restart: %s", sub.ConnectionState())
	}
}

// restartAnswer puts the ICE credentials and candidates of an answer fragment into the
// previous answer.
func restartAnswer(previous, frag string) string {
	var ufrag, pwd string
	var candidates []string
	for _, l := range strings.Split(frag, "\r\n") {
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			ufrag = l
		case strings.HasPrefix(l, "a=ice-pwd:"):
			pwd = l
		case strings.HasPrefix(l, "a=candidate:"):
			candidates = append(candidates, l)
		}
	}
	var out []string
	for _, l := range strings.Split(previous, "\r\n") {
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			out = append(out, ufrag)
		case strings.HasPrefix(l, "a=ice-pwd:"):
			out = append(out, pwd)
		case strings.HasPrefix(l, "a=candidate:"), strings.HasPrefix(l, "a=end-of-candidates"):
		case strings.HasPrefix(l, "a=mid:"):
			out = append(out, l)
			out = append(out, candidates...)
		default:
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n")
}

// TestSFUTokenSecretReload: a reload that rotates sfu.token_secret refuses tokens of the
// old secret and accepts those of the new one.
func TestSFUTokenSecretReload(t *testing.T) {
	s, _ := sfuSetup(t)
	f := startFerry(t, s.toml())
	oldToken := accessToken(t, "r", false, true, time.Hour)
	roomStatus := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.sfuAddr+"/api/rooms/r", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := roomStatus(oldToken); code != http.StatusOK {
		t.Fatalf("rooms API with a valid token: %d", code)
	}
	s.tokenSecret = "rotated-secret-0123456789"
	writeConfig(t, filepath.Join(f.dir, "ferry.toml"), s.toml())
	if _, stderr, err := runFerry(t, "", "reload", "--admin", s.adminAddr); err != nil {
		t.Fatalf("ferry reload: %v\n%s", err, stderr)
	}
	if code := roomStatus(oldToken); code != http.StatusUnauthorized {
		t.Errorf("a token of the old secret after the rotation: %d, want 401", code)
	}
	newToken, err := auth.NewToken(s.tokenSecret, auth.Claims{Room: "r", Subscribe: true, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if code := roomStatus(newToken); code != http.StatusOK {
		t.Errorf("a token of the new secret: %d, want 200", code)
	}
}
