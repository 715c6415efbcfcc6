package test

// aiortc (Debian's python3-aiortc 1.4) against Ferry, in the clients world
// (clients_test.go): test/clients/aiortc_client.py publishes or watches, in a client
// namespace. aiortc cannot be told to relay only, nor trickle, nor restart ICE, and takes
// only the first TURN URL (see the script): the clients world's filter is what keeps it to
// Ferry's relays, and the trickle and ICE restart by PATCH are tested with Firefox and
// werift instead.

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// aiortcPython is Debian's python3, whose packages hold aiortc: a python3 earlier in PATH
// (pyenv's, a virtualenv's) does not see them.
const aiortcPython = "/usr/bin/python3"

// aiortcCheck skips (or fails in CI) unless Debian's python3 imports aiortc.
func aiortcCheck(t *testing.T) {
	t.Helper()
	if err := runQuiet(aiortcPython, "-c", "import aiortc"); err != nil {
		clientsSkip(t, "aiortc not installed for %s (apt-get install -y python3-aiortc): %v", aiortcPython, err)
	}
}

// aiortc runs aiortc_client.py with args in namespace ns. It trusts the test CA (for
// turns:) through SSL_CERT_FILE, which Python's default TLS context reads.
func (w *clientsWorld) aiortc(ns, name string, args ...string) *netnsProc {
	w.t.Helper()
	script, err := filepath.Abs("clients/aiortc_client.py")
	if err != nil {
		w.t.Fatal(err)
	}
	return w.startProgram(ns, "aiortc "+name, []string{"SSL_CERT_FILE=" + w.caFile, "PYTHONDONTWRITEBYTECODE=1"},
		aiortcPython, append([]string{script}, args...)...)
}

// checkScriptPair fails the test unless a script's selected pair ("LOCALTYPE HOST:PORT",
// and maybe more) is its relay toward the SFU's host candidate.
func (w *clientsWorld) checkScriptPair(who, pair string) {
	w.t.Helper()
	f := strings.Fields(pair)
	if len(f) < 2 || f[0] != "relay" || !strings.HasPrefix(f[1], natInternetIP+":") {
		w.t.Errorf("%s: the selected pair is %q, want its relay candidate toward the SFU on %s", who, pair, natInternetIP)
	}
}

// stop tells a script to quit and waits for it to end well.
func stopScript(t *testing.T, p *netnsProc) {
	t.Helper()
	p.send("quit")
	if out, err := p.wait(15 * time.Second); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
}

// TestAiortcSFU: aiortc publishes (its test pattern in VP8, silence in Opus) over WHIP
// through Ferry's TURN on udp, and another aiortc watches over WHEP through turns: with
// the test CA, decoding 20 video and 20 audio frames; both reach the SFU only through
// Ferry's relays. The viewer is given a turn: udp URL after the turns: one and never
// allocates with it: aiortc uses the first TURN URL only.
func TestAiortcSFU(t *testing.T) {
	clientsRequire(t, aiortcCheck)
	if !netnsReexec(t) {
		return
	}
	start := time.Now()
	w := newClientsWorld(t)
	pub := w.aiortc(natClientA, "publisher", "publish", w.sfu+"/whip/"+clientsRoom,
		accessToken(t, clientsRoom, true, false, time.Hour), jsonString(t, []iceServer{w.turnServer("udp", "aio-pub")}))
	stream := pub.waitFor("published", 30*time.Second)
	w.checkScriptPair("publisher", pub.waitFor("pair", time.Second))

	view := w.aiortc(natClientB, "viewer", "watch", w.sfu+"/whep/"+clientsRoom+"/"+stream,
		accessToken(t, clientsRoom, false, true, time.Hour),
		jsonString(t, []iceServer{w.turnServer("tls", "aio-view"), w.turnServer("udp", "aio-view")}), "video,audio")
	var media struct{ Video, Audio int }
	if err := json.Unmarshal([]byte(view.waitFor("media", 40*time.Second)), &media); err != nil {
		t.Fatal(err)
	}
	w.checkScriptPair("viewer", view.waitFor("pair", time.Second))
	w.relayedSessions(2, 10*time.Second)
	w.checkAllocation("aio-pub", "udp")
	w.checkAllocation("aio-view", "tls")
	w.checkNoAllocation("aio-view", "udp")
	stopScript(t, view)
	stopScript(t, pub)
	t.Logf("viewer decoded %d video and %d audio frames; passed in %v", media.Video, media.Audio,
		time.Since(start).Round(time.Millisecond))
}
