package server

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// drainPoll is how often Drain looks whether the last allocation has ended.
const drainPoll = 100 * time.Millisecond

// Why the server drains.
const (
	drainAdmin    = "admin"    // the admin API (ferry drain): the process goes on until stopped
	drainShutdown = "shutdown" // a stop signal: the process exits when drained
)

// DrainStatus is the admin API's view of a drain.
type DrainStatus struct {
	Draining    bool      `json:"draining"`
	Reason      string    `json:"reason,omitempty"` // "admin" or "shutdown"
	Since       time.Time `json:"since,omitzero"`
	Allocations int       `json:"allocations"`  // live TURN allocations
	SFUSessions int       `json:"sfu_sessions"` // live SFU sessions
}

// errShuttingDown refuses to cancel the drain of a stopping server.
var errShuttingDown = errors.New("the server is shutting down: its drain cannot be cancelled")

// drainStatus describes the drain, if any, and what is left.
func (s *Server) drainStatus() DrainStatus {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	return DrainStatus{Draining: s.drainReason != "", Reason: s.drainReason, Since: s.drainSince,
		Allocations: s.turn.Allocations(), SFUSessions: s.sfuSessions()}
}

// startDrain stops new allocations and SFU sessions for reason; /readyz answers 503 from
// now on. A shutdown takes over an admin drain; it reports whether anything changed.
func (s *Server) startDrain(reason string) bool {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	if s.drainReason == reason || s.drainReason == drainShutdown {
		return false
	}
	if s.drainReason == "" {
		s.drainSince = time.Now()
	}
	s.drainReason = reason
	alternate, _ := netip.ParseAddrPort(s.cfg.Load().Server.AlternateServer)
	if alt, ok := s.clusterAlternate(); ok {
		alternate = alt // and each refresh of the registry picks again
	}
	s.draining.Store(true)
	s.turn.Drain(alternate)
	if s.sfu != nil {
		s.sfu.sfu.Drain()
	}
	return true
}

// StartDrain starts a drain that lasts until CancelDrain or a stop: Allocates get 508 (or
// 300 Try Alternate), new SFU sessions 503, /readyz 503, and the live ones go on. Calling
// it again changes nothing. It returns the drain's status.
func (s *Server) StartDrain(from string) DrainStatus {
	if s.startDrain(drainAdmin) {
		st := s.drainStatus()
		s.log.Info("draining by the admin API: no new allocations or SFU sessions until 'ferry drain --cancel'",
			"from", from, "allocations", st.Allocations, "sfu_sessions", st.SFUSessions,
			"alternate_server", s.cfg.Load().Server.AlternateServer)
	}
	return s.drainStatus()
}

// CancelDrain ends a drain the admin API started: new allocations and sessions are served
// again. A stopping server's drain cannot be cancelled (errShuttingDown).
func (s *Server) CancelDrain(from string) (DrainStatus, error) {
	s.drainMu.Lock()
	reason := s.drainReason
	switch reason {
	case drainShutdown:
		s.drainMu.Unlock()
		return s.drainStatus(), errShuttingDown
	case drainAdmin:
		s.drainReason, s.drainSince = "", time.Time{}
		s.turn.Resume()
		if s.sfu != nil {
			s.sfu.sfu.Resume()
		}
		s.draining.Store(false)
	}
	s.drainMu.Unlock()
	if reason == drainAdmin {
		s.log.Info("drain cancelled by the admin API: new allocations and SFU sessions are served again", "from", from)
	}
	return s.drainStatus(), nil
}

// Drain stops new allocations and SFU sessions and waits until the existing ones have
// ended, drain_timeout has passed, or ctx is done (a second signal). /readyz answers 503
// from now on. It reports whether everything ended by itself.
func (s *Server) Drain(ctx context.Context) bool {
	cfg := s.cfg.Load()
	s.startDrain(drainShutdown)
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
