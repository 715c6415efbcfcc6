package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/conf"
)

// TestJSONLogAttrs: the JSON log writes addresses as strings and durations as milliseconds
// under a key ending in _ms; the text log keeps Go's forms.
func TestJSONLogAttrs(t *testing.T) {
	udp := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 38387}
	tcp := &net.TCPAddr{IP: net.ParseIP("::1"), Port: 3478}
	var buf bytes.Buffer
	log, _ := NewLogger(&buf, conf.Log{Level: "info", Format: "json"})
	log.Info("x", "client", udp, "listeners", []net.Addr{udp, tcp}, "took", 19200*time.Microsecond)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if rec["client"] != "127.0.0.1:38387" {
		t.Errorf("client = %#v, want \"127.0.0.1:38387\"", rec["client"])
	}
	if l, ok := rec["listeners"].([]any); !ok || len(l) != 2 || l[0] != "127.0.0.1:38387" || l[1] != "[::1]:3478" {
		t.Errorf("listeners = %#v, want the two addresses as strings", rec["listeners"])
	}
	if rec["took_ms"] != 19.2 || rec["took"] != nil {
		t.Errorf("took = %#v, took_ms = %#v; want took_ms 19.2 only", rec["took"], rec["took_ms"])
	}

	buf.Reset()
	log, _ = NewLogger(&buf, conf.Log{Level: "info", Format: "text"})
	log.Info("x", "client", udp, "took", 19200*time.Microsecond)
	if !strings.Contains(buf.String(), "client=127.0.0.1:38387 took=19.2ms") {
		t.Errorf("text log %q", buf.String())
	}
}

// TestWarnRealm: users all in other realms are reported once, with their realms; one user
// in the server's realm, or no users, is no warning.
func TestWarnRealm(t *testing.T) {
	cfg := conf.Default()
	cfg.Server.Realm = "example.com"
	for _, tt := range []struct {
		name  string
		users []auth.User
		want  string
	}{
		{"none in the realm", []auth.User{{Name: "a", Realm: "ferry.local"}, {Name: "b", Realm: "old.example"},
			{Name: "c", Realm: "ferry.local"}}, `their_realms="[ferry.local old.example]"`},
		{"one in the realm", []auth.User{{Name: "a", Realm: "ferry.local"}, {Name: "b", Realm: "example.com"}}, ""},
		{"no users", nil, ""},
	} {
		var buf bytes.Buffer
		credentials{users: tt.users}.warnRealm(slog.New(slog.NewTextHandler(&buf, nil)), cfg)
		got := buf.String()
		if tt.want == "" && got != "" || tt.want != "" && (!strings.Contains(got, "level=WARN") ||
			!strings.Contains(got, tt.want) || !strings.Contains(got, "realm=example.com")) {
			t.Errorf("%s: logged %q, want %q", tt.name, got, tt.want)
		}
	}
}
