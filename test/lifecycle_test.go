package test

import (
	"crypto/sha256"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/testkit"
)

// signal sends sig to the server.
func (f *ferry) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := f.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitLog waits until the log holds n lines containing text.
func (f *ferry) waitLog(t *testing.T, text string, n int) {
	t.Helper()
	waitFor(t, text+" in the log", func() bool { return strings.Count(f.stderr.String(), text) >= n })
}

// exit waits for the process to end within timeout and returns its exit status.
func (f *ferry) exit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-f.exited:
		return f.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("ferry still running %s after it was told to stop", timeout)
		return -1
	}
}

// drainingServer starts a server, makes an allocation that relays continuously, and sends
// SIGTERM; it returns once the server says it is draining.
func drainingServer(t *testing.T, s *setup, port int) (*ferry, *rawClient, *flow) {
	t.Helper()
	s.allowPeers = []string{"127.0.0.1/32"}
	f := startFerry(t, s.toml())
	c := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	relayWithChannel(t, c)
	fl := startFlow(t, c, 0x4000)
	fl.moving(t, "before the drain", 10)
	f.signal(t, syscall.SIGTERM)
	f.waitLog(t, `msg="draining: no new allocations"`, 1)
	return f, c, fl
}

// TestDrain: after SIGTERM new allocations are refused (508), /readyz says 503, the existing
// allocation keeps relaying and refreshing, and the process exits 0 once it ends.
func TestDrain(t *testing.T) {
	s, port := newSetup(t, 10)
	s.drainTimeout = "20s"
	// A second client learns a nonce before the drain, to ask authenticated afterwards.
	f, c, fl := drainingServer(t, s, port)
	start := time.Now()

	if body, status := httpGet(t, "http://"+s.metricsAddr+"/readyz"); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %d %s, want 503", status, body)
	}
	if body, status := httpGet(t, "http://"+s.metricsAddr+"/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while draining: %d %s, want 200", status, body)
	}
	scrape(t, s.metricsAddr).want(t, "ferry_draining", 1)

	other := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	mustCode(t, "unauthenticated Allocate while draining",
		other.roundTrip(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP), stun.CodeInsufficientCapacity)
	mustCode(t, "Allocate while draining", c.signedRoundTrip(stun.MethodAllocate, testPass, requestedTransportUDP),
		stun.CodeInsufficientCapacity)

	fl.moving(t, "during the drain", 20)
	mustSucceed(t, "Refresh while draining", c.request(stun.MethodRefresh, lifetime(10*time.Minute)))
	fl.moving(t, "after the Refresh", 10)
	fl.end()

	mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
	if code := f.exit(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status %d after the last allocation ended, want 0", code)
	}
	if elapsed := time.Since(start); elapsed > 15*time.Second {
		t.Errorf("exit took %s: the drain waited for its timeout although nothing was left", elapsed)
	}
}

// TestDrainAlternate: with alternate_server, Allocate while draining gets 300 Try Alternate
// with that ALTERNATE-SERVER.
func TestDrainAlternate(t *testing.T) {
	s, port := newSetup(t, 10)
	s.drainTimeout = "20s"
	s.alternateServer = "192.0.2.44:3478"
	drainingServer(t, s, port)
	other := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	m := other.roundTrip(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP)
	mustCode(t, "Allocate while draining", m, stun.CodeTryAlternate)
	var alt stun.AlternateServer
	if err := alt.GetFrom(m); err != nil || alt.IP.String() != "192.0.2.44" || alt.Port != 3478 {
		t.Fatalf("ALTERNATE-SERVER %v:%d (%v), want 192.0.2.44:3478", alt.IP, alt.Port, err)
	}
}

// TestDrainTimeout: an allocation that does not end is cut at drain_timeout; exit 0.
func TestDrainTimeout(t *testing.T) {
	s, port := newSetup(t, 10)
	s.drainTimeout = "1s"
	f, _, _ := drainingServer(t, s, port)
	if code := f.exit(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status %d after the drain timeout, want 0", code)
	}
	f.waitLog(t, "drain timeout", 1)
}

// TestSecondSignal: a second SIGTERM during the drain stops at once, exit status 1.
func TestSecondSignal(t *testing.T) {
	s, port := newSetup(t, 10)
	s.drainTimeout = "60s"
	f, _, _ := drainingServer(t, s, port)
	f.signal(t, syscall.SIGTERM)
	if code := f.exit(t, 10*time.Second); code != 1 {
		t.Fatalf("exit status %d after a second signal, want 1", code)
	}
}

// tlsFingerprint is the hash of the certificate a TLS listener presents now.
func tlsFingerprint(t *testing.T, addr string) [32]byte {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only the certificate is looked at
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	defer conn.Close()
	return sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
}

// restClient is a client with a TURN REST credential of secret.
func restClient(t *testing.T, port int, secret string) *rawClient {
	username, password := auth.RESTCredential(secret, "rest-user", time.Hour, time.Now())
	return dialRaw(t, "udp", addrString("127.0.0.1", port), username, password)
}

// TestReload: an allocation relays continuously across three reloads (users added and
// removed, a secret rotated, a certificate replaced) and one refused invalid reload.
func TestReload(t *testing.T) {
	s, port := newSetup(t, 20)
	s.allowPeers = []string{"127.0.0.1/32"}
	certDir := t.TempDir()
	cert, key := testkit.WriteCert(t, certDir, "ferry")
	tlsAddr := addrString("127.0.0.1", freePort(t, "127.0.0.1"))
	s.listeners = append(s.listeners, listenSpec{proto: "tls", addr: tlsAddr, cert: cert, key: key})
	addUser(t, s.usersFile, "bob", "bob-password")
	f := startFerry(t, s.toml())
	configPath := filepath.Join(f.dir, "ferry.toml")
	addr := addrString("127.0.0.1", port)

	alice := dialRaw(t, "udp", addr, testUser, testPass)
	relayed, _ := relayWithChannel(t, alice)
	fl := startFlow(t, alice, 0x4000)
	fl.moving(t, "before the reloads", 10)
	sessionID := sessionsJSON(t, s)[0].ID
	bob := dialRaw(t, "udp", addr, "bob", "bob-password")
	bob.allocate()
	restClient(t, port, testSecret).allocate()
	certBefore := tlsFingerprint(t, tlsAddr)

	// 1. SIGHUP: carol added, bob removed. bob can neither refresh nor allocate again.
	addUser(t, s.usersFile, "carol", "carol-password")
	if _, stderr, err := runFerry(t, "", "user", "del", "bob", "--users-file", s.usersFile); err != nil {
		t.Fatalf("ferry user del bob: %v\n%s", err, stderr)
	}
	f.signal(t, syscall.SIGHUP)
	f.waitLog(t, `msg="config reloaded"`, 1)
	if !strings.Contains(f.stderr.String(), "users_added=[carol] users_removed=[bob]") {
		t.Errorf("the reload log does not name the users added and removed:\n%s", f.stderr.String())
	}
	fl.moving(t, "after reload 1", 10)
	mustCode(t, "Refresh by a removed user", bob.request(stun.MethodRefresh, lifetime(time.Minute)), stun.CodeUnauthorized)
	mustCode(t, "Allocate by a removed user",
		dialRaw(t, "udp", addr, "bob", "bob-password").request(stun.MethodAllocate, requestedTransportUDP), stun.CodeUnauthorized)
	dialRaw(t, "udp", addr, "carol", "carol-password").allocate()

	// 2. `ferry reload`: the REST secret rotated.
	s.secrets = []string{"rest-secret-2"}
	writeConfig(t, configPath, s.toml())
	stdout, stderr, err := runFerry(t, "", "reload", "--admin", s.adminAddr)
	if err != nil || !strings.Contains(stdout, "auth.secrets") {
		t.Fatalf("ferry reload: %v, stdout %q, stderr %q; want success naming auth.secrets", err, stdout, stderr)
	}
	fl.moving(t, "after reload 2", 10)
	mustCode(t, "Allocate with a credential of the removed secret",
		restClient(t, port, testSecret).request(stun.MethodAllocate, requestedTransportUDP), stun.CodeUnauthorized)
	restClient(t, port, "rest-secret-2").allocate()

	// 3. SIGHUP: the certificate replaced at the same path.
	testkit.WriteCert(t, certDir, "ferry")
	f.signal(t, syscall.SIGHUP)
	f.waitLog(t, `msg="config reloaded"`, 3)
	if tlsFingerprint(t, tlsAddr) == certBefore {
		t.Fatal("the TLS listener still presents the old certificate after the reload")
	}
	if !strings.Contains(f.stderr.String(), "listen[2].certificate") {
		t.Errorf("the reload log does not name the replaced certificate")
	}
	fl.moving(t, "after reload 3", 10)

	// An invalid config is refused whole; the old one goes on serving.
	writeConfig(t, configPath, strings.Replace(s.toml(), `realm = "ferry.test"`, "realm = 5", 1))
	_, stderr, err = runFerry(t, "", "reload", "--admin", s.adminAddr)
	if exitCode(err) != 1 || !strings.Contains(stderr, "ferry.toml:2: server.realm") {
		t.Fatalf("invalid reload: %v, stderr %q; want exit 1 naming ferry.toml:2: server.realm", err, stderr)
	}
	f.waitLog(t, "reload refused", 1)
	fl.moving(t, "after the refused reload", 10)
	dialRaw(t, "udp", addr, "carol", "carol-password").allocate()

	after := sessionsJSON(t, s)
	if after[0].ID != sessionID || after[0].Relay != relayed.String() {
		t.Fatalf("alice's session is now %+v, want id %s with relay %s", after[0], sessionID, relayed)
	}
	m := scrape(t, s.metricsAddr)
	m.want(t, `ferry_config_reloads_total{result="ok"}`, 3)
	m.want(t, `ferry_config_reloads_total{result="error"}`, 1)
}

func writeConfig(t *testing.T, path, config string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
}
