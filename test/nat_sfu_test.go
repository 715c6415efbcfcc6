package test

import (
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
)

// TestNATSFU: a publisher behind one masquerading NAT reaches the SFU on the "internet"
// (newNATWorld), and a relay-only subscriber behind the other receives what it sends,
// through Ferry's own TURN relay into Ferry's own SFU.
func TestNATSFU(t *testing.T) {
	if !netnsReexec(t) {
		return
	}
	w := newNATWorld(t)
	s, turnAddr := natSetup(t)
	s.sfuAddr = addrString(natInternetIP, 8080)
	s.tokenSecret = sfuTokenSecret
	startFerry(t, s.toml())

	username, password := auth.RESTCredential(testSecret, "nat", time.Hour, time.Now())
	env := []string{"FERRY_NAT_SFU=http://" + s.sfuAddr, "FERRY_NAT_TURN=turn:" + turnAddr + "?transport=udp",
		"FERRY_NAT_USER=" + username, "FERRY_NAT_PASS=" + password}
	pub := w.start(natClientA, "TestNATSFUClient", append(env, "FERRY_NAT_ROLE=publish",
		"FERRY_NAT_TOKEN="+accessToken(t, "nat", true, false, time.Hour))...)
	stream := pub.waitFor("stream", 30*time.Second)
	t.Logf("the publisher reached the SFU from a %s candidate", pub.waitFor("candidate", 30*time.Second))

	sub := w.start(natClientB, "TestNATSFUClient", append(env, "FERRY_NAT_ROLE=subscribe", "FERRY_NAT_STREAM="+stream,
		"FERRY_NAT_TOKEN="+accessToken(t, "nat", false, true, time.Hour))...)
	if got := sub.waitFor("received", 30*time.Second); got != "20" {
		t.Fatalf("the subscriber received %s packets, want 20:\n%s", got, sub.output())
	}
	if typ := sub.waitFor("candidate", time.Second); typ != webrtc.ICECandidateTypeRelay.String() {
		t.Fatalf("the subscriber's selected candidate is %s, want relay", typ)
	}
	for _, p := range []*netnsProc{sub, pub} {
		p.send("quit")
		if out, err := p.wait(10 * time.Second); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
}

// TestNATSFUClient is a role of TestNATSFU, run in a client namespace: a WHIP publisher
// (FERRY_NAT_ROLE=publish) or a relay-only WHEP subscriber of FERRY_NAT_STREAM
// (FERRY_NAT_ROLE=subscribe). It reports the stream, the selected candidate's type and,
// for a subscriber, the packets received, then waits for "quit".
func TestNATSFUClient(t *testing.T) {
	role := os.Getenv("FERRY_NAT_ROLE")
	if role != "publish" && role != "subscribe" {
		t.Skip("a role of TestNATSFU, which runs it inside a client namespace")
	}
	sfu, token := os.Getenv("FERRY_NAT_SFU"), os.Getenv("FERRY_NAT_TOKEN")
	turnServer := []webrtc.ICEServer{{URLs: []string{os.Getenv("FERRY_NAT_TURN")},
		Username: os.Getenv("FERRY_NAT_USER"), Credential: os.Getenv("FERRY_NAT_PASS")}}
	var pc *webrtc.PeerConnection
	if role == "publish" {
		p := newPublisher(t, peerOptions{}, "")
		sess, status := signal(t, p.pc, sfu+"/whip/nat", token)
		if status != http.StatusCreated {
			t.Fatalf("WHIP: %d", status)
		}
		waitConnected(t, p.pc)
		p.run()
		netnsReport("stream", streamID(sess))
		pc = p.pc
	} else {
		sub, got := newSubscriber(t, peerOptions{relayVia: turnServer})
		if _, status := signal(t, sub, sfu+"/whep/nat/"+os.Getenv("FERRY_NAT_STREAM"), token); status != http.StatusCreated {
			t.Fatalf("WHEP: %d", status)
		}
		waitConnected(t, sub)
		got.waitFor(t, "20 packets", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 20 })
		netnsReport("received", strconv.Itoa(20))
		pc = sub
	}
	netnsReport("candidate", selectedLocalType(t, pc).String())
	if line, ok := netnsNextLine(netnsStdin(), 60*time.Second); !ok || line != "quit" {
		t.Fatalf("waiting for quit: got %q", line)
	}
}
