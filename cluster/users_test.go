package cluster

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/testkit"
)

const testRealm = "north.gov"

// follow starts a node's copy of the users of testRealm at url; it stops with the test.
func follow(t *testing.T, url string, resync, maxStale time.Duration) *Users {
	t.Helper()
	u, err := StartUsers(UsersConfig{URL: url, Realm: testRealm, MaxStale: maxStale, resync: resync,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}

func openStore(t *testing.T, url string) *UserStore {
	t.Helper()
	s, err := OpenUserStore(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func user(name, realm, password string) auth.User {
	return auth.User{Name: name, Realm: realm, HA1: hex.EncodeToString(auth.HA1(name, realm, password))}
}

// hasKey polls until u holds name with the key of password ("" = until it does not hold name).
func hasKey(t *testing.T, u *Users, timeout time.Duration, name, password string) {
	t.Helper()
	want := auth.HA1(name, testRealm, password)
	eventually(t, timeout, name+" with password "+password, func() bool {
		k, ok := u.Key(name)
		if password == "" {
			return !ok
		}
		return ok && bytes.Equal(k, want)
	})
}

// TestUsersPublished: a user added, changed or deleted through the store is seen by every
// node at once (pub/sub: the full re-read is an hour away here); users of other realms and
// malformed entries are left out; a change written without Ferry (as coturn's turnadmin
// writes it) is seen within the re-read period.
func TestUsersPublished(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	a, b := follow(t, r.URL(), time.Hour, time.Hour), follow(t, r.URL(), time.Hour, time.Hour)
	s := openStore(t, r.URL())
	ctx := context.Background()

	if replaced, err := s.Set(ctx, user("gorst", testRealm, "hero")); err != nil || replaced {
		t.Fatalf("Set = %v, %v; want added", replaced, err)
	}
	if _, err := s.Set(ctx, user("gorst", "south.gov", "other")); err != nil {
		t.Fatal(err)
	}
	hasKey(t, a, 2*time.Second, "gorst", "hero")
	hasKey(t, b, 2*time.Second, "gorst", "hero")
	// The published change came after the subscription's confirmation: each node has seen
	// both, and read every user once, at its start (not again for the confirmation).
	for _, u := range []*Users{a, b} {
		if n := u.meters.syncs.Get(); n != 1 {
			t.Errorf("full reads after the start and one change: %d, want 1", n)
		}
	}
	if v, _ := r.Do("GET", "turn/realm/north.gov/user/gorst/key"); v != "7da2270ccfa49786e0115366d3a3d14d" {
		t.Errorf("stored key %q, want coturn's example value", v)
	}

	if replaced, err := s.Set(ctx, user("gorst", testRealm, "villain")); err != nil || !replaced {
		t.Fatalf("Set again = %v, %v; want replaced", replaced, err)
	}
	hasKey(t, a, 2*time.Second, "gorst", "villain")
	hasKey(t, b, 2*time.Second, "gorst", "villain")

	users, err := s.List(ctx)
	if err != nil || !slices.Equal(users, []auth.User{{Name: "gorst", Realm: "north.gov"}, {Name: "gorst", Realm: "south.gov"}}) {
		t.Errorf("List = %v, %v", users, err)
	}
	if err := s.Delete(ctx, "gorst"); err != nil {
		t.Fatal(err)
	}
	hasKey(t, a, 2*time.Second, "gorst", "")
	hasKey(t, b, 2*time.Second, "gorst", "")
	if users, err := s.List(ctx); err != nil || len(users) != 0 {
		t.Errorf("List after delete = %v, %v", users, err)
	}
	if err := s.Delete(ctx, "gorst"); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("Delete of a missing user = %v, want ErrNoSuchUser", err)
	}
	if _, err := s.Set(ctx, auth.User{Name: "a:b", Realm: testRealm, HA1: hex.EncodeToString(make([]byte, 16))}); err == nil {
		t.Error("Set took a name with ':'")
	}

	// Written by hand, with no message: the next full read (every 200 ms here) finds it.
	c := follow(t, r.URL(), 200*time.Millisecond, time.Hour)
	mustDo(t, r, "SET", "turn/realm/north.gov/user/turnadmin/key", hex.EncodeToString(auth.HA1("turnadmin", testRealm, "pw")))
	mustDo(t, r, "SET", "turn/realm/north.gov/user/broken/key", "not-hex")
	hasKey(t, c, 2*time.Second, "turnadmin", "pw")
	if _, ok := c.Key("broken"); ok {
		t.Error("a key that is not 32 hex digits was taken")
	}
	if _, ok := a.Key("turnadmin"); ok {
		t.Error("a node with an hour between full reads saw an unpublished write at once")
	}
}

// TestUsersOutage: while Redis is down the users last read keep working, the outage is
// counted once; when it answers again the node reads from it again (a restarted Redis
// without persistence has lost the user, which the node then drops) and follows changes;
// past max_stale without Redis the users are dropped and that is counted.
func TestUsersOutage(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	set := metrics.NewSet()
	meters := NewUserMeters(set)
	u, err := StartUsers(UsersConfig{URL: r.URL(), Realm: testRealm, MaxStale: time.Hour, Meters: meters,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	s := openStore(t, r.URL())
	if _, err := s.Set(context.Background(), user("gorst", testRealm, "hero")); err != nil {
		t.Fatal(err)
	}
	hasKey(t, u, 2*time.Second, "gorst", "hero")

	r.Stop()
	eventually(t, 5*time.Second, "the outage is counted", func() bool { return meters.outages.Get() == 1 && !u.up.Load() })
	// Failed full reads (each retry is a failed subscription, then a failed read) keep the key.
	eventually(t, 10*time.Second, "retries", func() bool { return meters.errors.Get() >= 3 })
	hasKey(t, u, 0, "gorst", "hero")
	r.Start()
	eventually(t, 5*time.Second, "Redis answers again", func() bool { return u.up.Load() })
	hasKey(t, u, 2*time.Second, "gorst", "") // the restarted Redis has no users
	if _, err := s.Set(context.Background(), user("gorst", testRealm, "again")); err != nil {
		t.Fatal(err)
	}
	hasKey(t, u, 2*time.Second, "gorst", "again")
	if n := meters.outages.Get(); n != 1 {
		t.Errorf("outages = %d, want 1", n)
	}

	short := follow(t, r.URL(), time.Hour, 500*time.Millisecond)
	hasKey(t, short, 0, "gorst", "again") // read at its start, its subscription confirmed
	r.Stop()
	hasKey(t, short, 5*time.Second, "gorst", "")
	if n := short.meters.expired.Get(); n != 1 {
		t.Errorf("expired = %d, want 1", n)
	}
}

func mustDo(t *testing.T, r *testkit.Redis, args ...string) {
	t.Helper()
	if _, err := r.Do(args...); err != nil {
		t.Fatal(err)
	}
}

func TestParseUserKey(t *testing.T) {
	for _, tt := range []struct{ key, realm, name string }{
		{"turn/realm/north.gov/user/gorst/key", "north.gov", "gorst"},
		{"turn/realm/r/user/a/user/b/key", "r", "a/user/b"},
		{"turn/realm//user/gorst/key", "", ""},
		{"turn/realm/r/user//key", "", ""},
		{"turn/realm/r/secret", "", ""},
		{"ferry:node:a", "", ""},
	} {
		realm, name, ok := parseUserKey(tt.key)
		if realm != tt.realm || name != tt.name || ok != (tt.name != "") {
			t.Errorf("parseUserKey(%q) = %q, %q, %v", tt.key, realm, name, ok)
		}
	}
	if got := userPattern(`a*b?[c]\`); got != `turn/realm/a\*b\?\[c\]\\/user/*/key` {
		t.Errorf("userPattern = %q", got)
	}
}

// TestUsersStartWithoutRedis: a node that starts while Redis is down serves no Redis users,
// and follows them (published changes included) once Redis answers; a node that has been
// through many empty waits (its full re-read every 100 ms) still gets published changes.
func TestUsersStartWithoutRedis(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	r.Stop()
	u := follow(t, r.URL(), 100*time.Millisecond, time.Hour)
	if _, ok := u.Key("gorst"); ok || u.up.Load() {
		t.Fatal("a user, or Redis up, with Redis down")
	}
	r.Start()
	eventually(t, 5*time.Second, "Redis answers", func() bool { return u.up.Load() })
	eventually(t, 5*time.Second, "several full reads", func() bool { return u.meters.syncs.Get() >= 5 })
	if _, err := openStore(t, r.URL()).Set(context.Background(), user("gorst", testRealm, "hero")); err != nil {
		t.Fatal(err)
	}
	hasKey(t, u, 2*time.Second, "gorst", "hero")
	eventually(t, 2*time.Second, "the change came as a message", func() bool { return u.meters.updates.Get() == 1 })
}
