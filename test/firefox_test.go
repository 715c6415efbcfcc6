package test

// Headless Firefox ESR against Ferry, in the clients world (clients_test.go): test pages of
// test/clients (firefox.html, firefox.js) run their role on load and post what happens to
// the test's page server; no driver is needed. Each Firefox has a fresh profile with fake
// media, no permission prompt, getUserMedia on the plain-http test page, no OpenH264
// download (so no H.264, as a Firefox without the plugin), and the test CA trusted (certutil
// from libnss3-tools) for turns:.

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// firefoxPrefs make a profile fit for the tests: fake devices without prompts, media
// allowed on the http test page, nothing fetched at start that a world without internet
// would wait for.
const firefoxPrefs = `
user_pref("media.navigator.streams.fake", true);
user_pref("media.navigator.permission.disabled", true);
user_pref("media.devices.insecure.enabled", true);
user_pref("media.getusermedia.insecure.enabled", true);
user_pref("media.autoplay.default", 0);
user_pref("media.gmp-gmpopenh264.enabled", false);
user_pref("media.gmp-manager.updateEnabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("app.update.enabled", false);
user_pref("app.normandy.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
`

// firefoxCheck skips (or fails in CI) without Firefox ESR and certutil.
func firefoxCheck(t *testing.T) {
	t.Helper()
	needProgram("firefox-esr", "firefox-esr")(t)
	needProgram("certutil", "libnss3-tools")(t)
}

// firefox opens the test page with params in a headless Firefox ESR of its own in
// namespace ns; who names the page in its reports.
func (w *clientsWorld) firefox(ns, who string, params url.Values) *netnsProc {
	w.t.Helper()
	profile := w.t.TempDir()
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(firefoxPrefs), 0o644); err != nil {
		w.t.Fatal(err)
	}
	db := "sql:" + profile
	w.sh("certutil", "-N", "-d", db, "--empty-password")
	w.sh("certutil", "-A", "-d", db, "-n", "Ferry test CA", "-t", "C,,", "-i", w.caFile)
	params.Set("who", who)
	return w.startProgram(ns, "firefox "+who, []string{"HOME=" + profile, "MOZ_HEADLESS=1"},
		"firefox-esr", "--headless", "--no-remote", "--profile", profile, w.pages.page("firefox.html", params))
}

// pagePair is a selected ICE candidate pair as firefox.js reports it.
type pagePair struct {
	ID            string
	Local, Remote struct {
		Type, Address, RelayProtocol string
		Port                         int
	}
}

// pageMedia is what arrived per kind, as firefox.js reports it.
type pageMedia struct {
	Video, Audio struct {
		Packets, Frames int
		Codec           string
	}
	Trickled int
}

// checkRelayed fails the test unless a page's pair is relay-only through one of Ferry's
// relays, over transport (udp, tcp or tls).
func (w *clientsWorld) checkRelayed(who string, p pagePair, transport string) {
	w.t.Helper()
	if p.Local.Type != "relay" || p.Local.Address != natInternetIP || p.Local.Port < w.s.minPort || p.Local.Port > w.s.maxPort {
		w.t.Errorf("%s: the local candidate is %s %s:%d, want a relay of Ferry's pool %s:%d-%d", who, p.Local.Type,
			p.Local.Address, p.Local.Port, natInternetIP, w.s.minPort, w.s.maxPort)
	}
	if p.Local.RelayProtocol != transport {
		w.t.Errorf("%s: the relay candidate was allocated over %q, want %s", who, p.Local.RelayProtocol, transport)
	}
}

// TestFirefoxSFU: Firefox publishes its fake camera and microphone (VP8 and Opus) over
// WHIP and another Firefox watches over WHEP, each relay-only through Ferry's TURN (udp
// for the publisher, tls for the viewer), the viewer trickling its candidates by PATCH,
// then restarting ICE by PATCH: the video decodes before and after, over a new relay
// candidate after, and the SFU sees both sessions relayed.
func TestFirefoxSFU(t *testing.T) {
	clientsRequire(t, firefoxCheck)
	if !netnsReexec(t) {
		return
	}
	start := time.Now()
	w := newClientsWorld(t)
	pub := url.Values{"role": {"publish"}, "url": {w.sfu + "/whip/" + clientsRoom},
		"token": {accessToken(t, clientsRoom, true, false, time.Hour)},
		"ice":   {jsonString(t, []iceServer{w.turnServer("udp", "ff-pub")})}}
	w.firefox(natClientA, "publisher", pub)
	var published struct{ Stream string }
	w.pages.waitJSON("publisher", "published", 30*time.Second, &published)
	var pubPair pagePair
	w.pages.waitJSON("publisher", "pair", time.Second, &pubPair)
	w.checkRelayed("publisher", pubPair, "udp")

	watch := url.Values{"role": {"watch"}, "url": {w.sfu + "/whep/" + clientsRoom + "/" + published.Stream},
		"token":  {accessToken(t, clientsRoom, false, true, time.Hour)},
		"ice":    {jsonString(t, []iceServer{w.turnServer("tls", "ff-view")})},
		"expect": {"video,audio"}, "restart": {"1"}}
	w.firefox(natClientB, "viewer", watch)
	var media pageMedia
	w.pages.waitJSON("viewer", "media", 30*time.Second, &media)
	if media.Video.Codec != "video/VP8" || media.Audio.Codec != "audio/opus" || media.Trickled == 0 {
		t.Errorf("viewer: %+v; want VP8 and Opus, with candidates trickled", media)
	}
	var viewPair pagePair
	w.pages.waitJSON("viewer", "pair", time.Second, &viewPair)
	w.checkRelayed("viewer", viewPair, "tls")
	w.relayedSessions(2, 10*time.Second)
	w.checkAllocation("ff-pub", "udp")
	w.checkAllocation("ff-view", "tls")

	var restarted struct {
		Before, After pagePair
		Media         pageMedia
	}
	w.pages.waitJSON("viewer", "restarted", 30*time.Second, &restarted)
	w.checkRelayed("viewer after the ICE restart", restarted.After, "tls")
	if restarted.After.Local.Port == restarted.Before.Local.Port {
		t.Errorf("viewer: the same relay candidate %s:%d before and after the ICE restart", restarted.After.Local.Address,
			restarted.After.Local.Port)
	}
	t.Logf("viewer: %d video frames and %d audio packets, then %d and %d after the ICE restart; passed in %v",
		media.Video.Frames, media.Audio.Packets, restarted.Media.Video.Frames, restarted.Media.Audio.Packets,
		time.Since(start).Round(time.Millisecond))
}

// TestFirefoxCall: two Firefox pages, each behind its own NAT, call each other peer to peer
// through Ferry's TURN, relay-only, over udp, then tcp, then tls (turns: by host name, with
// the test CA): each receives the other's video and audio over a relay candidate allocated
// over that transport.
func TestFirefoxCall(t *testing.T) {
	clientsRequire(t, firefoxCheck)
	if !netnsReexec(t) {
		return
	}
	start := time.Now()
	w := newClientsWorld(t)
	transports := []string{"udp", "tcp", "tls"}
	for _, side := range []struct{ ns, who, peer, caller string }{
		{natClientA, "alice", "bob", "1"}, {natClientB, "bob", "alice", "0"},
	} {
		ice := map[string]iceServer{}
		for _, tr := range transports {
			ice[tr] = w.turnServer(tr, side.who)
		}
		w.firefox(side.ns, side.who, url.Values{"role": {"call"}, "peer": {side.peer}, "caller": {side.caller},
			"transports": {"udp,tcp,tls"}, "ice": {jsonString(t, ice)}})
	}
	for _, tr := range transports {
		for _, who := range []string{"alice", "bob"} {
			var got struct {
				Pair  pagePair
				Media pageMedia
			}
			w.pages.waitJSON(who, "call-"+tr, 40*time.Second, &got)
			w.checkRelayed(who+" over "+tr, got.Pair, tr)
			if got.Pair.Remote.Type != "relay" || got.Pair.Remote.Address != natInternetIP {
				t.Errorf("%s over %s: the remote candidate is %s %s, want the other's relay on Ferry", who, tr,
					got.Pair.Remote.Type, got.Pair.Remote.Address)
			}
			t.Logf("%s over %s: %d video frames, %d audio packets", who, tr, got.Media.Video.Frames, got.Media.Audio.Packets)
		}
	}
	t.Logf("passed in %v", time.Since(start).Round(time.Millisecond))
}

// TestFirefoxWatchesH264: Firefox without H.264 watches an H.264 and Opus stream (a pion
// publisher): the 201's answer rejects its video section and accepts the audio with Opus
// only, and the audio plays, relay-only.
func TestFirefoxWatchesH264(t *testing.T) {
	clientsRequire(t, firefoxCheck)
	if !netnsReexec(t) {
		return
	}
	w := newClientsWorld(t)
	stream := h264Publisher(t, w.sfu)
	w.firefox(natClientB, "viewer", url.Values{"role": {"watch"}, "url": {w.sfu + "/whep/" + clientsRoom + "/" + stream},
		"token": {accessToken(t, clientsRoom, false, true, time.Hour)}, "expect": {"audio"},
		"ice": {jsonString(t, []iceServer{w.turnServer("udp", "ff-view")})}})
	var answer []struct {
		Kind   string
		Port   int
		Codecs []string
	}
	w.pages.waitJSON("viewer", "answer", 30*time.Second, &answer)
	if len(answer) != 2 || answer[0].Kind != "video" || answer[0].Port != 0 ||
		answer[1].Kind != "audio" || answer[1].Port == 0 || !slices.Equal(answer[1].Codecs, []string{"opus"}) {
		t.Fatalf("the answer's sections are %+v; want video rejected (port 0), audio with opus", answer)
	}
	var media pageMedia
	w.pages.waitJSON("viewer", "media", 30*time.Second, &media)
	if media.Audio.Codec != "audio/opus" || media.Video.Packets != 0 {
		t.Errorf("viewer: %+v; want Opus audio and no video", media)
	}
	var pair pagePair
	w.pages.waitJSON("viewer", "pair", time.Second, &pair)
	w.checkRelayed("viewer", pair, "udp")
	t.Logf("viewer: %d audio packets of %s, video rejected", media.Audio.Packets, media.Audio.Codec)
}

// h264Publisher publishes H.264 and Opus from a pion client in the world's root namespace
// (the "internet", no NAT: it reaches the SFU directly) and returns the stream id once the
// SFU knows both tracks. The packets are not real pictures: the viewer here takes none.
func h264Publisher(t *testing.T, sfu string) string {
	t.Helper()
	pc := newPeer(t, peerOptions{})
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, c := range []webrtc.RTPCodecCapability{
		{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
	} {
		track, err := webrtc.NewTrackLocalStaticRTP(c, "h264-"+c.MimeType[:5], "h264")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTrack(track); err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, track)
	}
	sess, status := signal(t, pc, sfu+"/whip/"+clientsRoom, accessToken(t, clientsRoom, true, false, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHIP of the H.264 publisher: %d", status)
	}
	waitConnected(t, pc)
	stop, done := make(chan struct{}), make(chan struct{})
	go sendSynthetic(tracks, stop, done)
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	waitFor(t, "the H.264 stream's two tracks", func() bool {
		info := roomInfo(t, &setup{sfuAddr: sfu[len("http://"):]}, clientsRoom)
		for _, st := range info.Streams {
			if st.ID == streamID(sess) && len(st.Tracks) == 2 {
				return true
			}
		}
		return false
	})
	return streamID(sess)
}

// sendSynthetic writes a packet to every track each 20 ms until stop: an H.264 IDR slice
// header (so a viewer may start at any packet) or an Opus frame of silence.
func sendSynthetic(tracks []*webrtc.TrackLocalStaticRTP, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n := uint32(0); ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for _, track := range tracks {
			payload := []byte{0xf8, 0xff, 0xfe}
			if track.Kind() == webrtc.RTPCodecTypeVideo {
				payload = []byte{0x65, 0x88, 0x84, 0x00}
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: n * 960,
				Marker: true}, Payload: payload})
		}
	}
}
