package test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/auth"
)

// TestUserCommandsReport: user add says "password changed" for an existing user, user list
// says when the file does not exist, and --json lists names and realms without keys.
func TestUserCommandsReport(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users.toml")
	out, stderr, err := runFerry(t, "", "user", "list", "--users-file", file)
	if err != nil || out != "" || !strings.Contains(stderr, "no users file at "+file) {
		t.Fatalf("user list of a missing file: %v, stdout %q, stderr %q", err, out, stderr)
	}
	if out, _, err := runFerry(t, "", "user", "list", "--json", "--users-file", file); err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("user list --json of a missing file: %v, %q", err, out)
	}
	out, _, err = runFerry(t, "pw1\n", "user", "add", "alice", "--users-file", file, "--realm", "r1", "--password-stdin")
	if err != nil || !strings.Contains(out, "user alice (realm r1) added to") {
		t.Fatalf("user add: %v, %q", err, out)
	}
	out, _, err = runFerry(t, "pw2\n", "user", "add", "alice", "--users-file", file, "--realm", "r1", "--password-stdin")
	if err != nil || !strings.Contains(out, "user alice (realm r1) password changed in") {
		t.Fatalf("user add of an existing user: %v, %q; want \"password changed\"", err, out)
	}
	// The same name in another realm is another entry.
	out, _, err = runFerry(t, "pw3\n", "user", "add", "alice", "--users-file", file, "--realm", "r2", "--password-stdin")
	if err != nil || !strings.Contains(out, "added to") {
		t.Fatalf("user add in another realm: %v, %q", err, out)
	}
	out, _, err = runFerry(t, "", "user", "list", "--json", "--users-file", file)
	var list []map[string]string
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 ||
		list[0]["name"] != "alice" || list[0]["realm"] != "r1" || list[1]["realm"] != "r2" || len(list[0]) != 2 {
		t.Fatalf("user list --json: %v, %q", err, out)
	}
	ha1 := hex.EncodeToString(auth.HA1("alice", "r1", "pw2"))
	if strings.Contains(out, ha1) {
		t.Fatal("user list --json prints the HA1 keys")
	}
}

// TestConfigImport: a coturn config with static users, a REST secret and loopback listeners
// imports into a Ferry config that config check accepts, and the server it starts takes
// the coturn users' passwords and keys and the secret's credentials.
func TestConfigImport(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t, "127.0.0.1")
	min, max := relayRange(4)
	bobKey := hex.EncodeToString(auth.HA1("bob", "import.test", "bob's password"))
	coturnConf := fmt.Sprintf(`# coturn, as it ran before
listening-ip=127.0.0.1
listening-port=%d
relay-ip=127.0.0.1
min-port=%d
max-port=%d
realm=import.test
lt-cred-mech
user=alice:alice-pw
user=bob:0x%s
static-auth-secret=imported-secret
no-tls
no-dtls
stale-nonce=600
prometheus
prometheus-address=127.0.0.1
prometheus-port=%d
`, port, min, max, bobKey, freePort(t, "127.0.0.1"))
	src := filepath.Join(dir, "turnserver.conf")
	if err := os.WriteFile(src, []byte(coturnConf), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "ferry", "ferry.toml")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runFerry(t, "", "config", "import", src, "--out", out)
	if err != nil {
		t.Fatalf("config import: %v\n%s%s", err, stdout, stderr)
	}
	for _, want := range []string{"wrote 2 users (realm import.test)", "wrote 1 TURN REST secrets",
		src + ":14: stale-nonce:", "'ferry config check " + out + "' passes"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("config import output lacks %q:\n%s", want, stdout)
		}
	}
	if _, _, err := runFerry(t, "", "config", "import", src, "--out", out); exitCode(err) != 1 {
		t.Errorf("a second import over the same --out: exit %d, want 1 (no --force)", exitCode(err))
	}
	if _, stderr, err := runFerry(t, "", "config", "import", src, "--out", out, "--force"); err != nil {
		t.Errorf("import --force: %v %s", err, stderr)
	}

	// The admin API would take a fixed port: move it out of the way.
	config, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// A stop need not wait for allocations left by the test.
	full := strings.Replace(string(config), "realm = \"import.test\"", "realm = \"import.test\"\ndrain_timeout = \"0s\"", 1)
	full += fmt.Sprintf("\n[admin]\nlisten = %q\n",
		addrString("127.0.0.1", freePort(t, "127.0.0.1")))
	if err := os.WriteFile(out, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, err := runFerry(t, "", "config", "check", out); err != nil || !strings.Contains(stdout, "ok (2 listeners") {
		t.Fatalf("config check of the import: %v\n%s%s", err, stdout, stderr)
	}
	startFerry(t, full)
	addr := addrString("127.0.0.1", port)
	dialRaw(t, "udp", addr, "alice", "alice-pw").allocate()
	dialRaw(t, "tcp", addr, "bob", "bob's password").allocate()
	username, password := auth.RESTCredential("imported-secret", "carol", time.Hour, time.Now())
	dialRaw(t, "udp", addr, username, password).allocate()
	mustCode(t, "Allocate with a wrong password",
		dialRaw(t, "udp", addr, "alice", "wrong").request(stun.MethodAllocate, requestedTransportUDP), stun.CodeUnauthorized)
}

// TestDrainCommand: ferry drain refuses new allocations while the existing one relays,
// answers /readyz 503, leaves the process running when nothing is left, says the same when
// asked twice, and --cancel serves again; a stopping server's drain cannot be cancelled.
func TestDrainCommand(t *testing.T) {
	s, port := newSetup(t, 10)
	s.allowPeers = []string{"127.0.0.1/32"}
	s.adminToken = "drain-token"
	f := startFerry(t, s.toml())
	admin := []string{"--admin", s.adminAddr, "--token", s.adminToken}
	addr := addrString("127.0.0.1", port)
	c := dialRaw(t, "udp", addr, testUser, testPass)
	relayWithChannel(t, c)
	fl := startFlow(t, c, 0x4000)
	fl.moving(t, "before the drain", 10)

	out, stderr, err := runFerry(t, "", append([]string{"drain"}, admin...)...)
	if err != nil || !strings.Contains(out, "draining since") || !strings.Contains(out, "1 allocations") {
		t.Fatalf("ferry drain: %v, %q %q", err, out, stderr)
	}
	if _, status := httpGet(t, "http://"+s.metricsAddr+"/readyz"); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %d, want 503", status)
	}
	mustCode(t, "Allocate while draining", dialRaw(t, "udp", addr, testUser, testPass).
		roundTrip(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP), stun.CodeInsufficientCapacity)
	fl.moving(t, "during the drain", 10)
	again, _, err := runFerry(t, "", append([]string{"drain", "--json"}, admin...)...)
	var st struct {
		Draining    bool      `json:"draining"`
		Reason      string    `json:"reason"`
		Since       time.Time `json:"since"`
		Allocations int       `json:"allocations"`
	}
	if err != nil || json.Unmarshal([]byte(again), &st) != nil || !st.Draining || st.Reason != "admin" || st.Allocations != 1 {
		t.Fatalf("a second ferry drain --json: %v, %q", err, again)
	}

	// When the last allocation ends, the process goes on.
	fl.end()
	mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
	out, _, err = runFerry(t, "", append([]string{"drain", "--wait"}, admin...)...)
	if err != nil || !strings.Contains(out, "drained since") {
		t.Fatalf("ferry drain --wait: %v, %q", err, out)
	}
	select {
	case <-f.exited:
		t.Fatal("ferry exited after an admin drain")
	case <-time.After(300 * time.Millisecond):
	}

	out, _, err = runFerry(t, "", append([]string{"drain", "--cancel"}, admin...)...)
	if err != nil || !strings.Contains(out, "serving (not draining)") {
		t.Fatalf("ferry drain --cancel: %v, %q", err, out)
	}
	if _, status := httpGet(t, "http://"+s.metricsAddr+"/readyz"); status != http.StatusOK {
		t.Errorf("/readyz after the cancel: %d, want 200", status)
	}
	dialRaw(t, "udp", addr, testUser, testPass).allocate()
	if _, _, err := runFerry(t, "", "drain", "--admin", s.adminAddr, "--token", "wrong"); exitCode(err) != 1 {
		t.Errorf("ferry drain with a wrong token: exit %d, want 1", exitCode(err))
	}
	f.waitLog(t, "drain cancelled by the admin API", 1)
}

// TestReloadNeedsRestart: ferry reload exits 2, naming the keys, when the config changed
// keys that only a restart applies; what it could apply is applied.
func TestReloadNeedsRestart(t *testing.T) {
	s, _ := newSetup(t, 4)
	f := startFerry(t, s.toml())
	s.perUser = 3
	s.minPort++ // restart only
	writeConfig(t, filepath.Join(f.dir, "ferry.toml"), s.toml())
	out, stderr, err := runFerry(t, "", "reload", "--admin", s.adminAddr)
	if exitCode(err) != 2 || !strings.Contains(out, "limits.allocations_per_user") ||
		strings.TrimSpace(stderr) != "ferry: reload: not applied until a restart: relay.min_port" {
		t.Fatalf("reload with a restart-only change: exit %d, stdout %q, stderr %q; want 2", exitCode(err), out, stderr)
	}
	if _, _, err := runFerry(t, "", "reload", "--admin", s.adminAddr); exitCode(err) != 2 {
		t.Fatalf("a second reload: exit %d; the running relay.min_port still differs, want 2", exitCode(err))
	}
}

// TestHealthCommand: ferry health probes /healthz on the metrics endpoint named by --config
// or --addr, and fails when nothing answers; --ready fails while draining.
func TestHealthCommand(t *testing.T) {
	s, _ := newSetup(t, 4)
	f := startFerry(t, s.toml())
	config := filepath.Join(f.dir, "ferry.toml")
	if out, stderr, err := runFerry(t, "", "health", "--config", config); err != nil || !strings.Contains(out, "/healthz: ok") {
		t.Fatalf("health --config: %v, %q %q", err, out, stderr)
	}
	if out, _, err := runFerry(t, "", "health", "-q", "--addr", s.metricsAddr, "--ready"); err != nil || out != "" {
		t.Fatalf("health -q --ready: %v, %q", err, out)
	}
	if _, _, err := runFerry(t, "", "drain", "--admin", s.adminAddr); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runFerry(t, "", "health", "--ready", "--addr", s.metricsAddr); exitCode(err) != 1 || !strings.Contains(stderr, "503") {
		t.Fatalf("health --ready while draining: exit %d, %q", exitCode(err), stderr)
	}
	if _, _, err := runFerry(t, "", "health", "--addr", s.metricsAddr); err != nil {
		t.Fatalf("health while draining: %v (healthz stays 200)", err)
	}
	if _, stderr, err := runFerry(t, "", "health", "--addr", addrString("127.0.0.1", freePort(t, "127.0.0.1")), "--timeout", "2s"); exitCode(err) != 1 || !strings.Contains(stderr, "connection refused") {
		t.Fatalf("health of nothing: exit %d, %q", exitCode(err), stderr)
	}
}
