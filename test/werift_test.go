package test

// werift (npm, 0.24.4: later ones need Node 22, Debian has Node 20) against Ferry, in the
// clients world (clients_test.go): test/clients/werift_client.js publishes the RTP it is fed
// or watches, in a client namespace, relay-only, trickling its candidates by PATCH. werift
// is installed outside the checkout, in $FERRY_TEST_WERIFT_DIR (default
// ~/.cache/ferry-test/werift: `npm install --prefix DIR werift@0.24.4`), as .ci/run does.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// weriftDir is where werift is installed: node_modules/werift inside it.
func weriftDir() string {
	if dir := os.Getenv(clientsWeriftDirEnv); dir != "" {
		return dir
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "ferry-test", "werift")
}

// weriftCheck skips (or fails in CI) without node and werift 0.24.4.
func weriftCheck(t *testing.T) {
	t.Helper()
	needProgram("node", "nodejs")(t)
	pkg, err := os.ReadFile(filepath.Join(weriftDir(), "node_modules", "werift", "package.json"))
	var v struct{ Version string }
	if err == nil {
		err = json.Unmarshal(pkg, &v)
	}
	if err != nil || v.Version != "0.24.4" {
		clientsSkip(t, "werift 0.24.4 not installed in %s (npm install --prefix %[1]s werift@0.24.4; found %q, %v)",
			weriftDir(), v.Version, err)
	}
}

// werift runs werift_client.js with args in namespace ns.
func (w *clientsWorld) werift(ns, name string, args ...string) *netnsProc {
	w.t.Helper()
	script, err := filepath.Abs("clients/werift_client.js")
	if err != nil {
		w.t.Fatal(err)
	}
	return w.startProgram(ns, "werift "+name, []string{"NODE_PATH=" + filepath.Join(weriftDir(), "node_modules")},
		"node", append([]string{script}, args...)...)
}

// weriftMedia is what a werift viewer reports.
type weriftMedia struct {
	Video, Audio, Keyframes, Counted, OutOfOrder, Trickled int
}

// TestWeriftSFU: werift publishes the VP8 and Opus RTP it is fed over WHIP and another
// werift watches over WHEP, both relay-only through Ferry's TURN on udp with trickled
// candidates: the viewer gets the publisher's numbered packets in order, keyframes among
// them, then restarts ICE by PATCH and gets packets again, its ICE agent checking with the
// new credentials of the SFU's answer fragment (werift keeps its TURN allocation). The
// viewer is given a turn: tcp URL after the udp one and never allocates with it: werift uses
// the first TURN URL only.
func TestWeriftSFU(t *testing.T) {
	clientsRequire(t, weriftCheck)
	if !netnsReexec(t) {
		return
	}
	start := time.Now()
	w := newClientsWorld(t)
	pub := w.werift(natClientA, "publisher", "publish", w.sfu+"/whip/"+clientsRoom,
		accessToken(t, clientsRoom, true, false, time.Hour), jsonString(t, []iceServer{w.turnServer("udp", "wf-pub")}))
	stream := pub.waitFor("published", 30*time.Second)
	w.checkScriptPair("publisher", pub.waitFor("pair", time.Second))

	view := w.werift(natClientB, "viewer", "watch", w.sfu+"/whep/"+clientsRoom+"/"+stream,
		accessToken(t, clientsRoom, false, true, time.Hour),
		jsonString(t, []iceServer{w.turnServer("udp", "wf-view"), w.turnServer("tcp", "wf-view")}), "video,audio", "restart")
	var media weriftMedia
	if err := json.Unmarshal([]byte(view.waitFor("media", 30*time.Second)), &media); err != nil {
		t.Fatal(err)
	}
	if media.Counted < 50 || media.OutOfOrder != 0 || media.Keyframes == 0 || media.Trickled == 0 {
		t.Errorf("viewer: %+v; want the publisher's numbered packets in order, keyframes among them, candidates trickled", media)
	}
	w.checkScriptPair("viewer", view.waitFor("pair", time.Second))
	w.relayedSessions(2, 10*time.Second)
	w.checkAllocation("wf-pub", "udp")
	w.checkAllocation("wf-view", "udp")
	w.checkNoAllocation("wf-view", "tcp")
	var restarted struct{ Before, After, Ufrag, Remote string }
	if err := json.Unmarshal([]byte(view.waitFor("restarted", 30*time.Second)), &restarted); err != nil {
		t.Fatal(err)
	}
	w.checkScriptPair("viewer after the ICE restart", restarted.After)
	if restarted.Ufrag == "" || restarted.Remote != restarted.Ufrag {
		t.Errorf("viewer: after the ICE restart its agent checks with ufrag %q, the SFU's answer gave %q", restarted.Remote,
			restarted.Ufrag)
	}
	stopScript(t, view)
	stopScript(t, pub)
	t.Logf("viewer: %+v, then ICE restarted from %s to %s; passed in %v", media, restarted.Before, restarted.After,
		time.Since(start).Round(time.Millisecond))
}
