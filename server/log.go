package server

import (
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/ferry-rtc/ferry/conf"
)

// NewLogger returns the logger [log] asks for, writing to w, and the level a reload may
// change.
func NewLogger(w io.Writer, cfg conf.Log) (*slog.Logger, *slog.LevelVar) {
	level := &slog.LevelVar{}
	level.Set(cfg.SlogLevel())
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		opts.ReplaceAttr = jsonAttr
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// jsonAttr makes an attribute of a JSON log line what a log pipeline can use without
// knowing Go's types: an address is its string ("127.0.0.1:3478", not the fields of a
// *net.UDPAddr), and a duration is a number of milliseconds under a key that says so
// (took_ms: 19.2, not took: 19200000 nanoseconds).
func jsonAttr(_ []string, a slog.Attr) slog.Attr {
	switch v := a.Value.Any().(type) {
	case time.Duration:
		return slog.Float64(a.Key+"_ms", float64(v)/float64(time.Millisecond))
	case net.Addr:
		return slog.String(a.Key, v.String())
	case []net.Addr:
		s := make([]string, len(v))
		for i, addr := range v {
			s[i] = addr.String()
		}
		return slog.Any(a.Key, s)
	}
	return a
}
