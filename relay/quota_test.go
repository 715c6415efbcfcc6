package relay

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// client returns a distinct client transport address for each n.
func client(n int) net.Addr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(10000+n)))
}

func TestQuotaLimits(t *testing.T) {
	type admit struct {
		user string
		want bool
	}
	tests := []struct {
		name           string
		perUser, total int
		admits         []admit // each from a new client address
		wantCount      int
	}{
		{
			name: "per-user limit", perUser: 2,
			admits: []admit{
				{"alice", true}, {"alice", true}, {"alice", false}, {"alice", false},
				{"bob", true}, {"bob", true}, {"bob", false},
			},
			wantCount: 4,
		},
		{
			name: "total limit", total: 3,
			admits: []admit{
				{"alice", true}, {"bob", true}, {"carol", true}, {"dave", false}, {"alice", false},
			},
			wantCount: 3,
		},
		{
			name: "both limits, per-user first", perUser: 1, total: 3,
			admits: []admit{
				{"alice", true}, {"alice", false}, {"bob", true}, {"carol", true}, {"dave", false},
			},
			wantCount: 3,
		},
		{
			name: "zero is unlimited",
			admits: func() []admit {
				var a []admit
				for range 1000 {
					a = append(a, admit{"alice", true})
				}
				return a
			}(),
			wantCount: 1000,
		},
		{
			name: "empty user name counts like any other", perUser: 1,
			admits:    []admit{{"", true}, {"", false}, {"alice", true}},
			wantCount: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQuota(tt.perUser, tt.total)
			for i, a := range tt.admits {
				if got := q.Admit(a.user, client(i)); got != a.want {
					t.Fatalf("Admit #%d (%q) = %v, want %v", i, a.user, got, a.want)
				}
			}
			if got := q.Count(); got != tt.wantCount {
				t.Fatalf("Count() = %d, want %d", got, tt.wantCount)
			}
		})
	}
}

func TestQuotaLifecycle(t *testing.T) {
	tests := []struct {
		name string
		// run drives a quota with a per-user limit of 1 and a total of 2 (alice's first
		// Admit has already succeeded from client(0)).
		run func(q *Quota)
		// afterwards: may alice and bob (from new clients) allocate, and the count before
		// they try.
		wantCount      int
		aliceOK, bobOK bool
	}{
		{
			name:      "reserved, not yet settled",
			run:       func(q *Quota) {},
			wantCount: 1, aliceOK: false, bobOK: true,
		},
		{
			name:      "Failed gives the slot back",
			run:       func(q *Quota) { q.Failed(client(0)) },
			wantCount: 0, aliceOK: true, bobOK: true,
		},
		{
			name:      "Created keeps it",
			run:       func(q *Quota) { q.Created(client(0)) },
			wantCount: 1, aliceOK: false, bobOK: true,
		},
		{
			name:      "Created then Released gives it back",
			run:       func(q *Quota) { q.Created(client(0)); q.Released("alice") },
			wantCount: 0, aliceOK: true, bobOK: true,
		},
		{
			name:      "Failed after Created does nothing",
			run:       func(q *Quota) { q.Created(client(0)); q.Failed(client(0)) },
			wantCount: 1, aliceOK: false, bobOK: true,
		},
		{
			name:      "Failed twice gives back once",
			run:       func(q *Quota) { q.Failed(client(0)); q.Failed(client(0)) },
			wantCount: 0, aliceOK: true, bobOK: true,
		},
		{
			name:      "Failed of another client does nothing",
			run:       func(q *Quota) { q.Failed(client(1)) },
			wantCount: 1, aliceOK: false, bobOK: true,
		},
		{
			// The same IP and port over TCP is another client.
			name: "Failed of the same address on another transport does nothing",
			run: func(q *Quota) {
				q.Failed(net.TCPAddrFromAddrPort(client(0).(*net.UDPAddr).AddrPort()))
			},
			wantCount: 1, aliceOK: false, bobOK: true,
		},
		{
			name:      "Created of another client settles nothing",
			run:       func(q *Quota) { q.Created(client(1)); q.Failed(client(0)) },
			wantCount: 0, aliceOK: true, bobOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQuota(1, 2)
			if !q.Admit("alice", client(0)) {
				t.Fatal("first Admit refused")
			}
			tt.run(q)
			if got := q.Count(); got != tt.wantCount {
				t.Fatalf("Count() = %d, want %d", got, tt.wantCount)
			}
			if got := q.Admit("alice", client(2)); got != tt.aliceOK {
				t.Errorf("Admit(alice) = %v, want %v", got, tt.aliceOK)
			}
			if got := q.Admit("bob", client(3)); got != tt.bobOK {
				t.Errorf("Admit(bob) = %v, want %v", got, tt.bobOK)
			}
		})
	}
}

func TestQuotaReleasedCountsPerUser(t *testing.T) {
	q := NewQuota(2, 0)
	for i := range 2 {
		if !q.Admit("alice", client(i)) {
			t.Fatalf("Admit #%d refused", i)
		}
		q.Created(client(i))
	}
	if !q.Admit("bob", client(2)) {
		t.Fatal("Admit(bob) refused")
	}
	q.Created(client(2))
	q.Released("alice")
	if !q.Admit("alice", client(3)) {
		t.Fatal("Admit(alice) refused after one of her two allocations ended")
	}
	if q.Admit("alice", client(4)) {
		t.Fatal("Admit(alice) admitted a third allocation")
	}
	if got := q.Count(); got != 3 {
		t.Fatalf("Count() = %d, want 3", got)
	}
}

// TestQuotaRetransmittedAllocate: a second Admit from a client whose first reservation never
// settled replaces that reservation instead of taking a second slot, also when the user is
// at the limit because of that very reservation.
func TestQuotaRetransmittedAllocate(t *testing.T) {
	tests := []struct {
		name           string
		perUser, total int
	}{
		{"no limit", 0, 0},
		{"below the per-user limit", 2, 0},
		{"at the per-user limit", 1, 0},
		{"at the total limit", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQuota(tt.perUser, tt.total)
			if !q.Admit("alice", client(0)) {
				t.Fatal("first Admit refused")
			}
			if !q.Admit("alice", client(0)) {
				t.Fatal("second Admit from the same client refused")
			}
			if got := q.Count(); got != 1 {
				t.Fatalf("Count() = %d after two Admits from one client, want 1", got)
			}
			q.Failed(client(0))
			if got := q.Count(); got != 0 {
				t.Fatalf("Count() = %d after Failed, want 0", got)
			}
		})
	}
}

func TestQuotaConcurrentAdmit(t *testing.T) {
	const goroutines, limit = 50, 5
	q := NewQuota(limit, 0)
	start := make(chan struct{})
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			<-start
			if q.Admit("alice", client(i)) {
				admitted.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := admitted.Load(); got != limit {
		t.Fatalf("%d concurrent Admits succeeded, want exactly %d", got, limit)
	}
	if got := q.Count(); got != limit {
		t.Fatalf("Count() = %d, want %d", got, limit)
	}
}

func TestQuotaConcurrentLifecycle(t *testing.T) {
	// Many users allocating and ending allocations at once end with an empty quota.
	const users, rounds = 8, 200
	q := NewQuota(3, 20)
	var wg sync.WaitGroup
	for u := range users {
		wg.Go(func() {
			user := string(rune('a' + u))
			for r := range rounds {
				c := client(u*rounds + r)
				if !q.Admit(user, c) {
					continue
				}
				if r%2 == 0 {
					q.Failed(c)
					continue
				}
				q.Created(c)
				q.Failed(c) // a later request error of the same client: no effect
				q.Released(user)
			}
		})
	}
	wg.Wait()
	if got := q.Count(); got != 0 {
		t.Fatalf("Count() = %d after every allocation ended, want 0", got)
	}
	for u := range users {
		if !q.Admit(string(rune('a'+u)), client(-1-u)) {
			t.Errorf("user %c refused after every allocation ended", 'a'+u)
		}
	}
}

func TestQuotaSetLimits(t *testing.T) {
	tests := []struct {
		name                 string
		perUser, total       int      // before
		made                 []string // allocations that exist, one user each
		newPerUser, newTotal int
		admit                string
		want                 bool
	}{
		{"per-user lowered below the count", 3, 0, []string{"alice", "alice", "alice"}, 1, 0, "alice", false},
		{"per-user lowered to the count", 3, 0, []string{"alice", "alice"}, 2, 0, "alice", false},
		{"per-user lowered, other user", 3, 0, []string{"alice", "alice"}, 1, 0, "bob", true},
		{"per-user raised", 1, 0, []string{"alice"}, 2, 0, "alice", true},
		{"per-user lifted", 1, 0, []string{"alice"}, 0, 0, "alice", true},
		{"total lowered below the count", 0, 5, []string{"alice", "bob", "carol"}, 0, 2, "dave", false},
		{"total raised", 0, 2, []string{"alice", "bob"}, 0, 3, "carol", true},
		{"total lifted", 0, 2, []string{"alice", "bob"}, 0, 0, "carol", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQuota(tt.perUser, tt.total)
			for i, user := range tt.made {
				if !q.Admit(user, client(i)) {
					t.Fatalf("Admit #%d (%q) refused before the change", i, user)
				}
				q.Created(client(i))
			}
			q.SetLimits(tt.newPerUser, tt.newTotal)
			if u, tot := q.Limits(); u != tt.newPerUser || tot != tt.newTotal {
				t.Fatalf("Limits() = %d, %d; want %d, %d", u, tot, tt.newPerUser, tt.newTotal)
			}
			if got := q.Count(); got != len(tt.made) {
				t.Fatalf("Count() = %d after SetLimits, want %d: nothing is revoked", got, len(tt.made))
			}
			if got := q.Admit(tt.admit, client(len(tt.made))); got != tt.want {
				t.Fatalf("Admit(%q) = %v, want %v", tt.admit, got, tt.want)
			}
		})
	}
}

// TestQuotaLoweredLimitDrains: a user above a lowered limit allocates again only once enough
// of their allocations have ended.
func TestQuotaLoweredLimitDrains(t *testing.T) {
	q := NewQuota(3, 0)
	for i := range 3 {
		q.Admit("alice", client(i))
		q.Created(client(i))
	}
	q.SetLimits(1, 0)
	for released := 1; released <= 3; released++ {
		q.Released("alice")
		want := released == 3 // 2 left, then 1: still at or above the limit of 1
		if got := q.Admit("alice", client(10+released)); got != want {
			t.Fatalf("Admit after %d of 3 ended = %v, want %v", released, got, want)
		}
	}
}

// TestQuotaGroups: users a GroupFunc puts into one group share the group's limit, apart
// from allocations_per_user; releasing any member's allocation frees a place of the group.
func TestQuotaGroups(t *testing.T) {
	q := NewQuota(10, 0)
	q.SetGroups(func(user string) (string, int, bool) {
		if group, _, ok := strings.Cut(user, "/"); ok {
			return group, 3, true
		}
		return "", 0, false
	})
	for i, user := range []string{"tok1/a", "tok1/b", "tok1/b"} {
		if !q.Admit(user, client(i)) {
			t.Fatalf("Admit %d (%s) refused under the group's limit", i, user)
		}
		q.Created(client(i))
	}
	if q.Admit("tok1/c", client(3)) {
		t.Fatal("a fourth allocation of the group was admitted past its limit of 3")
	}
	if !q.Admit("tok2/a", client(4)) || !q.Admit("alice", client(5)) {
		t.Fatal("another group, or a user of no group, was refused")
	}
	q.Released("tok1/a")
	if !q.Admit("tok1/c", client(6)) {
		t.Fatal("the group's place was not given back")
	}
}
