package test

// Publishers and viewers of different WebRTC stacks through one Ferry, in the clients world
// (clients_test.go), everything relay-only through Ferry's TURN.

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"
)

// TestClientsAcrossStacks: Firefox publishes its fake camera (VP8, Opus) and aiortc (over
// TURN tcp) and werift (udp) watch it; aiortc publishes its test pattern (VP8, Opus) and
// Firefox (tls) and werift watch it. aiortc and Firefox decode what they receive; werift,
// which has no decoder, counts the packets and the VP8 keyframes. werift's own stream is
// not watched here: werift has no encoder, so what it publishes is numbered RTP, not
// pictures (TestWeriftSFU checks it arrives).
func TestClientsAcrossStacks(t *testing.T) {
	clientsRequire(t, firefoxCheck, aiortcCheck, weriftCheck)
	if !netnsReexec(t) {
		return
	}
	start := time.Now()
	w := newClientsWorld(t)
	subToken := accessToken(t, clientsRoom, false, true, time.Hour)

	// Firefox publishes; aiortc and werift watch.
	w.firefox(natClientA, "publisher", url.Values{"role": {"publish"}, "url": {w.sfu + "/whip/" + clientsRoom},
		"token": {accessToken(t, clientsRoom, true, false, time.Hour)},
		"ice":   {jsonString(t, []iceServer{w.turnServer("udp", "ff-pub")})}})
	var published struct{ Stream string }
	w.pages.waitJSON("publisher", "published", 30*time.Second, &published)
	firefoxStream := w.sfu + "/whep/" + clientsRoom + "/" + published.Stream
	aioView := w.aiortc(natClientB, "viewer of firefox", "watch", firefoxStream, subToken,
		jsonString(t, []iceServer{w.turnServer("tcp", "aio-view")}), "video,audio")
	wfView := w.werift(natClientB, "viewer of firefox", "watch", firefoxStream, subToken,
		jsonString(t, []iceServer{w.turnServer("udp", "wf-view")}), "video,audio")

	// aiortc publishes; Firefox and werift watch.
	aioPub := w.aiortc(natClientA, "publisher", "publish", w.sfu+"/whip/"+clientsRoom,
		accessToken(t, clientsRoom, true, false, time.Hour), jsonString(t, []iceServer{w.turnServer("udp", "aio-pub")}))
	aiortcStream := w.sfu + "/whep/" + clientsRoom + "/" + aioPub.waitFor("published", 30*time.Second)
	w.firefox(natClientB, "viewer", url.Values{"role": {"watch"}, "url": {aiortcStream}, "token": {subToken},
		"ice": {jsonString(t, []iceServer{w.turnServer("tls", "ff-view")})}, "expect": {"video,audio"}})
	wfView2 := w.werift(natClientB, "viewer of aiortc", "watch", aiortcStream, subToken,
		jsonString(t, []iceServer{w.turnServer("udp", "wf-view2")}), "video,audio")

	var aio struct{ Video, Audio int }
	if err := json.Unmarshal([]byte(aioView.waitFor("media", 40*time.Second)), &aio); err != nil {
		t.Fatal(err)
	}
	w.checkScriptPair("aiortc viewer of firefox", aioView.waitFor("pair", time.Second))
	t.Logf("aiortc decoded %d video and %d audio frames of Firefox's stream", aio.Video, aio.Audio)
	for _, v := range []struct {
		who string
		p   *netnsProc
	}{{"werift viewer of firefox", wfView}, {"werift viewer of aiortc", wfView2}} {
		var media weriftMedia
		if err := json.Unmarshal([]byte(v.p.waitFor("media", 40*time.Second)), &media); err != nil {
			t.Fatal(err)
		}
		if media.Keyframes == 0 {
			t.Errorf("%s: %+v; no VP8 keyframe arrived", v.who, media)
		}
		w.checkScriptPair(v.who, v.p.waitFor("pair", time.Second))
		t.Logf("%s: %d video packets (%d keyframes), %d audio packets", v.who, media.Video, media.Keyframes, media.Audio)
	}
	var ff pageMedia
	w.pages.waitJSON("viewer", "media", 40*time.Second, &ff)
	if ff.Video.Codec != "video/VP8" || ff.Audio.Codec != "audio/opus" {
		t.Errorf("Firefox viewer of aiortc: %+v; want VP8 and Opus", ff)
	}
	var pair pagePair
	w.pages.waitJSON("viewer", "pair", time.Second, &pair)
	w.checkRelayed("Firefox viewer of aiortc", pair, "tls")
	t.Logf("Firefox decoded %d video frames and got %d audio packets of aiortc's stream", ff.Video.Frames, ff.Audio.Packets)

	w.relayedSessions(6, 10*time.Second)
	w.checkAllocation("aio-view", "tcp")
	for _, p := range []*netnsProc{aioView, wfView, wfView2, aioPub} {
		stopScript(t, p)
	}
	t.Logf("passed in %v", time.Since(start).Round(time.Millisecond))
}
