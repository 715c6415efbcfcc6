package test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
)

// TestWHEPPicksLiveStream: WHEP without a stream id watches the room's first live stream.
// A client that POSTs a WHIP offer only to read the TURN servers from its Link headers, and
// then publishes with a second POST (RFC 9725's relay-only pattern), leaves a first stream
// that never connects; viewers must get the second. A room whose only stream never
// connected answers 409 saying so, a stream id without tracks too, and a room without
// streams 404; the room's event feed never shows the stream that did not connect.
func TestWHEPPicksLiveStream(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	base := "http://" + s.sfuAddr
	pubToken := accessToken(t, "live", true, false, time.Hour)
	subToken := accessToken(t, "live", false, true, time.Hour)

	if _, status := offerOnly(t, newPublisher(t, peerOptions{}, "").pc, base+"/whip/deadonly",
		accessToken(t, "deadonly", true, false, time.Hour)); status != http.StatusCreated {
		t.Fatalf("WHIP to deadonly: %d", status)
	}
	dead, status := offerOnly(t, newPublisher(t, peerOptions{}, "").pc, base+"/whip/live", pubToken)
	if status != http.StatusCreated {
		t.Fatalf("first WHIP POST: %d", status)
	}
	_, live := publishVideo(t, s, "live", peerOptions{}, "")

	sub, got := newSubscriber(t, peerOptions{})
	subSess, status := signal(t, sub, base+"/whep/live", subToken)
	if status != http.StatusCreated {
		t.Fatalf("WHEP /whep/live: %d", status)
	}
	if subSess.stream != streamID(live) {
		t.Fatalf("WHEP /whep/live watches stream %s, want the live one %s (not %s, which never connected)",
			subSess.stream, streamID(live), streamID(dead))
	}
	waitConnected(t, sub)
	got.waitFor(t, "20 packets", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 20 })

	for _, c := range []struct {
		url, token string
		status     int
		body       string
	}{
		{base + "/whep/deadonly", accessToken(t, "deadonly", false, true, time.Hour), http.StatusConflict,
			"no live stream: its publisher has not connected"},
		{base + "/whep/live/" + streamID(dead), subToken, http.StatusConflict, "no live stream: its publisher has not connected"},
		{base + "/whep/empty", accessToken(t, "empty", false, true, time.Hour), http.StatusNotFound, "no such stream in the room"},
	} {
		pc, _ := newSubscriber(t, peerOptions{})
		status, body := offerStatus(t, pc, c.url, c.token)
		if status != c.status || !strings.Contains(body, c.body) {
			t.Errorf("POST %s: %d %q, want %d %q", c.url, status, body, c.status, c.body)
		}
	}

	// The room's event feed does not show the stream that never connected either: the
	// first stream it shows is the next live one.
	events := openFeed(t, s, "deadonly")
	_, next := publishVideo(t, s, "deadonly", peerOptions{}, "")
	if ev := events.next(t); ev.name != "stream" || !strings.Contains(ev.data, streamID(next)) {
		t.Errorf("first event of deadonly %+v, want the live stream %s", ev, streamID(next))
	}
}

// TestStreamNames: a publisher names its stream with WHIP's ?name=; the rooms API and the
// event feed show it, a stream without one shows the first 8 characters of its id, and a
// name too long or with control characters is refused with 400.
func TestStreamNames(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	base := "http://" + s.sfuAddr
	token := accessToken(t, "names", true, false, time.Hour)
	events := openFeed(t, s, "names")
	named := newPublisher(t, peerOptions{}, "")
	namedSess, status := signal(t, named.pc, base+"/whip/names?name="+url.QueryEscape("Ana's camera ☀"), token)
	if status != http.StatusCreated {
		t.Fatalf("WHIP ?name=: %d", status)
	}
	waitConnected(t, named.pc)
	named.run()
	if ev := events.next(t); ev.name != "stream" || !strings.Contains(ev.data, `"name":"Ana's camera ☀"`) {
		t.Fatalf("event %+v, want a stream event with the name", ev)
	}
	_, anonSess := publishVideo(t, s, "names", peerOptions{}, "")
	var room struct{ Streams []struct{ ID, Name string } }
	waitFor(t, "two streams in the rooms API", func() bool {
		if err := json.Unmarshal([]byte(roomInfoBody(t, s, "names")), &room); err != nil {
			t.Fatal(err)
		}
		return len(room.Streams) == 2
	})
	want := map[string]string{streamID(namedSess): "Ana's camera ☀", streamID(anonSess): streamID(anonSess)[:8]}
	for _, st := range room.Streams {
		if st.Name != want[st.ID] {
			t.Errorf("stream %s is named %q, want %q", st.ID, st.Name, want[st.ID])
		}
	}
	for _, bad := range []string{strings.Repeat("x", 65), "tab\there", "new\nline"} {
		pc := newPublisher(t, peerOptions{}, "").pc
		status, body := offerStatus(t, pc, base+"/whip/names?name="+url.QueryEscape(bad), token)
		if status != http.StatusBadRequest || !strings.Contains(body, "bad stream name") {
			t.Errorf("WHIP ?name=%q: %d %q, want 400 bad stream name", bad, status, body)
		}
	}
}

// TestWHIPRelayPattern: RFC 9725's relay-only client POSTs an offer only to learn the TURN
// server from the Link headers, then publishes with a second POST relayed with that
// credential. The first session never connects and ends at connect_timeout; the credential
// relays the second session of the same token, which takes it over: the publication goes
// on, viewers (WHEP without a stream id) still get it, and the credential is revoked when
// the second session ends.
func TestWHIPRelayPattern(t *testing.T) {
	s, port := sfuSetup(t)
	startFerry(t, sfuLimitKeys(s.toml(), "connect_timeout = \"1s\"\n"))
	base := "http://" + s.sfuAddr
	token := accessToken(t, "relay", true, false, time.Hour)
	probe, status := offerOnly(t, newPublisher(t, peerOptions{}, "").pc, base+"/whip/relay", token)
	if status != http.StatusCreated {
		t.Fatalf("first WHIP POST: %d", status)
	}
	servers := iceServersFromLinks(t, probe.links)
	pub := newPublisher(t, peerOptions{relayVia: servers}, "")
	pubSess, status := signal(t, pub.pc, base+"/whip/relay", token)
	if status != http.StatusCreated {
		t.Fatalf("second WHIP POST: %d", status)
	}
	waitConnected(t, pub.pc)
	pub.run()
	if typ := selectedLocalType(t, pub.pc); typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("the publisher's selected candidate is %s, want relay", typ)
	}
	sub, got := newSubscriber(t, peerOptions{})
	if sess, status := signal(t, sub, base+"/whep/relay", accessToken(t, "relay", false, true, time.Hour)); status != http.StatusCreated ||
		sess.stream != streamID(pubSess) {
		t.Fatalf("WHEP /whep/relay: %d, stream %s; want 201 and %s", status, sess.stream, streamID(pubSess))
	}
	waitConnected(t, sub)
	waitFor(t, "the first session's connect timeout", func() bool {
		return scrape(t, s.metricsAddr)["ferry_sfu_connect_timeouts_total"] >= 1
	})
	got.mu.Lock()
	n := len(got.counter)
	got.mu.Unlock()
	got.waitFor(t, "50 more packets after the first session ended", func(_ []string, counter []uint32, _ []uint16) bool {
		return len(counter) >= n+50
	})
	if state := pub.pc.ConnectionState(); state != webrtc.PeerConnectionStateConnected {
		t.Fatalf("the publisher is %s after the first session ended, want connected", state)
	}

	if resp := pubSess.do(t, http.MethodDelete, "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	var user, pass string
	for _, srv := range servers {
		if srv.Username != "" {
			user, pass = srv.Username, srv.Credential.(string)
		}
	}
	c := dialRaw(t, "udp", addrString("127.0.0.1", port), user, pass)
	mustCode(t, "Allocate with the credential after both sessions ended", c.request(stun.MethodAllocate, requestedTransportUDP),
		stun.CodeUnauthorized)
}

// offerStatus POSTs pc's offer to url and returns the answer's status and body.
func offerStatus(t *testing.T, pc *webrtc.PeerConnection, url, token string) (int, string) {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	resp := postOffer(t, url, token, offer.SDP)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// postOffer POSTs an SDP offer with a bearer token.
func postOffer(t *testing.T, url, token, offer string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(offer))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp
}

// offerOnly POSTs pc's offer to url and returns the session without connecting it: what a
// client does that reads the ICE servers from the Link headers before it connects.
func offerOnly(t *testing.T, pc *webrtc.PeerConnection, url, token string) (sfuSession, int) {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	resp := postOffer(t, url, token, offer.SDP)
	resp.Body.Close()
	base := url[:strings.Index(url[len("http://"):], "/")+len("http://")]
	return sfuSession{resource: base + resp.Header.Get("Location"), token: token,
		stream: resp.Header.Get("Ferry-Stream"), links: resp.Header.Values("Link")}, resp.StatusCode
}
