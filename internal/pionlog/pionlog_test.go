package pionlog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// logged runs log with a pion logger of scope and returns the level of each line written at
// debug level and above.
func logged(t *testing.T, log func(l logger)) []string {
	t.Helper()
	var buf bytes.Buffer
	f := Factory{Log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	log(f.NewLogger("test").(logger))
	var levels []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		levels = append(levels, rec.Level+" "+rec.Msg)
	}
	return levels
}

// TestExpectedAreDebug: the warnings and errors pion logs in a normal run (taken from a
// run's log) are debug lines.
func TestExpectedAreDebug(t *testing.T) {
	for _, msg := range []string{
		"UDPMuxDefault should not listening on unspecified address, use NewMultiUDPMuxFromPort instead",
		"Failed to start manager: handshake error: EOF",
		"Failed to start manager: connecting canceled by caller",
		"undeclaredMediaProcessor failed to open SrtpSession: the DTLS transport has not started yet",
		"Failed to read UDP packet: read udp [::]:23800: use of closed network connection",
		"Failed to close allocation: close udp 127.0.0.1:20001: use of closed network connection",
		"Failed to read from candidate udp4 host 198.51.100.2:23800 (resolved: 198.51.100.2:23800): io: read/write on closed pipe",
		"Failed to accept RTP stream is already closed",
		"Could not determine PayloadType for SSRC 2961014816 (EOF)",
		"Failed to ping without candidate pairs. Connection is not possible yet.",
		"Warning: mux: no endpoint for packet starting with 128, adding to queue size(0)",
		"No Username attribute in STUN message from 198.51.100.2:33948",
	} {
		got := logged(t, func(l logger) { l.Warn(msg); l.Errorf("%s", msg) })
		want := []string{"DEBUG " + msg, "DEBUG " + msg}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%q logged as %q, want debug", msg, got)
		}
	}
}

// TestFaultsStayVisible: the same operations failing for other reasons keep pion's level,
// and pion's Info stays debug.
func TestFaultsStayVisible(t *testing.T) {
	got := logged(t, func(l logger) {
		l.Warnf("Failed to start manager: %s", "handshake error: alert bad certificate")
		l.Errorf("Failed to read UDP packet: %s", "read udp 0.0.0.0:3478: message too long")
		l.Warn("Could not determine PayloadType for SSRC 1 (unknown payload type)")
		l.Error("Failed to close allocation: permission denied")
		l.Info("No Permission or Channel exists for 198.51.100.7:5000 on allocation")
	})
	want := []string{
		"WARN Failed to start manager: handshake error: alert bad certificate",
		"ERROR Failed to read UDP packet: read udp 0.0.0.0:3478: message too long",
		"WARN Could not determine PayloadType for SSRC 1 (unknown payload type)",
		"ERROR Failed to close allocation: permission denied",
		"DEBUG No Permission or Channel exists for 198.51.100.7:5000 on allocation",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
