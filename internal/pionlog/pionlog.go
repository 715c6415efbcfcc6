// Package pionlog routes pion's leveled loggers (turn, dtls, ice, webrtc) into log/slog, so
// Ferry has one log stream with one format and one level.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// Factory is a pion logging.LoggerFactory writing to a slog.Logger.
type Factory struct{ Log *slog.Logger }

// NewLogger returns a logger tagged with pion's scope ("turn", "dtls", ...).
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	return logger{log: f.Log.With("pion", scope)}
}

// logger maps pion levels onto slog. pion logs per-packet events at Info (a datagram with no
// permission, for one), so its Info is slog Debug; Trace is dropped. Its warnings and errors
// stay what they are, except the expected ones (see expected), which are Debug.
type logger struct{ log *slog.Logger }

// expected are pion warnings and errors that a normal run produces: they tell of a
// connection Ferry (or the client) closed on purpose, or of a state every new session passes
// through, and must not page anyone. Each is matched by a part of its text that names the
// cause, not the operation, so that the same operation failing for another reason stays a
// warning or an error.
var expected = []pattern{
	// A socket or a connection closed by its owner: a session ended, a relay killed by the
	// admin ("Failed to close allocation"), the ICE socket closed at a stop ("Failed to read
	// UDP packet").
	{part: "use of closed network connection"},
	// pion's own pipes between an ICE candidate and its connection, closed with the session.
	{part: "io: read/write on closed pipe"},
	// RTP and RTCP streams accepted as their session closes.
	{part: "stream is already closed"},
	// A session closed before its ICE connection came up (the client never connected, or
	// the connect timeout ended it): "Failed to start manager: connecting canceled by caller".
	{part: "connecting canceled by caller"},
	// The same, before its DTLS handshake began ("undeclaredMediaProcessor failed to open
	// SrtpSession").
	{part: "the DTLS transport has not started yet"},
	// The same, during its DTLS handshake: the other side or the session closed the
	// connection ("Failed to start manager: handshake error: EOF").
	{part: "handshake error: EOF"},
	// A packet of an SSRC that no track has claimed yet, read as its session closes.
	{part: "Could not determine PayloadType for SSRC", end: "(EOF)"},
	// Ferry binds the SFU's ICE socket to the relay address, which may be the wildcard: it
	// advertises that socket's addresses itself (settingEngine's IP filter and rewrite rule).
	{part: "UDPMuxDefault should not listening on unspecified address"},
	// An RTP packet that arrives, as a session starts, before its SRTP session is set up
	// ("Warning: mux: no endpoint for packet starting with 128, adding to queue").
	{part: "no endpoint for packet starting with"},
	// A new session whose client has not sent its candidates yet (they trickle in with
	// PATCH, or never come: the connect timeout ends such a session).
	{part: "Failed to ping without candidate pairs"},
	// A STUN message on the SFU's shared ICE socket, from an address no session knows, that
	// has no USERNAME to route it by: a late answer to a check of a session that just ended,
	// or anyone on the network (a warning per datagram would let them flood the log).
	{part: "No Username attribute in STUN message from"},
}

// pattern matches a message that contains part and ends with end.
type pattern struct{ part, end string }

// isExpected reports whether a warning or error of pion's is one of the expected ones.
func isExpected(msg string) bool {
	for _, p := range expected {
		if strings.Contains(msg, p.part) && strings.HasSuffix(msg, p.end) {
			return true
		}
	}
	return false
}

func (l logger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if level < slog.LevelWarn && !l.log.Enabled(ctx, level) {
		return // skip the Sprintf on per-packet paths
	}
	msg := fmt.Sprintf(format, args...)
	if level >= slog.LevelWarn && isExpected(msg) {
		level = slog.LevelDebug
	}
	l.log.Log(ctx, level, msg)
}

func (l logger) Trace(string)          {}
func (l logger) Tracef(string, ...any) {}
func (l logger) Debug(msg string)      { l.logf(slog.LevelDebug, "%s", msg) }
func (l logger) Debugf(f string, a ...any) {
	l.logf(slog.LevelDebug, f, a...)
}
func (l logger) Info(msg string)          { l.logf(slog.LevelDebug, "%s", msg) }
func (l logger) Infof(f string, a ...any) { l.logf(slog.LevelDebug, f, a...) }
func (l logger) Warn(msg string)          { l.logf(slog.LevelWarn, "%s", msg) }
func (l logger) Warnf(f string, a ...any) { l.logf(slog.LevelWarn, f, a...) }
func (l logger) Error(msg string)         { l.logf(slog.LevelError, "%s", msg) }
func (l logger) Errorf(f string, a ...any) {
	l.logf(slog.LevelError, f, a...)
}
