package sfu

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/relay"
)

const fuzzSecret = "fuzz-token-secret-0123456789"

// FuzzWHIP posts each input as a WHIP offer, then as a trickle PATCH on a session if the
// offer made one: every answer is a status code, never a panic, and sessions are deleted.
func FuzzWHIP(f *testing.F) {
	pool, err := relay.NewPool(45350, 45359)
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{
		Pool: pool, BindIP: netip.MustParseAddr("127.0.0.1"),
		TokenSecret: func() string { return fuzzSecret },
		ICEServers:  func(TURNCredential) []auth.ICEServer { return nil },
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	h := s.Handler(http.NotFoundHandler())
	token, err := auth.NewToken(fuzzSecret, (auth.Claims{Room: "fuzz", Publish: true, Subscribe: true,
		Expiry: time.Now().Add(time.Hour)}))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
		"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=rtpmap:96 VP8/90000\r\na=rid:h send\r\na=simulcast:send h;m\r\n",
		"a=candidate:1 1 udp 1 10.0.0.1 9 typ host\r\n",
		"", "\x00\xff", strings.Repeat("m=audio 9 RTP/AVP 0\r\n", 50),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(h, http.MethodPost, "/whip/fuzz", token, "application/sdp", body)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("WHIP answered %d", rec.Code)
		}
		loc := rec.Header().Get("Location")
		if rec.Code != http.StatusCreated || loc == "" {
			return
		}
		patch := serve(h, http.MethodPatch, loc, token, "application/trickle-ice-sdpfrag", body)
		if patch.Code < 200 || patch.Code > 599 {
			t.Fatalf("PATCH answered %d", patch.Code)
		}
		if del := serve(h, http.MethodDelete, loc, token, "", nil); del.Code >= 300 {
			t.Fatalf("DELETE %s answered %d", loc, del.Code)
		}
	})
}

func serve(h http.Handler, method, path, token, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// FuzzCandidateFilter: whatever an offer holds and however its lines end (as given, LF
// only, CRLF), what the gate lets through, read back by pion's parser as pion/webrtc reads
// it, has no candidate the policy denies, no candidate key spelled another way, and at
// most maxRemoteCandidates candidates at all levels together.
func FuzzCandidateFilter(f *testing.F) {
	crlf := testOffer(maxRemoteCandidates, 8)
	lf := strings.ReplaceAll(crlf, "\r\n", "\n")
	for _, seed := range []string{
		crlf, lf,
		strings.Replace(lf, "\n", "\r", 3),
		"v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\na=candidate:1 1 udp 1 10.0.0.1 9 typ host\n",
		"v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\nm=audio 9 RTP/AVP 0\na= Candidate:1 1 udp 1 10.0.0.1 9 typ host\n",
		"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=candidate:candidate:1 1 udp 1 10.0.0.1 9 typ host\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, offer string) {
		for _, variant := range []string{offer, strings.ReplaceAll(offer, "\r\n", "\n"), strings.ReplaceAll(offer, "\n", "\r\n")} {
			checkGated(t, variant)
		}
	})
}

// checkGated filters offer with the test gate and checks what pion would read of it.
func checkGated(t *testing.T, offer string) {
	d, err := parseOffer(offer)
	if err != nil {
		return
	}
	out, kept, err := testGate().apply(d)
	if err != nil {
		return
	}
	var back sdp.SessionDescription
	if err := back.UnmarshalString(out); err != nil {
		return // pion/webrtc refuses it too
	}
	attrs := slices.Clone(back.Attributes)
	for _, m := range back.MediaDescriptions {
		attrs = append(attrs, m.Attributes...)
	}
	n := 0
	for _, a := range attrs {
		if !strings.EqualFold(strings.TrimSpace(a.Key), "candidate") {
			continue
		}
		n++
		if a.Key != "candidate" {
			t.Fatalf("candidate key %q passed:\n%q", a.Key, out)
		}
		c, err := ice.UnmarshalCandidate(a.Value)
		if err != nil {
			continue // pion discards what it cannot parse
		}
		ip, err := netip.ParseAddr(c.Address())
		if c.NetworkType() != ice.NetworkTypeUDP4 || err != nil || netip.MustParsePrefix("10.0.0.0/8").Contains(ip.Unmap()) {
			t.Fatalf("candidate %q passed the gate:\n%q", a.Value, out)
		}
	}
	if n > maxRemoteCandidates || n != kept {
		t.Fatalf("%d candidates passed (%d counted), at most %d may:\n%q", n, kept, maxRemoteCandidates, out)
	}
}
