package turnserver

import (
	"net"
	"sync"
	"time"
)

// session is what Ferry knows of one live allocation, keyed by its 5-tuple.
type session struct {
	user    string
	relay   net.Addr
	created time.Time
}

// sessions mirrors pion/turn's allocations (fed by its EventHandler), because pion keeps
// them private: the guard asks it whether a request has an allocation to act on.
type sessions struct {
	mu     sync.RWMutex
	byFive map[string]session
}

func newSessions() *sessions { return &sessions{byFive: map[string]session{}} }

// fiveTuple names an allocation the way pion does: client address, server address, and the
// transport (a UDP and a TCP client may share ip:port).
func fiveTuple(client, server net.Addr) string {
	return client.Network() + " " + client.String() + " " + server.String()
}

func (s *sessions) add(client, server net.Addr, sess session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byFive[fiveTuple(client, server)] = sess
}

func (s *sessions) remove(client, server net.Addr) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := fiveTuple(client, server)
	sess, ok := s.byFive[key]
	delete(s.byFive, key)
	return sess, ok
}

func (s *sessions) get(client, server net.Addr) (session, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sess, ok := s.byFive[fiveTuple(client, server)]
	return sess, ok
}

func (s *sessions) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byFive)
}
