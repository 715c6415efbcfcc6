package sfu

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/relay"
)

// TestRedirect: with a Route that names another node, WHIP, WHEP, the room API and the event
// feed are answered 307 to the same path and query on that node, with the token carried in
// the query; a token that fails is still 401 first; a Route with only RetryAfter is 503 with
// Retry-After; a Route that says nothing serves here.
func TestRedirect(t *testing.T) {
	pool, err := relay.NewPool(45360, 45369)
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	routes := map[string]Redirect{
		"away": {URL: "http://198.51.100.12:8080/"},
		"gone": {RetryAfter: 2500 * time.Millisecond},
	}
	s, err := New(Config{
		Pool: pool, BindIP: netip.MustParseAddr("127.0.0.1"),
		TokenSecret: func() string { return fuzzSecret },
		ICEServers:  func(TURNCredential) []auth.ICEServer { return nil },
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Route: func(_ context.Context, room string, publish bool) Redirect {
			asked = append(asked, room+map[bool]string{true: "/publish", false: "/subscribe"}[publish])
			return routes[room]
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	h := s.Handler(http.NotFoundHandler())
	token := func(room string) string {
		tok, err := auth.NewToken(fuzzSecret, auth.Claims{Room: room, Publish: true, Subscribe: true, Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct{ method, path, wantPath, wantQuery string }{
		{http.MethodPost, "/whip/away?name=cam", "/whip/away", "name=cam"},
		{http.MethodPost, "/whep/away", "/whep/away", ""},
		{http.MethodPost, "/whep/away/s1?layer=l", "/whep/away/s1", "layer=l"},
		{http.MethodGet, "/api/rooms/away", "/api/rooms/away", ""},
		{http.MethodGet, "/api/rooms/away/events", "/api/rooms/away/events", ""},
	} {
		rec := serve(h, tc.method, tc.path, token("away"), "application/sdp", []byte("v=0\r\n"))
		if rec.Code != http.StatusTemporaryRedirect {
			t.Errorf("%s %s: %d %q, want 307", tc.method, tc.path, rec.Code, rec.Body.String())
			continue
		}
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || loc.Host != "198.51.100.12:8080" || loc.Path != tc.wantPath {
			t.Errorf("%s %s: Location %q, want http://198.51.100.12:8080%s", tc.method, tc.path, rec.Header().Get("Location"), tc.wantPath)
			continue
		}
		q := loc.Query()
		if q.Get("token") == "" {
			t.Errorf("%s %s: Location %q carries no token", tc.method, tc.path, loc)
		}
		q.Del("token")
		if q.Encode() != tc.wantQuery {
			t.Errorf("%s %s: Location query %q, want %q and the token", tc.method, tc.path, q.Encode(), tc.wantQuery)
		}
	}
	if rec := serve(h, http.MethodPost, "/whip/away", "not-a-token", "application/sdp", nil); rec.Code != http.StatusUnauthorized {
		t.Errorf("WHIP with a bad token: %d, want 401 before any redirect", rec.Code)
	}
	rec := serve(h, http.MethodPost, "/whip/gone", token("gone"), "application/sdp", []byte("v=0\r\n"))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "3" {
		t.Errorf("WHIP to a room whose node is gone: %d Retry-After %q, want 503 and 3", rec.Code, rec.Header().Get("Retry-After"))
	}
	rec = serve(h, http.MethodPost, "/whip/here", token("here"), "application/sdp", []byte("v=0\r\n"))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("WHIP of a bad offer to a room served here: %d, want 400", rec.Code)
	}
	if len(asked) != 7 || asked[0] != "away/publish" || asked[1] != "away/subscribe" {
		t.Errorf("Route asked %v", asked)
	}
}
