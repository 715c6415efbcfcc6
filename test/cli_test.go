package test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-rtc/ferry/auth"
)

func TestCLIHelp(t *testing.T) {
	commands := [][]string{
		{}, {"serve"}, {"config"}, {"config", "default"}, {"config", "check"},
		{"user"}, {"user", "add"}, {"user", "del"}, {"user", "list"}, {"cred"}, {"version"},
		{"config", "import"}, {"token"}, {"sessions"}, {"sessions", "list"}, {"sessions", "kill"}, {"reload"},
		{"drain"}, {"health"}, {"completion"},
	}
	for _, cmd := range commands {
		out, stderr, err := runFerry(t, "", append(cmd, "--help")...)
		if err != nil || !strings.Contains(out, "USAGE") {
			t.Errorf("ferry %s --help: %v\n%s%s", strings.Join(cmd, " "), err, out, stderr)
		}
	}
	if out, _, err := runFerry(t, "", "version"); err != nil || !strings.HasPrefix(out, "ferry ") {
		t.Errorf("ferry version: %q, %v", out, err)
	}
}

// TestConfigDefaultAndCheck: the printed default is a valid config, and check reports the
// first error of a bad file with file, line and key, exit status 1.
func TestConfigDefaultAndCheck(t *testing.T) {
	dir := t.TempDir()
	def, _, err := runFerry(t, "", "config", "default")
	if err != nil || !strings.Contains(def, "[relay]") {
		t.Fatalf("config default: %v", err)
	}
	malformedUsers := filepath.Join(dir, "users.toml")
	if err := os.WriteFile(malformedUsers, []byte("[[user]]\nname = \"bob\"\nrealm = \"r\"\nha1 = \"not hex\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "default.toml")
	if err := os.WriteFile(path, []byte(def), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, stderr, err := runFerry(t, "", "config", "check", path); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("config check of the default: %v\n%s", err, stderr)
	}

	cases := []struct{ name, body, want string }{
		{"unknown key", "[server]\nrealm = \"r\"\n[relay]\nbind_ipp = \"1.2.3.4\"\n", "bad.toml:4: relay.bind_ipp"},
		{"syntax", "[server]\nrealm = \"r\n", "bad.toml:2:"},
		{"ports upside down", "[relay]\nmin_port = 60000\nmax_port = 50000\n", "bad.toml:2: relay.min_port"},
		{"bad cidr", "[relay]\nallow_peers = [\"10.0.0.0/33\"]\n", "bad.toml:2: relay.allow_peers"},
		{"missing cert", "[[listen]]\nproto = \"tls\"\naddr = \"127.0.0.1:5349\"\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\n", "bad.toml:4: listen[0].cert"},
		// Files the config names are loaded as serve loads them.
		{"missing secrets file", "[auth]\nsecrets_file = \"/nonexistent/rest-secrets\"\n", "bad.toml:2: auth.secrets_file: auth: secrets file: open /nonexistent/rest-secrets"},
		{"malformed users file", "[auth]\nusers_file = \"" + malformedUsers + "\"\n", "bad.toml:2: auth.users_file: auth: users file " + malformedUsers + ": entry 1"},
		{"unreadable users file", "[auth]\nusers_file = \"" + dir + "\"\n", "bad.toml:2: auth.users_file: auth: read users file " + dir},
	}
	for _, tc := range cases {
		bad := filepath.Join(dir, "bad.toml")
		if err := os.WriteFile(bad, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := runFerry(t, "", "config", "check", bad)
		if code := exitCode(err); code != 1 || !strings.Contains(stderr, tc.want) || len(lines(stderr)) != 1 {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line containing %q", tc.name, code, stderr, tc.want)
		}
		// serve refuses the same file with the same message.
		_, serveErr, err := runFerry(t, "", "serve", "--config", bad)
		if exitCode(err) != 1 || !strings.Contains(serveErr, tc.want) {
			t.Errorf("%s: serve exit %d, stderr %q", tc.name, exitCode(err), serveErr)
		}
		if serveLines := lines(serveErr); len(serveLines) == 0 || serveLines[len(serveLines)-1] != strings.TrimSpace(stderr) {
			t.Errorf("%s: check says %q, serve %q", tc.name, stderr, serveErr)
		}
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestServeBindError: a listener address that cannot be bound stops start-up with one line
// naming the config line and key.
func TestServeBindError(t *testing.T) {
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s, _ := newSetup(t, 4)
	s.listeners = []listenSpec{{proto: "udp", addr: busy.LocalAddr().String()}}
	config := s.toml()
	path := filepath.Join(t.TempDir(), "ferry.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runFerry(t, "", "serve", "--config", path)
	line := 1 + strings.Count(config[:strings.Index(config, "\naddr = ")+1], "\n")
	want := fmt.Sprintf("%s:%d: listen[0].addr:", path, line)
	if exitCode(err) != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "address already in use") {
		t.Fatalf("exit %d, stderr %q; want exit 1 and %q ... address already in use", exitCode(err), stderr, want)
	}
}

func TestUserCommands(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sub", "users.toml")
	out, stderr, err := runFerry(t, "", "user", "add", "alice", "--users-file", file, "--realm", "r1")
	if err != nil || !strings.Contains(out, "password: ") {
		t.Fatalf("user add with a generated password: %v\n%s%s", err, out, stderr)
	}
	generated := strings.TrimSpace(out[strings.Index(out, "password: ")+len("password: "):])
	if _, stderr, err := runFerry(t, "s3cret\n", "user", "add", "bob", "--users-file", file, "--realm", "r1", "--password-stdin"); err != nil {
		t.Fatalf("user add --password-stdin: %v\n%s", err, stderr)
	}
	info, err := os.Stat(file)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	content, _ := os.ReadFile(file)
	if strings.Contains(string(content), "s3cret") || strings.Contains(string(content), generated) {
		t.Fatalf("the users file holds a plain password:\n%s", content)
	}
	out, _, err = runFerry(t, "", "user", "list", "--users-file", file)
	if err != nil || strings.Join(lines(out), "|") != "alice\tr1|bob\tr1" {
		t.Fatalf("user list: %q, %v", out, err)
	}
	if _, _, err := runFerry(t, "", "user", "del", "alice", "--users-file", file); err != nil {
		t.Fatalf("user del: %v", err)
	}
	if _, stderr, err := runFerry(t, "", "user", "del", "alice", "--users-file", file); exitCode(err) != 1 || !strings.Contains(stderr, "no such user") {
		t.Fatalf("deleting a missing user: exit %d, %q", exitCode(err), stderr)
	}
	out, _, _ = runFerry(t, "", "user", "list", "--users-file", file)
	if strings.Join(lines(out), "|") != "bob\tr1" {
		t.Fatalf("user list after del: %q", out)
	}
}

// TestCred checks the REST API response form and that the password is the HMAC of the
// username under the secret.
func TestCred(t *testing.T) {
	out, stderr, err := runFerry(t, "", "cred", "--secret", "topsecret", "--user", "bob", "--ttl", "1h", "--uri", "turn:example.net:3478?transport=udp")
	if err != nil {
		t.Fatalf("cred: %v\n%s", err, stderr)
	}
	var resp struct {
		Username string   `json:"username"`
		Password string   `json:"password"`
		TTL      int      `json:"ttl"`
		URIs     []string `json:"uris"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("cred output is not JSON: %v\n%s", err, out)
	}
	expiry, user, ok := strings.Cut(resp.Username, ":")
	exp, _ := strconv.ParseInt(expiry, 10, 64)
	if !ok || user != "bob" || exp < time.Now().Add(59*time.Minute).Unix() || exp > time.Now().Add(61*time.Minute).Unix() {
		t.Fatalf("username %q: want EXPIRY:bob with EXPIRY an hour from now", resp.Username)
	}
	mac := hmac.New(sha1.New, []byte("topsecret"))
	mac.Write([]byte(resp.Username))
	if resp.Password != base64.StdEncoding.EncodeToString(mac.Sum(nil)) || resp.TTL != 3600 ||
		len(resp.URIs) != 1 || resp.URIs[0] != "turn:example.net:3478?transport=udp" {
		t.Fatalf("cred response %+v", resp)
	}

	// With --config, the first secret signs and the URIs come from the listeners.
	s, port := newSetup(t, 2)
	s.secrets = []string{"first", "second"}
	path := filepath.Join(t.TempDir(), "ferry.toml")
	if err := os.WriteFile(path, []byte(s.toml()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err = runFerry(t, "", "cred", "--config", path)
	if err != nil {
		t.Fatalf("cred --config: %v\n%s", err, stderr)
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatal(err)
	}
	mac = hmac.New(sha1.New, []byte("first"))
	mac.Write([]byte(resp.Username))
	wantURIs := []string{
		"turn:127.0.0.1:" + strconv.Itoa(port) + "?transport=udp",
		"turn:127.0.0.1:" + strconv.Itoa(port) + "?transport=tcp",
	}
	if resp.Password != base64.StdEncoding.EncodeToString(mac.Sum(nil)) || strings.Join(resp.URIs, " ") != strings.Join(wantURIs, " ") {
		t.Fatalf("cred --config: %+v, want URIs %v", resp, wantURIs)
	}

	// No secret anywhere: an error that says where to put one.
	if _, stderr, err := runFerry(t, "", "cred"); exitCode(err) != 1 || !strings.Contains(stderr, "auth.secrets") {
		t.Fatalf("cred without a secret: exit %d, %q", exitCode(err), stderr)
	}
}

// TestTokenCommand: `ferry token` prints one token that auth.ParseToken accepts with the
// rights and lifetime asked for, takes its secret and default lifetime from [sfu], and
// refuses to mint without a room, a right or a secret.
func TestTokenCommand(t *testing.T) {
	const secret = "0123456789abcdef0123"
	parse := func(t *testing.T, out, secret string) auth.Claims {
		t.Helper()
		if got := lines(out); len(got) != 1 || out != got[0]+"\n" {
			t.Fatalf("output %q: want one line", out)
		}
		c, err := auth.ParseToken(secret, strings.TrimSpace(out), time.Now())
		if err != nil {
			t.Fatalf("ParseToken: %v", err)
		}
		return c
	}
	checkExpiry := func(t *testing.T, c auth.Claims, ttl time.Duration) {
		t.Helper()
		if left := time.Until(c.Expiry); left < ttl-time.Minute || left > ttl {
			t.Errorf("expiry %v is %v from now, want about %v", c.Expiry, left, ttl)
		}
	}

	out, stderr, err := runFerry(t, "", "token", "--room", "demo", "--publish", "--secret", secret, "--ttl", "1h")
	if err != nil {
		t.Fatalf("token: %v\n%s", err, stderr)
	}
	c := parse(t, out, secret)
	if c.Room != "demo" || !c.Publish || c.Subscribe {
		t.Errorf("claims %+v, want room demo, publish only", c)
	}
	checkExpiry(t, c, time.Hour)
	if _, err := auth.ParseToken("another secret, 20+ch", strings.TrimSpace(out), time.Now()); err == nil {
		t.Error("the token verifies under another secret")
	}

	// From a config: its token_secret signs and its token_ttl is the default lifetime.
	dir := t.TempDir()
	withSecret := filepath.Join(dir, "secret.toml")
	if err := os.WriteFile(withSecret, []byte("[sfu]\ntoken_secret = \""+secret+"\"\ntoken_ttl = \"2h\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err = runFerry(t, "", "token", "--config", withSecret, "--room", "r 1", "--subscribe", "--publish")
	if err != nil {
		t.Fatalf("token --config: %v\n%s", err, stderr)
	}
	c = parse(t, out, secret)
	if c.Room != "r 1" || !c.Publish || !c.Subscribe {
		t.Errorf("claims %+v, want room \"r 1\", publish and subscribe", c)
	}
	checkExpiry(t, c, 2*time.Hour)

	noSecret := filepath.Join(dir, "nosecret.toml")
	if err := os.WriteFile(noSecret, []byte("[sfu]\ntoken_ttl = \"2h\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string // in the one line of stderr
	}{
		{"no room", []string{"--publish", "--secret", secret}, "--room is required"},
		{"empty room", []string{"--room", "", "--subscribe", "--secret", secret}, "--room is required"},
		{"no right", []string{"--room", "demo", "--secret", secret}, "--publish, --subscribe or both"},
		{"config without a secret", []string{"--room", "demo", "--publish", "--config", noSecret}, noSecret + ": sfu.token_secret: no token secret"},
		{"default config without a secret", []string{"--room", "demo", "--subscribe"}, "sfu.token_secret: no token secret: set [sfu] token_secret or token_secret_file, or pass --secret"},
		{"secret and config", []string{"--room", "demo", "--publish", "--secret", secret, "--config", withSecret}, "use --secret or --config, not both"},
		{"short secret", []string{"--room", "demo", "--publish", "--secret", "short"}, "--secret must be at least 16 characters"},
		{"zero ttl", []string{"--room", "demo", "--publish", "--secret", secret, "--ttl", "0s"}, "--ttl must be positive"},
	}
	for _, tc := range cases {
		out, stderr, err := runFerry(t, "", append([]string{"token"}, tc.args...)...)
		if code := exitCode(err); code != 1 || out != "" || !strings.Contains(stderr, tc.want) || len(lines(stderr)) != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1, no output and one line containing %q", tc.name, code, out, stderr, tc.want)
		}
	}

	if out, stderr, err := runFerry(t, "", "token", "--help"); err != nil || !strings.Contains(out, "USAGE") {
		t.Errorf("token --help: %v\n%s%s", err, out, stderr)
	}
}
