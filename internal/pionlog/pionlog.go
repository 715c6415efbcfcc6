// Package pionlog routes pion's leveled loggers (turn, dtls, ice, webrtc) into log/slog, so
// Ferry has one log stream with one format and one level.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory is a pion logging.LoggerFactory writing to a slog.Logger.
type Factory struct{ Log *slog.Logger }

// NewLogger returns a logger tagged with pion's scope ("turn", "dtls", ...).
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	return logger{log: f.Log.With("pion", scope)}
}

// logger maps pion levels onto slog. pion logs per-packet events at Info (a datagram with no
// permission, for one), so its Info is slog Debug; Trace is dropped.
type logger struct{ log *slog.Logger }

func (l logger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return // skip the Sprintf on per-packet paths
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, args...))
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
