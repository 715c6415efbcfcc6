package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// usersBound is how soon a change made with `ferry user` must reach every node: it is
// published, so it takes a round trip, not the 10 s of the full re-read.
const usersBound = 2 * time.Second

// allocateAs makes one Allocate as user with password on a fresh connection: 0 when it
// succeeds (the allocation is then released), else the error code.
func allocateAs(t *testing.T, server, user, password string) stun.ErrorCode {
	t.Helper()
	c := dialRaw(t, "udp", server, user, password)
	m := c.request(stun.MethodAllocate, requestedTransportUDP)
	if m.Type.Class != stun.ClassSuccessResponse {
		return errorCode(m)
	}
	mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
	return 0
}

// allocateWithin polls Allocates as user until they get want (0: success) on every server,
// failing after usersBound; it returns how long the slowest server took.
func allocateWithin(t *testing.T, servers []string, user, password string, want stun.ErrorCode) time.Duration {
	t.Helper()
	start := time.Now()
	for _, server := range servers {
		for {
			got := allocateAs(t, server, user, password)
			if got == want {
				break
			}
			if time.Since(start) > usersBound {
				t.Fatalf("Allocate as %s/%s at %s: %v, not %v within %v", user, password, server, got, want, usersBound)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return time.Since(start)
}

func userCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, stderr, err := runFerry(t, stdin, append([]string{"user"}, args...)...)
	if err != nil {
		t.Fatalf("ferry user %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// TestUsersRedis: two Ferry processes share their users through one redis-server
// (auth.users_redis). A user added with `ferry user add --users-redis` on "one node"
// allocates on both without a reload; a password change and a delete reach both within
// usersBound; a users-file user wins over the same name in Redis. With Redis stopped, a
// user read before still allocates and the outage is counted; with Redis back (empty: it
// keeps nothing), the nodes follow it again.
func TestUsersRedis(t *testing.T) {
	redis := testkit.StartRedis(t, "127.0.0.1")
	var servers, metricsAddrs []string
	for range 2 {
		s, port := newSetup(t, 4)
		s.usersRedis = redis.URL()
		s.unauthRate = 0 // the polls below get many 401s
		startFerry(t, s.toml())
		servers = append(servers, addrString("127.0.0.1", port))
		metricsAddrs = append(metricsAddrs, s.metricsAddr)
	}
	add := func(name, password string) string {
		return userCLI(t, password+"\n", "add", name, "--realm", testRealm, "--users-redis", redis.URL(), "--password-stdin")
	}

	if out := add("bob", "bob-1"); !strings.Contains(out, "user bob (realm ferry.test) added to Redis redis://") {
		t.Errorf("user add printed %q", out)
	}
	t.Logf("added: both nodes allocate after %v", allocateWithin(t, servers, "bob", "bob-1", 0))
	if out := userCLI(t, "", "list", "--users-redis", redis.URL()); out != "bob\tferry.test\n" {
		t.Errorf("user list printed %q", out)
	}
	// "cluster" names the config's [cluster] redis, as auth.users_redis = "cluster" does.
	clusterConf := filepath.Join(t.TempDir(), "cluster.toml")
	if err := os.WriteFile(clusterConf, []byte("[cluster]\nredis = \""+redis.URL()+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := userCLI(t, "", "list", "--users-redis", "cluster", "--config", clusterConf); out != "bob\tferry.test\n" {
		t.Errorf("user list --users-redis cluster printed %q", out)
	}
	if _, stderr, err := runFerry(t, "", "user", "list", "--users-redis", "cluster"); err == nil ||
		!strings.Contains(stderr, "[cluster] redis is not set") {
		t.Errorf("user list --users-redis cluster without a cluster: %v, %q; want an error naming [cluster] redis", err, stderr)
	}
	// An empty value (FERRY_USERS_REDIS= in an environment) is no Redis: the users file.
	fileConf := filepath.Join(t.TempDir(), "file.toml")
	if err := os.WriteFile(fileConf, []byte("[auth]\nusers_file = \""+filepath.Join(t.TempDir(), "users.toml")+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runFerry(t, "", "user", "list", "--users-redis", "", "--config", fileConf); err != nil ||
		!strings.Contains(stderr, "no users file at") {
		t.Errorf("user list --users-redis \"\": %v, %q; want the (absent) users file listed", err, stderr)
	}

	if out := add("bob", "bob-2"); !strings.Contains(out, "password changed in Redis") {
		t.Errorf("user add (again) printed %q", out)
	}
	t.Logf("password changed: both nodes refuse the old one after %v", allocateWithin(t, servers, "bob", "bob-1", stun.CodeUnauthorized))
	allocateWithin(t, servers, "bob", "bob-2", 0)

	// The users file names alice: her file password works, the Redis one does not.
	add(testUser, "redis-password")
	allocateWithin(t, servers, testUser, testPass, 0)
	for _, server := range servers {
		if got := allocateAs(t, server, testUser, "redis-password"); got != stun.CodeUnauthorized {
			t.Errorf("alice with her Redis password at %s: %v, want 401 (the users file wins)", server, got)
		}
	}

	userCLI(t, "", "del", "bob", "--users-redis", redis.URL())
	t.Logf("deleted: both nodes refuse after %v", allocateWithin(t, servers, "bob", "bob-2", stun.CodeUnauthorized))

	add("carol", "carol-1")
	allocateWithin(t, servers, "carol", "carol-1", 0)
	redis.Stop()
	for _, m := range metricsAddrs {
		waitSeries(t, m, "ferry_auth_redis_up", 5*time.Second, func(v float64) bool { return v == 0 })
		waitSeries(t, m, "ferry_auth_redis_outages_total", 5*time.Second, func(v float64) bool { return v == 1 })
		// A retry is a failed subscription, then a failed full read: the key must outlive both.
		waitSeries(t, m, "ferry_auth_redis_errors_total", 10*time.Second, func(v float64) bool { return v >= 3 })
	}
	for _, server := range servers {
		if got := allocateAs(t, server, "carol", "carol-1"); got != 0 {
			t.Errorf("carol at %s with Redis down: %v, want the key read before to work", server, got)
		}
	}
	redis.Start()
	for _, m := range metricsAddrs {
		waitSeries(t, m, "ferry_auth_redis_up", 5*time.Second, func(v float64) bool { return v == 1 })
	}
	// The restarted Redis keeps nothing: carol is gone, dave is new.
	allocateWithin(t, servers, "carol", "carol-1", stun.CodeUnauthorized)
	add("dave", "dave-1")
	allocateWithin(t, servers, "dave", "dave-1", 0)
}

// waitSeries polls the /metrics at addr until cond holds for series.
func waitSeries(t *testing.T, addr, series string, timeout time.Duration, cond func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := scrape(t, addr)[series]
		if cond(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s at %s = %v, not as wanted within %v", series, addr, v, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUsersRedisTurnadmin: coturn's turnadmin and `ferry user` share one Redis user
// database. A user turnadmin adds allocates on Ferry; one `ferry user add` writes is in
// turnadmin's list.
func TestUsersRedisTurnadmin(t *testing.T) {
	needTool(t, "turnadmin")
	redis := testkit.StartRedis(t, "127.0.0.1")
	host, port, _ := net.SplitHostPort(redis.Addr)
	userdb := fmt.Sprintf("ip=%s port=%s dbname=0 connect_timeout=5", host, port)
	turnadmin := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("turnadmin", append(args, "-N", userdb)...).CombinedOutput()
		if err != nil {
			t.Fatalf("turnadmin %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	turnadmin("-a", "-u", "gorst", "-r", testRealm, "-p", "hero")

	s, ferryPort := newSetup(t, 4)
	s.usersRedis = redis.URL()
	startFerry(t, s.toml())
	if got := allocateAs(t, addrString("127.0.0.1", ferryPort), "gorst", "hero"); got != 0 {
		t.Errorf("Allocate as the user turnadmin added: %v", got)
	}
	userCLI(t, "eve-1\n", "add", "eve", "--realm", testRealm, "--users-redis", redis.URL(), "--password-stdin")
	if out := turnadmin("-l"); !strings.Contains(out, "eve") || !strings.Contains(out, "gorst") {
		t.Errorf("turnadmin -l does not list both users:\n%s", out)
	}
}
