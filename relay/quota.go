package relay

import (
	"net"
	"sync"
)

// Quota enforces allocations_per_user and allocations_total (0 = unlimited).
//
// pion/turn asks Admit before it creates an allocation and reports the outcome later
// (Created, or Failed when creating it failed), so Admit reserves a slot at once: two
// concurrent Allocates of one user on two listeners cannot both slip under the limit. The
// reservation is keyed by the client's transport address, which is what pion's failure
// report carries.
//
// Users can be counted in groups with limits of their own (SetGroups): the credentials Ferry
// mints for the SFU's sessions share one small quota per access token.
type Quota struct {
	mu             sync.Mutex
	perUser, total int               // SetLimits changes them
	group          GroupFunc         // nil: every user counts on their own, under perUser
	users          map[string]int    // allocations (made or reserved) per user ID or group
	count          int               // all allocations, made or reserved
	pending        map[string]string // client address → user ID of a reservation not yet settled
}

// GroupFunc puts user into a group that is counted as one, with its own limit (0 = none); ok
// false leaves the user on their own, under allocations_per_user. It must give the same
// answer for a user every time.
type GroupFunc func(user string) (group string, limit int, ok bool)

// SetGroups sets how users are grouped, before the quota is first used.
func (q *Quota) SetGroups(f GroupFunc) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.group = f
}

// slot is what user counts under, and its limit; q.mu is held.
func (q *Quota) slot(user string) (string, int) {
	if q.group != nil {
		if group, limit, ok := q.group(user); ok {
			return group, limit
		}
	}
	return user, q.perUser
}

// NewQuota returns a quota; a limit of 0 means no limit.
func NewQuota(perUser, total int) *Quota {
	return &Quota{perUser: perUser, total: total, users: map[string]int{}, pending: map[string]string{}}
}

// SetLimits changes the limits (0 = no limit) for the next Admit. Allocations made or
// reserved already are never revoked: a user above a lowered limit cannot allocate until
// enough of theirs have ended.
func (q *Quota) SetLimits(perUser, total int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.perUser, q.total = perUser, total
}

// Limits returns the limits in force (0 = no limit).
func (q *Quota) Limits() (perUser, total int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.perUser, q.total
}

func clientKey(addr net.Addr) string { return addr.Network() + "/" + addr.String() }

// Admit reserves an allocation for user from client, or reports false when a limit is
// reached (486 Allocation Quota Reached).
func (q *Quota) Admit(user string, client net.Addr) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	// A retransmitted Allocate whose first try never settled replaces that reservation; give
	// it back before the limits are checked, or a client at its limit would be refused
	// because of its own stale reservation, which nothing would ever release.
	key := clientKey(client)
	q.releasePending(key)
	if q.total > 0 && q.count >= q.total {
		return false
	}
	slot, limit := q.slot(user)
	if limit > 0 && q.users[slot] >= limit {
		return false
	}
	q.pending[key] = user
	q.users[slot]++
	q.count++
	return true
}

// Created settles the reservation of client: the allocation exists now and counts until
// Released.
func (q *Quota) Created(client net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.pending, clientKey(client))
}

// Failed gives back the reservation of client, if it has one that never became an
// allocation.
func (q *Quota) Failed(client net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releasePending(clientKey(client))
}

func (q *Quota) releasePending(key string) {
	if user, ok := q.pending[key]; ok {
		delete(q.pending, key)
		q.release(user)
	}
}

// Released gives back the slot of an allocation of user that ended.
func (q *Quota) Released(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.release(user)
}

func (q *Quota) release(user string) {
	slot, _ := q.slot(user)
	if q.users[slot] <= 1 {
		delete(q.users, slot)
	} else {
		q.users[slot]--
	}
	if q.count > 0 {
		q.count--
	}
}

// Count returns the number of allocations made or reserved.
func (q *Quota) Count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}
