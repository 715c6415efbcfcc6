package turnserver

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ferry-rtc/ferry/internal/snapmap"
)

// fiveTuple names an allocation (RFC 8656 section 2): the client's address, the address of
// the listener it came to, and whether it came over a stream (TCP, TLS, DTLS) or UDP.
type fiveTuple struct {
	client, server netip.AddrPort
	stream         bool
}

// table is the one owner of allocation state: every live allocation by its ID, the UDP ones
// by their 5-tuple too, and the counts the quotas are checked against. Requests change it
// under mu; udp is read without a lock. A stream's allocation is found through its
// connection (streamConn.alloc), whose requests come one at a time.
type table struct {
	mu     sync.Mutex
	byID   map[uint64]*allocation
	users  map[string]int // places taken by admit per user, or per quota group
	held   int            // places taken by admit in all: live allocations and those being made
	lastID uint64
	udp    snapmap.Map[fiveTuple, *allocation] // the UDP allocations, for ChannelData and Send
	live   atomic.Int64
	shared SharedQuota          // told each change of a count, under mu: in the order they happen
	conns  map[uint32]*peerConn // the RFC 6062 peer connections, by CONNECTION-ID
}

func newTable(shared SharedQuota) *table {
	return &table{byID: map[uint64]*allocation{}, users: map[string]int{}, shared: shared,
		conns: map[uint32]*peerConn{}}
}

// allocationOf returns the allocation of r's 5-tuple, if it has one, without a lock.
func (s *Server) allocationOf(r *request) *allocation {
	if r.conn != nil {
		return r.conn.alloc.Load()
	}
	return s.table.udpLookup(r.five)
}

// add registers a new allocation, unless its UDP 5-tuple has one already (false).
func (t *table) add(a *allocation) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.udpLookup(a.five) != nil {
		return false
	}
	t.lastID++
	a.id = t.lastID
	t.byID[a.id] = a
	if !a.five.stream {
		t.udp.Store(a.five.hash(), a.five, a)
	}
	t.live.Add(1)
	return true
}

// remove forgets a, which has ended; false if it was gone already. Its place in the quotas
// is the caller's to release.
func (t *table) remove(a *allocation) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[a.id] != a {
		return false
	}
	delete(t.byID, a.id)
	if !a.five.stream {
		t.udp.Delete(a.five.hash(), a.five)
	}
	t.live.Add(-1)
	return true
}

// admit takes a place for an allocation in slot (a user or quota group) under limit and
// the total; false when either is full (486 Allocation Quota Reached).
func (t *table) admit(slot string, limit, total int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if (total > 0 && t.held >= total) || (limit > 0 && t.users[slot] >= limit) {
		return false
	}
	t.users[slot]++
	t.held++
	t.changed(slot)
	return true
}

// release gives back a place admit gave: of an allocation that ended, or was never made.
func (t *table) release(slot string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.users[slot]--
	if t.users[slot] == 0 {
		delete(t.users, slot)
	}
	t.held--
	t.changed(slot)
}

// changed tells the shared quota, if any, the places slot holds now; t.mu is held.
func (t *table) changed(slot string) {
	if t.shared != nil {
		t.shared.Changed(slot, t.users[slot])
	}
}

// all returns the live allocations, oldest first.
func (t *table) all() []*allocation {
	t.mu.Lock()
	out := make([]*allocation, 0, len(t.byID))
	for _, a := range t.byID {
		out = append(out, a)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b *allocation) int { return int(a.id - b.id) })
	return out
}

// hash spreads 5-tuples over the buckets of table.udp.
func (k fiveTuple) hash() uint64 {
	ip := k.client.Addr().As16()
	h := binary.LittleEndian.Uint64(ip[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(ip[8:])
	h ^= uint64(k.client.Port())<<16 | uint64(k.server.Port())
	return h * 0xff51afd7ed558ccd
}

// udpLookup returns the allocation of a UDP 5-tuple, without a lock.
func (t *table) udpLookup(five fiveTuple) *allocation {
	a, _ := t.udp.Load(five.hash(), five)
	return a
}
