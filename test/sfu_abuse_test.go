package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestSFUSessionCapability: a session resource is a capability of its creator alone.
// What a viewer sees of a publisher (the stream id, in the rooms API, the room's feed and
// the msid of its WHEP answer) names no session; DELETE, PATCH (an ICE restart) and a
// layer pin on it, or on the resources with another token, get 404 and change nothing,
// and no token at all gets 401. The creator's own token still works once it has expired.
func TestSFUSessionCapability(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	const room = "capability"
	events := openFeed(t, s, room)
	pub := newPublisher(t, peerOptions{}, "")
	pubSess, status := signal(t, pub.pc, "http://"+s.sfuAddr+"/whip/"+room, accessToken(t, room, true, false, 2*time.Second))
	if status != http.StatusCreated {
		t.Fatalf("WHIP publish: %d", status)
	}
	waitConnected(t, pub.pc)
	pub.run()
	sub, got := newSubscriber(t, peerOptions{})
	subSess, status := signal(t, sub, "http://"+s.sfuAddr+"/whep/"+room+"/"+pubSess.stream, accessToken(t, room, false, true, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHEP subscribe: %d", status)
	}
	waitConnected(t, sub)
	got.waitFor(t, "packets", func(_ []string, c []uint32, _ []uint16) bool { return len(c) >= 10 })

	// What the room shows: the stream id, never a session's resource.
	shown := []string{events.next(t).data, roomInfoBody(t, s, room), sub.RemoteDescription().SDP}
	if !strings.Contains(sub.RemoteDescription().SDP, "a=msid:"+pubSess.stream+" ") {
		t.Fatalf("the WHEP answer has no msid of stream %s", pubSess.stream)
	}
	for _, sess := range []sfuSession{pubSess, subSess} {
		secret := sess.resource[strings.LastIndex(sess.resource, "/")+1:]
		if secret == pubSess.stream || len(secret) < 32 {
			t.Fatalf("resource %q is the stream id or shorter than 128 bits", secret)
		}
		for _, text := range append(shown, sess.links...) {
			if strings.Contains(text, secret) {
				t.Fatalf("a session's resource is shown to others:\n%s", text)
			}
		}
	}

	attacker := accessToken(t, room, true, true, 3*time.Hour)
	byStreamID := sfuSession{resource: "http://" + s.sfuAddr + "/session/" + pubSess.stream}
	for _, target := range []struct {
		name string
		sess sfuSession
	}{
		{"the stream id with a viewer's token", withToken(byStreamID, attacker)},
		{"the stream id with the same token as the subscriber", withToken(byStreamID, subSess.token)},
		{"the stream id with the publisher's own token", withToken(byStreamID, pubSess.token)},
		{"the publisher's resource with another token", withToken(pubSess, attacker)},
		{"the publisher's resource with its subscriber's token", withToken(pubSess, subSess.token)},
		{"the subscriber's resource with the publisher's token", withToken(subSess, pubSess.token)},
	} {
		tryHijack(t, target.name, target.sess, http.StatusNotFound)
	}
	tryHijack(t, "the publisher's resource without a token", withToken(pubSess, ""), http.StatusUnauthorized)

	got.mu.Lock()
	before := len(got.counter)
	got.mu.Unlock()
	got.waitFor(t, "packets after the attempts", func(_ []string, c []uint32, _ []uint16) bool { return len(c) >= before+20 })
	if r := roomInfo(t, s, room); len(r.Streams) != 1 || r.Streams[0].Subscribers != 1 {
		t.Fatalf("after the attempts the room is %+v; want the stream with its subscriber", r)
	}

	if resp := subSess.do(t, http.MethodPost, "/layer", "application/x-www-form-urlencoded", "layer="); resp.StatusCode != http.StatusNoContent {
		t.Errorf("layer with the subscriber's own token: %s", resp.Status)
	}
	// A publication outlives its token: the expired token still ends it.
	waitFor(t, "the publisher's token to expire", func() bool {
		return httpDo(t, http.MethodGet, "http://"+s.sfuAddr+"/api/rooms/"+room, pubSess.token, "", "").StatusCode == http.StatusUnauthorized
	})
	if resp := pubSess.do(t, http.MethodDelete, "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE with the publisher's own expired token: %s", resp.Status)
	}
	if ev := events.next(t); ev.name != "stream-end" {
		t.Fatalf("event %+v after the publisher's DELETE, want stream-end", ev)
	}
}

func withToken(sess sfuSession, token string) sfuSession {
	sess.token = token
	return sess
}

// tryHijack DELETEs, PATCHes (an ICE restart) and pins a layer on sess and wants status
// for each; WWW-Authenticate comes with a 401.
func tryHijack(t *testing.T, name string, sess sfuSession, status int) {
	t.Helper()
	restart := "a=ice-ufrag:evil\r\na=ice-pwd:evilevilevilevilevilevil\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
	for _, req := range []struct{ method, suffix, contentType, body string }{
		{http.MethodPatch, "", "application/trickle-ice-sdpfrag", restart},
		{http.MethodPost, "/layer", "application/x-www-form-urlencoded", "layer=l"},
		{http.MethodDelete, "", "", ""},
	} {
		resp := sess.do(t, req.method, req.suffix, req.contentType, req.body)
		if resp.StatusCode != status {
			t.Fatalf("%s %s: %s, want %d", name, req.method+req.suffix, resp.Status, status)
		}
		if status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Fatalf("%s: 401 without a Bearer challenge", name)
		}
	}
}

// roomInfoBody is the rooms API's answer for room, as text.
func roomInfoBody(t *testing.T, s *setup, room string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.sfuAddr+"/api/rooms/"+room, nil)
	req.Header.Set("Authorization", "Bearer "+accessToken(t, room, false, true, time.Hour))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// stunCounter counts the STUN requests arriving at a UDP socket of the test.
type stunCounter struct {
	conn net.PacketConn
	n    atomic.Int64
}

// listenSTUN opens a socket on ip that counts the STUN messages it receives, until the
// test ends.
func listenSTUN(t *testing.T, ip string, wg *sync.WaitGroup) *stunCounter {
	t.Helper()
	conn, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	c := &stunCounter{conn: conn}
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if stun.IsMessage(buf[:n]) {
				c.n.Add(1)
			}
		}
	})
	return c
}

func (c *stunCounter) port() int { return c.conn.LocalAddr().(*net.UDPAddr).Port }

// TestSFUCandidateFlood does what an attacker did: one WHIP offer with LF line endings
// only and 900 candidates toward loopback addresses, some of them sockets of the test,
// then a PATCH whose lines end in a lone CR with more. The one candidate the policy allows
// (allow_peers) gets the SFU's checks; no denied socket gets any.
func TestSFUCandidateFlood(t *testing.T) {
	s, _ := sfuSetup(t)
	const allowedIP = "127.0.8.1"
	s.allowPeers = []string{allowedIP + "/32"}
	startFerry(t, s.toml())
	var wg sync.WaitGroup
	allowed := listenSTUN(t, allowedIP, &wg)
	var denied []*stunCounter
	for i := range 16 {
		denied = append(denied, listenSTUN(t, fmt.Sprintf("127.0.9.%d", i+1), &wg))
	}
	t.Cleanup(func() {
		for _, c := range append(denied, allowed) {
			c.conn.Close()
		}
		wg.Wait()
	})

	p := newPublisher(t, peerOptions{}, "")
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	var flood strings.Builder
	for i := range 900 {
		addr, port := fmt.Sprintf("127.0.%d.%d", 10+i/250, 1+i%250), 9
		if i%57 == 0 { // 16 of them: one for each socket
			c := denied[i/57]
			addr, port = c.conn.LocalAddr().(*net.UDPAddr).IP.String(), c.port()
		}
		fmt.Fprintf(&flood, "a=candidate:%d 1 udp 2130706431 %s %d typ host\n", i, addr, port)
	}
	fmt.Fprintf(&flood, "a=candidate:allowed 1 udp 1 %s %d typ host\n", allowedIP, allowed.port())
	lf := strings.ReplaceAll(offer.SDP, "\r\n", "\n")
	at := strings.Index(lf, "a=mid:0\n") + len("a=mid:0\n")
	lf = lf[:at] + flood.String() + lf[at:]
	t.Logf("offer: %d bytes, LF only, %d candidates", len(lf), strings.Count(lf, "a=candidate:"))

	token := accessToken(t, "flood", true, false, time.Hour)
	resp := httpDo(t, http.MethodPost, "http://"+s.sfuAddr+"/whip/flood", token, "application/sdp", lf)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP with the LF offer: %s", resp.Status)
	}
	sess := sfuSession{resource: "http://" + s.sfuAddr + resp.Header.Get("Location"), token: token}
	var frag strings.Builder
	frag.WriteString("m=video 9 UDP/TLS/RTP/SAVPF 96\ra=mid:0\r")
	for i, c := range denied {
		fmt.Fprintf(&frag, "a=candidate:t%d 1 udp 2130706431 127.0.9.%d %d typ host\r", i, i+1, c.port())
	}
	if resp := sess.do(t, http.MethodPatch, "", "application/trickle-ice-sdpfrag", frag.String()); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH with lone CRs: %s", resp.Status)
	}

	// The SFU checks every candidate each round: three rounds at the allowed one mean the
	// denied ones had their turns too.
	waitFor(t, "three checks at the allowed candidate", func() bool { return allowed.n.Load() >= 3 })
	for i, c := range denied {
		if n := c.n.Load(); n != 0 {
			t.Errorf("denied socket %d (127.0.9.%d:%d) got %d STUN checks", i, i+1, c.port(), n)
		}
	}
	sess.do(t, http.MethodDelete, "", "", "")
}

// sfuLimitKeys puts SFU limits into the [sfu] table of config.
func sfuLimitKeys(config, keys string) string {
	return strings.Replace(config, "[sfu]\n", "[sfu]\n"+keys, 1)
}

// TestSFUSessionLimits: WHIP posts of one token get 429 with Retry-After past
// sessions_per_token, those of another token from the same address past sessions_per_ip;
// sessions that never connect end after connect_timeout and give their slots back, and
// the goroutines they took come back too.
func TestSFUSessionLimits(t *testing.T) {
	s, _ := sfuSetup(t)
	f := startFerry(t, sfuLimitKeys(s.toml(), "sessions_per_token = 3\nsessions_per_ip = 5\nconnect_timeout = \"1s\"\n"))
	baseline := goroutines(t, s)

	p := newPublisher(t, peerOptions{}, "")
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	whip := "http://" + s.sfuAddr + "/whip/limits"
	post := func(token string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, whip, strings.NewReader(offer.SDP))
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	tokenA := accessToken(t, "limits", true, false, time.Hour)
	tokenB := accessToken(t, "limits", true, false, 2*time.Hour)

	var created, refused atomic.Int32
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			resp, err := post(tokenA)
			if err != nil {
				t.Errorf("WHIP: %v", err)
				return
			}
			switch resp.StatusCode {
			case http.StatusCreated:
				created.Add(1)
			case http.StatusTooManyRequests:
				if after, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || after <= 0 {
					t.Errorf("429 with Retry-After %q", resp.Header.Get("Retry-After"))
				}
				refused.Add(1)
			default:
				t.Errorf("WHIP: %s", resp.Status)
			}
		})
	}
	wg.Wait()
	if created.Load() != 3 || refused.Load() != 9 {
		t.Fatalf("12 posts with one token: %d created, %d refused; want 3 and 9", created.Load(), refused.Load())
	}
	for i, want := range []int{http.StatusCreated, http.StatusCreated, http.StatusTooManyRequests} {
		if resp, err := post(tokenB); err != nil || resp.StatusCode != want {
			t.Fatalf("post %d of another token from the same address: %v %v, want %d", i, resp, err, want)
		}
	}
	m := scrape(t, s.metricsAddr)
	m.want(t, `ferry_sfu_refused_total{reason="sessions_per_token"}`, 9)
	m.want(t, `ferry_sfu_refused_total{reason="sessions_per_ip"}`, 1)
	m.want(t, "ferry_sfu_publishers", 5)

	waitFor(t, "the unconnected sessions to time out", func() bool {
		m := scrape(t, s.metricsAddr)
		return m["ferry_sfu_publishers"] == 0 && m["ferry_sfu_connect_timeouts_total"] == 5
	})
	resp, err := post(tokenA)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP after the timeouts: %v %v; the slots did not come back", resp, err)
	}
	sess := sfuSession{resource: "http://" + s.sfuAddr + resp.Header.Get("Location"), token: tokenA}
	if resp := sess.do(t, http.MethodDelete, "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	waitFor(t, fmt.Sprintf("ferry's goroutines back near %d", baseline), func() bool { return goroutines(t, s) <= baseline+goroutineSlack })
	t.Logf("goroutines: %d at the start, %d at the end; %s", baseline, goroutines(t, s), f.stats(t))
}

// goroutines is ferry's goroutine count, with the client's idle keep-alive connections
// (each a goroutine in ferry) closed first.
func goroutines(t *testing.T, s *setup) int {
	t.Helper()
	http.DefaultClient.CloseIdleConnections()
	return int(scrape(t, s.metricsAddr)["go_goroutines"])
}

// openFeedStatus opens room's event feed with token and returns the status, the
// Retry-After and a function that closes the feed.
func openFeedStatus(t *testing.T, s *setup, room, token string) (int, string, func()) {
	t.Helper()
	resp, err := http.Get("http://" + s.sfuAddr + "/api/rooms/" + room + "/events?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeFeed := func() { once.Do(func() { resp.Body.Close() }) }
	t.Cleanup(closeFeed)
	return resp.StatusCode, resp.Header.Get("Retry-After"), closeFeed
}

// TestSFUFeedLimits: room event feeds past feeds_per_token, or past feeds_per_ip with
// another token, get 429 with Retry-After; a closed feed gives its slot back, and ferry's
// descriptors come back.
func TestSFUFeedLimits(t *testing.T) {
	s, _ := sfuSetup(t)
	f := startFerry(t, sfuLimitKeys(s.toml(), "feeds_per_token = 2\nfeeds_per_ip = 3\n"))
	http.DefaultClient.CloseIdleConnections()
	fds := f.stats(t).fds
	tokenA := accessToken(t, "feeds", false, true, time.Hour)
	tokenB := accessToken(t, "feeds", false, true, 2*time.Hour)
	var closers []func()
	for i, c := range []struct {
		token string
		want  int
	}{
		{tokenA, http.StatusOK}, {tokenA, http.StatusOK}, {tokenA, http.StatusTooManyRequests},
		{tokenB, http.StatusOK}, {tokenB, http.StatusTooManyRequests},
	} {
		status, retry, closeFeed := openFeedStatus(t, s, "feeds", c.token)
		if status != c.want || (status == http.StatusTooManyRequests && retry == "") {
			t.Fatalf("feed %d: %d (Retry-After %q), want %d", i, status, retry, c.want)
		}
		closers = append(closers, closeFeed)
	}
	m := scrape(t, s.metricsAddr)
	m.want(t, `ferry_sfu_refused_total{reason="feeds_per_token"}`, 1)
	m.want(t, `ferry_sfu_refused_total{reason="feeds_per_ip"}`, 1)

	closers[0]()
	waitFor(t, "the closed feed's slot", func() bool {
		status, _, closeFeed := openFeedStatus(t, s, "feeds", tokenA)
		closeFeed()
		return status == http.StatusOK
	})
	for _, closeFeed := range closers {
		closeFeed()
	}
	waitFor(t, fmt.Sprintf("ferry's descriptors back near %d", fds), func() bool {
		http.DefaultClient.CloseIdleConnections()
		return f.stats(t).fds <= fds+fdSlack
	})
}
