package cluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// TestStatus: ferry cluster status's reading lists the live nodes with their load, and the
// rooms with their owners; a room whose owner left the registry is marked gone.
func TestStatus(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	a, b := join(t, r.URL(), "a"), join(t, r.URL(), "b")
	a.mu.Lock()
	a.load = Load{Allocations: 7, Sessions: 3, CPU: 0.25}
	a.mu.Unlock()
	ctx := context.Background()
	for i, room := range []string{"demo", "talk", "zoo"} {
		n := []*node{a, a, b}[i]
		if rt, err := n.Claim(ctx, room); err != nil || !rt.Here {
			t.Fatalf("%s's claim of %s: %+v %v", n.Name(), room, rt, err)
		}
	}
	a.publish("demo", "talk")
	b.publish("zoo")
	var st Status
	eventually(t, 2*testTTL, "the status shows a's load", func() bool {
		var err error
		if st, err = ReadStatus(ctx, r.URL()); err != nil {
			t.Fatal(err)
		}
		return len(st.Nodes) == 2 && st.Nodes[0].Allocations == 7
	})
	if got := names(st.Nodes); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("nodes %v, want a and b", got)
	}
	want := []RoomInfo{{Room: "demo", Owner: "a"}, {Room: "talk", Owner: "a"}, {Room: "zoo", Owner: "b"}}
	if len(st.Rooms) != len(want) {
		t.Fatalf("rooms %+v, want %+v", st.Rooms, want)
	}
	for i, room := range st.Rooms {
		if room.Room != want[i].Room || room.Owner != want[i].Owner || room.TTLMS <= 0 || room.TTLMS > testTTL.Milliseconds() {
			t.Errorf("room %d: %+v, want %+v with a TTL within %v", i, room, want[i], testTTL)
		}
	}
	// A room whose owner has left the registry: its claim outlives the record by at most a
	// refresh, as both are renewed together.
	st.Nodes = st.Nodes[:1]
	var out strings.Builder
	if err := st.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"a     serving  198.51.100.1:3478  http://a.example:8080  7            3             25%  2",
		"zoo   b (gone: free when the claim expires)"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("the table lacks %q:\n%s", line, out.String())
		}
	}
	r.Stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := ReadStatus(ctx, r.URL()); err == nil || !strings.Contains(err.Error(), "reading the nodes from redis://") {
		t.Errorf("status with Redis down: %v, want an error naming Redis", err)
	}
}
