package relay

import (
	"fmt"
	"sync/atomic"
)

// Which limit refused an RFC 6062 peer connection.
const (
	ConnLimitRelay = iota // connections per allocation
	ConnLimitTotal        // connections of the whole server
	connLimitKinds
)

// connCounts caps the RFC 6062 peer connections, those dialled by Connect and those a relay
// listener accepts: per relay (so per allocation) and in all. Every connection holds a
// descriptor, and its ConnectionBind another: without a cap one allocation could take them
// all. The limits change on reload; connections over a lowered limit stay.
type connCounts struct {
	perRelay, total atomic.Int64 // 0: no limit
	live            atomic.Int64
	refused         [connLimitKinds]atomic.Uint64
}

// check reports whether a relay that has relayConns connections already may take one more,
// and counts the refusal if not. It is called under Allocator.mu, and so is the count of a
// connection it admits: two connections cannot both take the last place.
func (c *connCounts) check(relayConns int) error {
	if limit := c.perRelay.Load(); limit > 0 && int64(relayConns) >= limit {
		c.refused[ConnLimitRelay].Add(1)
		return fmt.Errorf("%w: %d per allocation", ErrConnLimit, limit)
	}
	if limit := c.total.Load(); limit > 0 && c.live.Load() >= limit {
		c.refused[ConnLimitTotal].Add(1)
		return fmt.Errorf("%w: %d in all", ErrConnLimit, limit)
	}
	return nil
}

// SetConnLimits sets the most RFC 6062 peer connections one allocation, and the whole
// server, may hold (0: no limit), from the next connection on.
func (a *Allocator) SetConnLimits(perRelay, total int) {
	a.conns.perRelay.Store(int64(perRelay))
	a.conns.total.Store(int64(total))
}

// ConnRoom reports whether the TCP relay on port may take one more peer connection; the
// refusal, if any, is counted. A Connect asks it first, to be answered 508 before any
// connection is dialled.
func (a *Allocator) ConnRoom(port uint16) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.relays[port]
	if e == nil || !e.open {
		return errRelayClosed
	}
	return a.conns.check(e.refs - 1)
}

// TCPConns returns the live RFC 6062 peer connections and the refusals by limit
// (ConnLimitRelay, ConnLimitTotal).
func (a *Allocator) TCPConns() (live int64, refused [connLimitKinds]uint64) {
	for i := range refused {
		refused[i] = a.conns.refused[i].Load()
	}
	return a.conns.live.Load(), refused
}
