package server

import (
	"context"
	"net/netip"
	"time"
)

// drainPoll is how often Drain looks whether the last allocation has ended.
const drainPoll = 100 * time.Millisecond

// Drain stops new allocations and SFU sessions and waits until the existing ones have
// ended, drain_timeout has passed, or ctx is done (a second signal). /readyz answers 503
// from now on. It reports whether everything ended by itself.
func (s *Server) Drain(ctx context.Context) bool {
	cfg := s.cfg.Load()
	alternate, _ := netip.ParseAddrPort(cfg.Server.AlternateServer)
	s.draining.Store(true)
	s.turn.Drain(alternate)
	if s.sfu != nil {
		s.sfu.sfu.Drain()
	}
	timeout := cfg.Server.DrainTimeout.Duration
	s.log.Info("draining: no new allocations", "allocations", s.turn.Allocations(), "sfu_sessions", s.sfuSessions(),
		"timeout", timeout, "alternate_server", cfg.Server.AlternateServer)

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for s.turn.Allocations() > 0 || s.sfuSessions() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			s.log.Warn("drain timeout: ending the remaining allocations", "allocations", s.turn.Allocations(),
				"sfu_sessions", s.sfuSessions())
			return false
		case <-ctx.Done():
			s.log.Warn("stopping now: ending the remaining allocations", "allocations", s.turn.Allocations(),
				"sfu_sessions", s.sfuSessions())
			return false
		}
	}
	s.log.Info("drained: every allocation and SFU session has ended")
	return true
}

func (s *Server) sfuSessions() int {
	if s.sfu == nil {
		return 0
	}
	return s.sfu.sfu.Sessions()
}
