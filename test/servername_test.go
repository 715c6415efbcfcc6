package test

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServerName: with server.name set, the URIs Ferry hands out carry the name rather
// than the address, as certificates do: the WHIP/WHEP Link headers and `ferry cred`. A
// reload changes it for the next session.
func TestServerName(t *testing.T) {
	s, port := sfuSetup(t)
	f := startFerry(t, withServerName(s.toml(), "turn.ferry.test"))
	path := filepath.Join(f.dir, "ferry.toml")
	wantURIs := func(name string) []string {
		hostPort := addrString(name, port)
		return []string{"stun:" + hostPort, "turn:" + hostPort + "?transport=udp", "turn:" + hostPort + "?transport=tcp"}
	}
	if got := linkURIs(t, s); !slices.Equal(got, wantURIs("turn.ferry.test")) {
		t.Errorf("Link header URIs %v, want %v", got, wantURIs("turn.ferry.test"))
	}
	out, stderr, err := runFerry(t, "", "cred", "--config", path, "--user", "bob")
	var cred struct{ URIs []string }
	if err != nil || json.Unmarshal([]byte(out), &cred) != nil {
		t.Fatalf("ferry cred: %v\n%s%s", err, out, stderr)
	}
	if want := wantURIs("turn.ferry.test")[1:]; !slices.Equal(cred.URIs, want) {
		t.Errorf("ferry cred URIs %v, want %v", cred.URIs, want)
	}

	writeConfig(t, path, withServerName(s.toml(), "turn2.ferry.test"))
	f.signal(t, syscall.SIGHUP)
	f.waitLog(t, `msg="config reloaded"`, 1)
	if got := linkURIs(t, s); !slices.Equal(got, wantURIs("turn2.ferry.test")) {
		t.Errorf("Link header URIs after a reload %v, want %v", got, wantURIs("turn2.ferry.test"))
	}
}

// withServerName sets server.name in a config that setup.toml wrote.
func withServerName(config, name string) string {
	return strings.Replace(config, "[server]\n", "[server]\nname = \""+name+"\"\n", 1)
}

// linkURIs publishes to the SFU of s and returns the URIs of the answer's Link headers.
func linkURIs(t *testing.T, s *setup) []string {
	t.Helper()
	p := newPublisher(t, peerOptions{}, "")
	sess, status := signal(t, p.pc, "http://"+s.sfuAddr+"/whip/names", accessToken(t, "names", true, false, time.Hour))
	if status != 201 {
		t.Fatalf("WHIP: %d", status)
	}
	var uris []string
	for _, srv := range iceServersFromLinks(t, sess.links) {
		uris = append(uris, srv.URLs...)
	}
	return uris
}
