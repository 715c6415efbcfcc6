package relay

import (
	"errors"
	"net"
)

// relayEntry is a relay in the Allocator's registry: a UDP relay socket or a TCP relay
// listener with the connections of its port. It stays registered, and live, until the
// socket and every counted connection have closed (refs counts them), since connections
// outlive their listener. Everything but traffic, which the data path writes through its own
// pointer, is guarded by Allocator.mu.
type relayEntry struct {
	traffic *Traffic
	udp     *packetConn  // the socket of a UDP relay; nil for TCP
	end     func() error // closes the socket or listener
	refs    int
	open    bool // the socket or listener has not closed yet
}

func newEntry() *relayEntry {
	return &relayEntry{traffic: new(Traffic), refs: 1, open: true}
}

// register makes e, whose socket end closes, the relay of port. An entry there before
// belongs to a closed relay whose connections still count: it moves to displaced, and ends
// with the last of them.
func (a *Allocator) register(port uint16, e *relayEntry, end func() error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.end = end
	if old := a.relays[port]; old != nil {
		a.displaced[old] = struct{}{}
	}
	a.relays[port] = e
}

// errRelayClosed is why a connection of a relay whose socket has closed is refused.
var errRelayClosed = errors.New("no open relay there")

// socketClosed drops the reference of e's socket; e takes no new connections from now on.
func (a *Allocator) socketClosed(port uint16, e *relayEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.open = false
	a.unrefLocked(port, e)
}

// unrefConn gives back the reference of one of e's peer connections.
func (a *Allocator) unrefConn(port uint16, e *relayEntry) {
	a.conns.live.Add(-1)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unrefLocked(port, e)
}

// unrefLocked drops one reference of e. The last one moves e's traffic to the ended total and
// e out of the registry, unless a new relay has taken the port meanwhile. A packet counted
// after that, by a Read or Write racing the last Close, is missing from the totals: the
// data path takes no lock to rule that out.
func (a *Allocator) unrefLocked(port uint16, e *relayEntry) {
	if e.refs--; e.refs > 0 {
		return
	}
	a.ended = a.ended.Add(e.traffic.Usage())
	if a.relays[port] == e {
		delete(a.relays, port)
	} else {
		delete(a.displaced, e)
	}
}

// refConn takes a reference on e for a new peer connection of it, within the connection
// limits.
func (a *Allocator) refConn(e *relayEntry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refConnLocked(e)
}

// refPort is refConn for the relay registered on port (a pion LocalAddr, so an int).
func (a *Allocator) refPort(port int) (*relayEntry, error) {
	if !a.pool.Contains(port) {
		return nil, errRelayClosed
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.relays[uint16(port)]
	return e, a.refConnLocked(e)
}

// refConnLocked fails once e's socket has closed (e may have ended already, and counting
// it again would count its traffic twice), and past the connection limits.
func (a *Allocator) refConnLocked(e *relayEntry) error {
	if e == nil || !e.open {
		return errRelayClosed
	}
	if err := a.conns.check(e.refs - 1); err != nil {
		return err
	}
	a.conns.live.Add(1)
	e.refs++
	return nil
}

// countConn wraps conn, a connection of e's port, so its traffic counts as e's, and makes it
// give back its reference when it closes. The caller has taken the reference.
func (a *Allocator) countConn(conn net.Conn, port uint16, e *relayEntry) net.Conn {
	return &countingConn{Conn: conn, traffic: e.traffic, release: func() { a.unrefConn(port, e) }}
}

// counter returns what the listener of e does with a connection it accepts: count it as e's,
// or refuse it (false) once the listener has closed.
func (a *Allocator) counter(port uint16, e *relayEntry) func(net.Conn) (net.Conn, bool) {
	return func(conn net.Conn) (net.Conn, bool) {
		if a.refConn(e) != nil {
			return nil, false
		}
		return a.countConn(conn, port, e), true
	}
}

// Traffic returns the counters of the relay on port; false if no relay is live there. A TCP
// relay is live as long as its listener or any of its connections is open. The counters
// stay readable after the relay ends: the log line of an ended allocation reads them.
func (a *Allocator) Traffic(port uint16) (*Traffic, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.relays[port]
	if e == nil {
		return nil, false
	}
	return e.traffic, true
}

// Totals returns everything relayed since start: ended relays plus live ones.
func (a *Allocator) Totals() Usage {
	a.mu.Lock()
	defer a.mu.Unlock()
	sum := a.ended
	for _, e := range a.relays {
		sum = sum.Add(e.traffic.Usage())
	}
	for e := range a.displaced {
		sum = sum.Add(e.traffic.Usage())
	}
	return sum
}

// End closes the relay on port (socket or TCP listener), which makes pion/turn delete the
// allocation (its read loop ends on the error and calls DeleteAllocation). false if no relay
// is live there, or its socket has closed already and only connections of it are left,
// which pion closes as it deletes the allocation.
func (a *Allocator) End(port uint16) bool {
	a.mu.Lock()
	e := a.relays[port]
	open := e != nil && e.open
	a.mu.Unlock()
	if !open {
		return false
	}
	// Not under mu: closing takes it to end the entry. A socket that closed since is closed
	// again harmlessly.
	_ = e.end()
	return true
}

// DeniedSources returns how many datagrams and TCP connections arriving at relays the peer
// policy has refused (PermitSource) since start.
func (a *Allocator) DeniedSources() uint64 { return a.denied.Load() }
