package server

import (
	"io"
	"log/slog"

	"github.com/ferry-rtc/ferry/conf"
)

// NewLogger returns the logger [log] asks for, writing to w, and the level a reload may
// change.
func NewLogger(w io.Writer, cfg conf.Log) (*slog.Logger, *slog.LevelVar) {
	level := &slog.LevelVar{}
	level.Set(cfg.SlogLevel())
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}
