package test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
)

// sfuSummary is the part of an SFU session in `ferry sessions list --json` the tests read.
type sfuSummary struct {
	ID, Room, Stream, Name, Role, State, Client, Candidate string
	Relayed                                                bool
	Bitrate                                                uint64 `json:"bitrate_bps"`
	Layers                                                 []string
	Layer                                                  string
	Subscribers                                            int
	TURNSession                                            string `json:"turn_session"`
}

// TestSessionsSFU: `ferry sessions list` shows the SFU's sessions beside the TURN
// allocations: a publisher with its name, client address, bitrate and viewer count, and a
// subscriber relayed by one of Ferry's allocations, named; --room and --user select;
// `sessions kill` ends every allocation of a user by --user, and an SFU session by its id: a
// publisher's subscribers with it.
func TestSessionsSFU(t *testing.T) {
	s, port := sfuSetup(t)
	startFerry(t, s.toml())
	base := "http://" + s.sfuAddr

	pub := newPublisher(t, peerOptions{}, "")
	pubSess, status := signal(t, pub.pc, base+"/whip/adm?name=cam", accessToken(t, "adm", true, false, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHIP: %d", status)
	}
	waitConnected(t, pub.pc)
	pub.run()
	username, password := auth.RESTCredential(testSecret, "viewer", time.Hour, time.Now())
	relay := []webrtc.ICEServer{{URLs: []string{"turn:" + addrString("127.0.0.1", port) + "?transport=udp"},
		Username: username, Credential: password}}
	sub, got := newSubscriber(t, peerOptions{relayVia: relay})
	if _, status := signal(t, sub, base+"/whep/adm/"+streamID(pubSess), accessToken(t, "adm", false, true, time.Hour)); status != http.StatusCreated {
		t.Fatalf("WHEP: %d", status)
	}
	waitConnected(t, sub)
	got.waitFor(t, "20 packets", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 20 })
	alice := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	alice.allocate()

	var all sessionList
	waitFor(t, "both SFU sessions with a bitrate", func() bool {
		all = sessionsAll(t, s)
		return len(all.SFU) == 2 && all.SFU[0].Bitrate > 0 && all.SFU[1].Bitrate > 0
	})
	if len(all.TURN) != 2 {
		t.Fatalf("%d TURN allocations, want the viewer's and alice's: %+v", len(all.TURN), all.TURN)
	}
	viewerAlloc := allocationOf(t, all.TURN, "viewer")
	// Oldest first. The publisher's candidate is host or prflx (its checks may come before
	// its trickled candidates); the subscriber's, relayed by Ferry, is shown as such.
	p, v := all.SFU[0], all.SFU[1]
	if p.Role != "publisher" || p.ID != streamID(pubSess) || p.Room != "adm" || p.Name != "cam" ||
		p.Subscribers != 1 || p.Relayed || p.Candidate == "" || !strings.HasPrefix(p.Client, "127.0.0.1:") ||
		p.State != "connected" {
		t.Errorf("publisher %+v; want publisher %s in adm named cam, one subscriber, direct from 127.0.0.1", p, streamID(pubSess))
	}
	if v.Role != "subscriber" || v.Stream != streamID(pubSess) || v.Name != "cam" || !v.Relayed ||
		v.TURNSession != viewerAlloc.ID || v.Client != viewerAlloc.Relay || v.Layer != "" {
		t.Errorf("subscriber %+v; want a subscriber of %s relayed by allocation %s (%s)", v, streamID(pubSess),
			viewerAlloc.ID, viewerAlloc.Relay)
	}

	// The publisher's session resource tells it the same, and no one else.
	var own sfuSummary
	if status := getJSON(t, pubSess.resource, pubSess.token, &own); status != http.StatusOK ||
		own.ID != p.ID || own.Subscribers != 1 || own.Name != "cam" {
		t.Errorf("GET of the publisher's session: %d, %+v; want its description with one subscriber", status, own)
	}
	if resp := withToken(pubSess, accessToken(t, "adm", true, true, time.Hour)).do(t, http.MethodGet, "", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of the publisher's session with another token: %s, want 404", resp.Status)
	}

	if l := sessionsAll(t, s, "--room", "adm"); len(l.SFU) != 2 || len(l.TURN) != 0 {
		t.Errorf("--room adm: %d SFU sessions, %d allocations; want 2 and 0", len(l.SFU), len(l.TURN))
	}
	if l := sessionsAll(t, s, "--room", "other"); len(l.SFU) != 0 {
		t.Errorf("--room other: %d SFU sessions, want 0", len(l.SFU))
	}
	if l := sessionsAll(t, s, "--user", "vie*"); len(l.TURN) != 1 || l.TURN[0].User != "viewer" || len(l.SFU) != 0 {
		t.Errorf("--user 'vie*': %+v; want the viewer's allocation only", l)
	}
	table, stderr, err := runFerry(t, "", "sessions", "list", "--admin", s.adminAddr)
	if err != nil {
		t.Fatalf("sessions list: %v\n%s", err, stderr)
	}
	t.Logf("sessions list:\n%s", table)
	for _, want := range []string{"TURN allocations: 2", "EXPIRES IN", "SFU sessions: 2", "relayed (allocation " + viewerAlloc.ID + ")",
		"direct (" + p.Candidate + ")", " cam ", "publisher", "subscriber", "kbit/s"} {
		if !strings.Contains(table, want) {
			t.Errorf("sessions list does not show %q:\n%s", want, table)
		}
	}

	kill := func(args ...string) (string, error) {
		out, stderr, err := runFerry(t, "", append(append([]string{"sessions", "kill"}, args...), "--admin", s.adminAddr)...)
		return out + stderr, err
	}
	if out, err := kill(v.ID, "--user", testUser); exitCode(err) != 1 || !strings.Contains(out, "give an ID or --user, not both") {
		t.Errorf("sessions kill ID --user: %v\n%s; want exit 1, not both", err, out)
	}
	if out, err := kill("--user", testUser); err != nil || !strings.Contains(out, "sessions of user alice ended: 1") {
		t.Fatalf("sessions kill --user alice: %v\n%s", err, out)
	}
	mustCode(t, "Refresh after kill --user", alice.request(stun.MethodRefresh, lifetime(time.Minute)), stun.CodeAllocMismatch)
	if out, err := kill("--user", "nobody"); exitCode(err) != 1 || !strings.Contains(out, "404") {
		t.Errorf("sessions kill --user nobody: %v\n%s; want exit 1 and 404", err, out)
	}
	// Killing the publisher ends its subscriber too.
	if out, err := kill(p.ID); err != nil {
		t.Fatalf("sessions kill %s: %v\n%s", p.ID, err, out)
	}
	waitFor(t, "no SFU session", func() bool { return len(sessionsAll(t, s).SFU) == 0 })
	if out, err := kill(v.ID); exitCode(err) != 1 || !strings.Contains(out, "404") {
		t.Errorf("sessions kill of the ended subscriber: %v\n%s; want exit 1 and 404", err, out)
	}
}

// getJSON GETs url with a bearer token and decodes a 200's JSON into v.
func getJSON(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// allocationOf is the one allocation of user in list.
func allocationOf(t *testing.T, list []session, user string) session {
	t.Helper()
	var found []session
	for _, a := range list {
		if a.User == user {
			found = append(found, a)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d allocations of %s, want 1: %+v", len(found), user, list)
	}
	return found[0]
}
