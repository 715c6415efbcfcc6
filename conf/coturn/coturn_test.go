package coturn

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/conf"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

func TestParse(t *testing.T) {
	in := "# comment\n  # indented comment\n\nlistening-port=3478\nrealm example.org\n" +
		"user = alice:pw with spaces\ncipher-list=\"A:B\"  \nfingerprint\n\tno-tls\r\nstatic-auth-secret=a=b#c\n"
	got, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Option{
		{4, "listening-port", "3478"},
		{5, "realm", "example.org"},
		{6, "user", "alice:pw with spaces"},
		{7, "cipher-list", "A:B"},
		{8, "fingerprint", ""},
		{9, "no-tls", ""},
		{10, "static-auth-secret", "a=b#c"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Parse:\n got %v\nwant %v", got, want)
	}
	if _, err := Parse([]byte("realm=" + strings.Repeat("x", 2000) + "\n")); err == nil {
		t.Fatal("a line longer than turnserver reads was accepted")
	}
}

func TestBoolValue(t *testing.T) {
	for _, v := range []string{"", "1", "yes", "true", "on", "t", "Y"} {
		if b, ok := boolValue(v); !b || !ok {
			t.Errorf("%q: %v %v, want true", v, b, ok)
		}
	}
	for _, v := range []string{"0", "no", "false", "off", "f", "N"} {
		if b, ok := boolValue(v); b || !ok {
			t.Errorf("%q: %v %v, want false", v, b, ok)
		}
	}
	if _, ok := boolValue("maybe"); ok {
		t.Error(`"maybe" is a boolean`)
	}
}

// TestRangeCIDRs: coturn's "first-last" ranges become the fewest CIDRs that cover them
// exactly.
func TestRangeCIDRs(t *testing.T) {
	cases := []struct{ in, want string }{
		{"10.0.0.0-10.255.255.255", "10.0.0.0/8"},
		{"0.0.0.0-255.255.255.255", "0.0.0.0/0"},
		{"83.166.64.0-83.166.95.255", "83.166.64.0/19"},
		{"10.0.0.1-10.0.0.6", "10.0.0.1 10.0.0.2/31 10.0.0.4/31 10.0.0.6"},
		{"192.168.1.5-192.168.1.5", "192.168.1.5"},
		{"240.0.0.0-255.255.255.255", "240.0.0.0/4"},
		{"fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fc00::/7"},
		{"::ffff:0.0.0.0-::ffff:255.255.255.255", "::ffff:0.0.0.0/96"},
		{"2001:db8::1-2001:db8::2", "2001:db8::1 2001:db8::2"},
	}
	for _, tc := range cases {
		tr := &translator{res: &Result{}}
		got, ok := tr.peerRange(Option{Line: 1, Name: "denied-peer-ip", Value: tc.in})
		if !ok || strings.Join(got, " ") != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"10.0.0.9-10.0.0.1", "10.0.0.1-::1", "x-y", "10.0.0.256"} {
		tr := &translator{res: &Result{}}
		if got, ok := tr.peerRange(Option{Line: 7, Name: "denied-peer-ip", Value: bad}); ok || len(tr.res.Untranslated) != 1 {
			t.Errorf("%s: %v %v accepted", bad, got, ok)
		}
	}
}

func translateFile(t *testing.T, name string, realm string) *Result {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Translate(opts, Settings{Source: name, Dir: "testdata", Realm: realm,
		UsersFile: "/etc/ferry/users.toml", SecretsFile: "/etc/ferry/rest-secrets"})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if _, err := conf.Parse(name, res.TOML); err != nil {
		t.Fatalf("%s: the translated config does not parse: %v\n%s", name, err, res.TOML)
	}
	return res
}

// render is the golden form of a translation: the TOML, the users, the secrets and the
// issues.
func render(res *Result) string {
	var b strings.Builder
	b.Write(res.TOML)
	b.WriteString("\n# --- users\n")
	for _, u := range res.Users {
		fmt.Fprintf(&b, "# %s %s %s\n", u.Name, u.Realm, u.HA1)
	}
	fmt.Fprintf(&b, "# --- %d secrets\n", len(res.Secrets))
	b.WriteString("# --- not translated\n")
	for _, i := range res.Untranslated {
		fmt.Fprintf(&b, "# %s\n", strings.ReplaceAll(i.String(), "\n", "\n#"))
	}
	b.WriteString("# --- notes\n")
	for _, i := range res.Notes {
		fmt.Fprintf(&b, "# %s\n", i)
	}
	return b.String()
}

// TestTranslateGolden translates each coturn config in testdata, Debian's among them, into
// a config conf.Parse accepts, and compares the whole result with its .golden file
// (go test ./conf/coturn -update rewrites them).
func TestTranslateGolden(t *testing.T) {
	names, _ := filepath.Glob("testdata/*.conf")
	if len(names) < 4 {
		t.Fatalf("testdata has %d coturn configs", len(names))
	}
	for _, path := range names {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			got := render(translateFile(t, name, ""))
			golden := strings.TrimSuffix(path, ".conf") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./conf/coturn -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (go test ./conf/coturn -update rewrites it):\n%s", name, golden, got)
			}
		})
	}
}

// TestDebianConfig: Debian's /etc/turnserver.conf (coturn 4.6.1) has four options set, all
// of which Ferry does already; the result is Ferry's default listeners and relay.
func TestDebianConfig(t *testing.T) {
	res := translateFile(t, "debian-4.6.1-turnserver.conf", "")
	if len(res.Untranslated) != 0 {
		t.Errorf("untranslated: %v", res.Untranslated)
	}
	var lines []int
	for _, n := range res.Notes {
		if n.Line > 0 {
			lines = append(lines, n.Line)
		}
	}
	if !slices.Equal(lines, []int{529, 779, 787, 794}) {
		t.Errorf("notes on lines %v, want the four options set (529, 779, 787, 794)", lines)
	}
	cfg, err := conf.Parse("debian", res.TOML)
	if err != nil {
		t.Fatal(err)
	}
	def := conf.Default()
	if cfg.Server.Realm != def.Server.Realm || len(cfg.Listen) != 2 || cfg.Listen[0].Addr != "0.0.0.0:3478" ||
		cfg.Relay.MinPort != def.Relay.MinPort || cfg.Relay.MaxPort != def.Relay.MaxPort {
		t.Errorf("config %+v", cfg)
	}
}

// TestStaticUsers: user=name:password becomes the HA1 key in the file's realm, name:0xKEY
// keeps the key, the last line of a name wins, and a bad key is reported at its line.
func TestStaticUsers(t *testing.T) {
	res := translateFile(t, "static-users.conf", "")
	want := []auth.User{
		{Name: "alice", Realm: "office.example.org",
			HA1: hex.EncodeToString(auth.HA1("alice", "office.example.org", "correct horse battery staple"))},
		{Name: "bob", Realm: "office.example.org", HA1: "c5e5a7b5cd3a4f07b0a4b9a8d9f1e2c3"},
	}
	if !slices.Equal(res.Users, want) {
		t.Fatalf("users %v, want %v", res.Users, want)
	}
	untranslated := map[int]string{}
	for _, i := range res.Untranslated {
		untranslated[i.Line] = i.Option
	}
	for line, option := range map[int]string{8: "relay-ip", 14: "user", 21: "alternate-server", 23: "mobility",
		24: "max-bps", 32: "turn-only-but-misspelt"} {
		if untranslated[line] != option {
			t.Errorf("line %d (%s) is not reported untranslated: %v", line, option, res.Untranslated)
		}
	}
	cfg, _ := conf.Parse("static", res.TOML)
	if cfg.Auth.UsersFile != "/etc/ferry/users.toml" || cfg.Server.Software != "" ||
		cfg.Limits.MaxAllocationLifetime.Duration != conf.MaxAllocationLifetime || cfg.Metrics.Listen != "0.0.0.0:9641" ||
		cfg.Relay.BindIP != "192.0.2.10" || cfg.Relay.BindIP6 != "2001:db8::10" || len(cfg.Listen) != 4 {
		t.Errorf("config %+v", cfg)
	}
}

// TestKeysNeedTheirRealm: a 0x key is made for coturn's realm; without realm= it cannot be
// used, unless --realm names it.
func TestKeysNeedTheirRealm(t *testing.T) {
	opts := []Option{{1, "lt-cred-mech", ""}, {2, "user", "bob:0x0b3c1a20de00b4a4e4e74a3f9b4a5dcb"}, {3, "user", "eve:pw"}}
	res, err := Translate(opts, Settings{UsersFile: "/u"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Users) != 1 || res.Users[0].Name != "eve" || len(res.Untranslated) != 1 || res.Untranslated[0].Line != 2 {
		t.Fatalf("without a realm: users %v, untranslated %v", res.Users, res.Untranslated)
	}
	res, err = Translate(opts, Settings{UsersFile: "/u", Realm: "r.example"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Users) != 2 || res.Users[0].Realm != "r.example" || len(res.Untranslated) != 0 {
		t.Fatalf("with --realm: users %v, untranslated %v", res.Users, res.Untranslated)
	}
}

// TestRESTAndTLS: static-auth-secret goes to the secrets file, cert and pkey (relative to
// the coturn file) give TLS and DTLS listeners, external-ip public/private sets both relay
// addresses, and the denied ranges become CIDRs.
func TestRESTAndTLS(t *testing.T) {
	res := translateFile(t, "rest-api.conf", "")
	if !slices.Equal(res.Secrets, []string{"Zm9yIHRoZSB0ZXN0cyBvbmx5LCBuZXZlciByZWFs"}) {
		t.Errorf("secrets %v", res.Secrets)
	}
	if strings.Contains(string(res.TOML), res.Secrets[0]) {
		t.Error("the secret is in the config, not only in the secrets file")
	}
	cfg, _ := conf.Parse("rest", res.TOML)
	var protos []string
	for _, l := range cfg.Listen {
		protos = append(protos, l.Proto+" "+l.Addr)
		if (l.Proto == "tls" || l.Proto == "dtls") && l.Cert != filepath.Join("testdata", "certs", "fullchain.pem") {
			t.Errorf("%s cert %q", l.Proto, l.Cert)
		}
	}
	if strings.Join(protos, ", ") != "udp 0.0.0.0:3478, tcp 0.0.0.0:3478, tls 0.0.0.0:5349, dtls 0.0.0.0:5349" {
		t.Errorf("listeners %v", protos)
	}
	if cfg.Relay.PublicIP != "203.0.113.10" || cfg.Relay.BindIP != "10.0.0.5" || cfg.Relay.MinPort != 49160 ||
		cfg.Limits.AllocationsPerUser != 12 || cfg.Limits.AllocationsTotal != 1000 ||
		!slices.Contains(cfg.Relay.DenyPeers, "172.16.0.0/12") || !slices.Equal(cfg.Relay.AllowPeers, []string{"10.0.0.5"}) {
		t.Errorf("config %+v", cfg)
	}
}

func TestMinAboveMax(t *testing.T) {
	_, err := Translate([]Option{{1, "min-port", "60000"}, {2, "max-port", "50000"}}, Settings{})
	if err == nil || !strings.Contains(err.Error(), "min-port (line 1) is above max-port (line 2)") {
		t.Fatalf("err %v", err)
	}
}

// TestUserdbExport runs the commands the userdb note prints against a database that coturn's
// turnadmin made: the users file they write holds turnadmin's keys with their realms, and
// the secrets file the database's secret.
func TestUserdbExport(t *testing.T) {
	for _, tool := range []string{"turnadmin", "sqlite3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED LOUDLY: %s is not installed (apt-get install -y coturn sqlite3)", tool)
		}
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "turndb")
	turnadmin := func(args ...string) string {
		out, err := exec.Command("turnadmin", append(args, "-b", db)...).CombinedOutput()
		if err != nil {
			t.Fatalf("turnadmin %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	turnadmin("-a", "-u", "alice", "-r", "one.example", "-p", "alice pw")
	turnadmin("-a", "-u", "bob", "-r", "two.example", "-p", "bob-pw")
	turnadmin("-s", "db-secret", "-r", "one.example")
	res, err := Translate([]Option{{1, "userdb", db}}, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Untranslated) != 1 {
		t.Fatalf("untranslated %v", res.Untranslated)
	}
	users, secrets := filepath.Join(dir, "users.toml"), filepath.Join(dir, "rest-secrets")
	var ran int
	for _, line := range strings.Split(res.Untranslated[0].Text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "sqlite3 ") {
			continue
		}
		line = strings.NewReplacer("USERS_FILE", users, "SECRETS_FILE", secrets).Replace(line)
		if out, err := exec.Command("sh", "-c", line).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		ran++
	}
	if ran != 2 {
		t.Fatalf("%d sqlite3 commands in %q", ran, res.Untranslated[0].Text)
	}
	got, err := auth.ReadUsers(users)
	if err != nil {
		t.Fatal(err)
	}
	key := func(user, realm, pw string) string {
		out, err := exec.Command("turnadmin", "-k", "-u", user, "-r", realm, "-p", pw).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Fields(string(out)) {
			if k, ok := strings.CutPrefix(f, "0x"); ok {
				return k
			}
		}
		t.Fatalf("turnadmin -k printed no key: %s", out)
		return ""
	}
	want := []auth.User{
		{Name: "alice", Realm: "one.example", HA1: key("alice", "one.example", "alice pw")},
		{Name: "bob", Realm: "two.example", HA1: key("bob", "two.example", "bob-pw")},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("exported users %v, want %v", got, want)
	}
	if s, err := auth.ReadSecrets(secrets); err != nil || !slices.Equal(s, []string{"db-secret"}) {
		t.Fatalf("exported secrets %v, %v", s, err)
	}
}
