package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
)

// quietIP is Ferry's address in TestQuietLogs' world; quietPeerIP the other end of its veth.
const (
	quietIP     = "198.51.100.1"
	quietPeerIP = "198.51.100.2"
)

// TestQuietLogs: a normal start (default listeners, relay and SFU on the wildcard address,
// the self-test), a WHIP publisher and a relay-only WHEP subscriber through Ferry's TURN,
// the subscriber's TURN allocation ended with `ferry sessions kill --user`, and a stop log
// no WARN and no ERROR:
// pion's messages about connections closed on purpose are debug. The JSON log writes
// addresses as strings and durations under keys that name their unit.
//
// It runs in a network namespace of its own, where the wildcard address means only the
// namespace's loopback and a veth with documentation addresses.
func TestQuietLogs(t *testing.T) {
	if !netnsReexec(t) {
		return
	}
	w := newNetnsWorld(t)
	w.veth(quietIP, quietPeerIP)
	dir := t.TempDir()
	users := filepath.Join(dir, "users.toml")
	addUser(t, users, testUser, testPass)
	min, max := relayRange(40)
	f := startFerry(t, fmt.Sprintf(`[server]
realm = %q
[relay]
min_port = %d
max_port = %d
[auth]
users_file = %q
secrets = [%q]
[sfu]
token_secret = %q
[log]
format = "json"
`, testRealm, min, max, users, testSecret, sfuTokenSecret))
	f.waitLog(t, `"msg":"self-test passed`, 1)

	sfuURL := "http://" + addrString(quietIP, 8080)
	pub := newPublisher(t, peerOptions{}, "")
	pubSess, status := signal(t, pub.pc, sfuURL+"/whip/quiet", accessToken(t, "quiet", true, false, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHIP: %d", status)
	}
	waitConnected(t, pub.pc)
	pub.run()

	// The subscriber relays through Ferry's TURN with a credential of the application's
	// (REST API), which the admin then ends by its user.
	username, password := auth.RESTCredential(testSecret, "quiet-viewer", time.Hour, time.Now())
	relay := []webrtc.ICEServer{{URLs: []string{"turn:" + addrString(quietIP, 3478) + "?transport=udp"},
		Username: username, Credential: password}}
	sub, got := newSubscriber(t, peerOptions{relayVia: relay})
	subSess, status := signal(t, sub, sfuURL+"/whep/quiet/"+streamID(pubSess), accessToken(t, "quiet", false, true, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHEP: %d", status)
	}
	waitConnected(t, sub)
	got.waitFor(t, "20 packets", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 20 })
	if typ := selectedLocalType(t, sub); typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("the subscriber's selected candidate is %s, want relay", typ)
	}
	if out, stderr, err := runFerry(t, "", "sessions", "kill", "--user", "quiet-viewer", "--admin", "127.0.0.1:9642"); err != nil ||
		!strings.Contains(out, "ended: 1") {
		t.Fatalf("ferry sessions kill --user quiet-viewer: %v\n%s%s", err, out, stderr)
	}
	f.waitLog(t, `"killed":true`, 1)
	for _, sess := range []sfuSession{subSess, pubSess} {
		if resp := sess.do(t, http.MethodDelete, "", "", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE: %s", resp.Status)
		}
	}
	f.signal(t, syscall.SIGTERM)
	if code := f.exit(t, 20*time.Second); code != 0 {
		t.Fatalf("ferry exited with %d", code)
	}
	checkQuietJSONLog(t, f.stderr.String())
}

// TestRealmMismatch: a start whose realm is none of the users file's users' realm says so:
// none of them can authenticate.
func TestRealmMismatch(t *testing.T) {
	s, _ := newSetup(t, 4) // alice, in realm ferry.test
	f := startFerry(t, strings.Replace(s.toml(), `realm = "`+testRealm+`"`, `realm = "other.example"`, 1))
	f.waitLog(t, `level=WARN msg="no user of the users file is in the server's realm: none of them can authenticate" `+
		`realm=other.example users_file=`+s.usersFile+` users=1 their_realms=[ferry.test]`, 1)
}

// checkQuietJSONLog fails t for every log line that is not JSON, is WARN or ERROR, holds an
// address as an object, or a duration under a key without a unit.
func checkQuietJSONLog(t *testing.T, log string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n, withUnit := 0, 0
	for sc.Scan() {
		line := sc.Text()
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON log line: %q", line)
			continue
		}
		n++
		if lvl := rec["level"]; lvl == "WARN" || lvl == "ERROR" {
			t.Errorf("a normal run logged %s: %s", lvl, line)
		}
		for key, v := range rec {
			if _, isObject := v.(map[string]any); isObject {
				t.Errorf("%s is an object (an address not written as a string?): %s", key, line)
			}
			if slices.Contains([]string{"took", "duration", "timeout", "lifetime", "age"}, key) {
				t.Errorf("the duration %s has no unit in its key: %s", key, line)
			}
			if strings.HasSuffix(key, "_ms") {
				withUnit++
			}
		}
	}
	if withUnit == 0 {
		t.Errorf("no duration with its unit in its key (took_ms) in %d lines", n)
	}
	t.Logf("%d log lines, none WARN or ERROR, %d durations in ms", n, withUnit)
}

// veth links the world's root namespace to itself over a veth pair, v0 with ip and v1 with
// peer: two addresses other than loopback for ICE, with nothing beyond them.
func (w *netnsWorld) veth(ip, peer string) {
	w.t.Helper()
	w.sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	w.sh("ip", "addr", "add", ip+"/24", "dev", "v0")
	w.sh("ip", "addr", "add", peer+"/24", "dev", "v1")
	w.sh("ip", "link", "set", "v0", "up")
	w.sh("ip", "link", "set", "v1", "up")
}
