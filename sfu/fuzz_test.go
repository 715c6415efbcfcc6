package sfu

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

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
		ICEServers:  func(string) []auth.ICEServer { return nil },
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
