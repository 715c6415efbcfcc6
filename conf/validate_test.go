package conf

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCertificates(t *testing.T) {
	dir := t.TempDir()
	cert, key := testkit.WriteCert(t, dir, "a")
	otherCert, otherKey := testkit.WriteCert(t, dir, "b")
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not PEM\n"))
	missing := filepath.Join(dir, "missing.pem")

	// withCert returns a [[listen]] table with cert and key, 5 lines long.
	withCert := func(proto, addr, cert, key string) string {
		return fmt.Sprintf("[[listen]]\nproto = %q\naddr = %q\ncert = '%s'\nkey = '%s'\n", proto, addr, cert, key)
	}
	// listener returns a file with a udp listener on lines 1-3 and, on
	// lines 4-8, a listener of proto with cert and key.
	listener := func(proto, addr, cert, key string) string {
		return "[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n" + withCert(proto, addr, cert, key)
	}
	tests := []struct {
		name  string
		input string
		want  string // "" = valid; else must appear in the error
	}{
		{"tls with a valid pair", listener("tls", "0.0.0.0:5349", cert, key), ""},
		{"dtls with a valid pair", listener("dtls", "0.0.0.0:5349", cert, key), ""},
		{"tls and dtls on one address", listener("tls", "0.0.0.0:5349", cert, key) + withCert("dtls", "0.0.0.0:5349", cert, key), ""},
		{"missing cert file", listener("tls", "0.0.0.0:5349", missing, key), "bad.toml:7: listen[1].cert: open " + missing},
		{"missing key file", listener("tls", "0.0.0.0:5349", cert, missing), "bad.toml:8: listen[1].key: open " + missing},
		{"cert file not PEM", listener("tls", "0.0.0.0:5349", garbage, key), "bad.toml:7: listen[1].cert: " + garbage + ": no PEM CERTIFICATE block"},
		{"key file as cert", listener("tls", "0.0.0.0:5349", key, key), "bad.toml:7: listen[1].cert: "},
		{"key file not PEM", listener("dtls", "0.0.0.0:5349", cert, garbage), "bad.toml:8: listen[1].key: key " + garbage + " for cert " + cert},
		{"key of another cert", listener("tls", "0.0.0.0:5349", cert, otherKey), "bad.toml:8: listen[1].key: "},
		{"another pair is fine", listener("tls", "0.0.0.0:5349", otherCert, otherKey), ""},
		{"dtls shares udp with udp", listener("dtls", "0.0.0.0:3478", cert, key), "bad.toml:6: listen[1].addr: udp 0.0.0.0:3478 is already used by listen[0] (udp)"},
		{"tls does not share with udp", listener("tls", "0.0.0.0:3478", cert, key), ""},
		{
			"tls shares tcp with tcp",
			"[[listen]]\nproto = \"tcp\"\naddr = \"[::]:443\"\n" + withCert("tls", "[::]:443", cert, key),
			"bad.toml:6: listen[1].addr: tcp [::]:443 is already used by listen[0] (tcp)",
		},
		{
			"admin on a tls listener",
			listener("tls", "[::1]:443", cert, key) + "[admin]\nlisten = \"[::1]:443\"\ntoken = \"t\"\n",
			"bad.toml:10: admin.listen: tcp [::1]:443 is already used by listen[1] (tls)",
		},
		{
			"sfu on a tls listener",
			listener("tls", "[::1]:443", cert, key) + "[sfu]\nhttp = \"[::1]:443\"\n",
			"bad.toml:10: sfu.http: tcp [::1]:443 is already used by listen[1] (tls)",
		},
		{"sfu beside a dtls listener", listener("dtls", "[::1]:443", cert, key) + "[sfu]\nhttp = \"[::1]:443\"\n", ""},
		{"metrics beside a dtls listener", listener("dtls", "[::1]:443", cert, key) + "[metrics]\nlisten = \"[::1]:443\"\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("bad.toml", []byte(tt.input))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("%v\nin\n%s", err, tt.input)
			case tt.want == "":
				if l := c.Listen[len(c.Listen)-1]; l.Cert == "" || l.Key == "" {
					t.Errorf("last listener lost cert or key: %+v", l)
				}
			case err == nil:
				t.Fatalf("no error for\n%s", tt.input)
			case !strings.Contains(err.Error(), tt.want):
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, tt.want)
			}
		})
	}
}

// TestValidateHandBuilt checks that Validate works on a Config that was
// not parsed (no file, no line index), as other packages' tests build.
func TestValidateHandBuilt(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	c.Relay.MinPort = 3000
	c.Relay.MaxPort = 4000
	// min_port is written in default.toml, so the error has its line.
	want := fmt.Sprintf("(default):%d: relay.min_port: port range 3000-4000 overlaps listen[0] port 3478", defaultLine(t, "min_port ="))
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %q", err, want)
	}

	c = Default()
	c.Admin.Listen = "[::]:9642"
	want = fmt.Sprintf("(default):%d: admin.token: must be set when admin.listen ([::]:9642) is not a loopback address", defaultLine(t, "token ="))
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %q", err, want)
	}
	c.Admin.Token = "t"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() with a token = %v", err)
	}

	c = Default()
	c.SFU.HTTP = ""
	want = fmt.Sprintf("(default):%d: sfu.http: must be set when sfu.enabled is true", defaultLine(t, "http ="))
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %q", err, want)
	}
	c.SFU.Enabled = false
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() with the SFU off and no address = %v", err)
	}

	c = Default()
	c.Metrics.Listen = c.SFU.HTTP
	want = fmt.Sprintf("(default):%d: sfu.http: tcp 0.0.0.0:8080 is already used by metrics.listen", defaultLine(t, "http ="))
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %q", err, want)
	}

	bare := &Config{}
	if err := bare.Validate(); err == nil || err.Error() != "server.realm: must not be empty" {
		t.Errorf("(&Config{}).Validate() = %v, want server.realm: must not be empty", err)
	}
}

func TestSlogLevel(t *testing.T) {
	tests := []struct {
		level string
		want  slog.Level
	}{
		{"debug", slog.LevelDebug},
		{"info", slog.LevelInfo},
		{"warn", slog.LevelWarn},
		{"error", slog.LevelError},
		{"", slog.LevelInfo}, // rejected by Validate
	}
	for _, tt := range tests {
		if got := (Log{Level: tt.level}).SlogLevel(); got != tt.want {
			t.Errorf("Log{Level: %q}.SlogLevel() = %v, want %v", tt.level, got, tt.want)
		}
	}
	// Validate accepts each of them.
	c := Default()
	for _, level := range []string{"debug", "info", "warn", "error"} {
		c.Log.Level = level
		if err := c.Validate(); err != nil {
			t.Errorf("level %q: %v", level, err)
		}
	}
}

// TestTokenSecretNotInError: a rejected token secret is not quoted, since errors end up in logs.
func TestTokenSecretNotInError(t *testing.T) {
	_, err := Parse("bad.toml", []byte("[sfu]\ntoken_secret = \"hunter2-hunter2\"\n"))
	if err == nil || !strings.Contains(err.Error(), "sfu.token_secret") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error = %v, want one about sfu.token_secret without the secret", err)
	}
}

// TestCheckValueBool: a TOML boolean fills a Go bool and nothing else.
func TestCheckValueBool(t *testing.T) {
	c := &Config{file: "x.toml"}
	boolType, stringType := reflect.TypeFor[bool](), reflect.TypeFor[string]()
	tests := []struct {
		v    any
		t    reflect.Type
		want string // "" = accepted
	}{
		{true, boolType, ""},
		{false, boolType, ""},
		{"true", boolType, "x.toml: k: expected a boolean, found a string"},
		{int64(0), boolType, "x.toml: k: expected a boolean, found an integer"},
		{[]any{true}, boolType, "x.toml: k: expected a boolean, found an array"},
		{true, stringType, "x.toml: k: expected a string, found a boolean"},
		{[]any{true, false}, reflect.TypeFor[[]bool](), ""},
		{[]any{true, "no"}, reflect.TypeFor[[]bool](), "x.toml: k[1]: expected a boolean, found a string"},
	}
	for _, tt := range tests {
		err := c.checkValue("k", tt.v, tt.t)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("checkValue(%#v, %v) = %v", tt.v, tt.t, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("checkValue(%#v, %v) = %v, want %q", tt.v, tt.t, err, tt.want)
		}
	}
}

// TestCluster: [cluster] keys are checked for their form, each error at its line.
func TestCluster(t *testing.T) {
	parseCases(t, []parseCase{
		{"[cluster]\nredis = \"redis://10.0.0.5:6379/0\"\nnode = \"a-1.x_y\"\n", ""},
		{"[cluster]\nredis = \"rediss://:secret@redis.example.com:6380\"\nadvertise_turn = \"203.0.113.10:3478\"\nadvertise_sfu = \"https://sfu1.example.com\"\nttl = \"30s\"\n", ""},
		{"[cluster]\nredis = \"http://10.0.0.5:6379\"\n", "bad.toml:2: cluster.redis: \"http://10.0.0.5:6379\": want a redis:// or rediss:// URL"},
		{"[cluster]\nredis = \"redis://:hunter2@\"\n", "bad.toml:2: cluster.redis: \"redis://:xxxxx@\" has no host"},
		{"[cluster]\nnode = \"a b\"\n", "bad.toml:2: cluster.node: \"a b\": want 1 to 64 letters"},
		{"[cluster]\nadvertise_turn = \"0.0.0.0:3478\"\n", "bad.toml:2: cluster.advertise_turn: \"0.0.0.0:3478\": want a specific address"},
		{"[cluster]\nadvertise_turn = \"turn.example.com:3478\"\n", "bad.toml:2: cluster.advertise_turn: \"turn.example.com:3478\" is not IP:port"},
		{"[cluster]\nadvertise_sfu = \"https://sfu1.example.com/whip\"\n", "bad.toml:2: cluster.advertise_sfu: \"https://sfu1.example.com/whip\": want an http or https URL without path"},
		{"[cluster]\nttl = \"1s\"\n", "bad.toml:2: cluster.ttl: must be between 3s and 10m0s, not 1s"},
	})
	if strings.Contains(fmt.Sprint(Parse("bad.toml", []byte("[cluster]\nredis = \"ftp://:hunter2@h\"\n"))), "hunter2") {
		t.Error("an error quotes the Redis password")
	}
}

// TestUsersRedis: auth.users_redis is off, "cluster" (only with a cluster.redis) or a Redis
// URL; users_redis_max_stale is positive. Each error names the file, line and key, and
// none shows the Redis password.
func TestUsersRedis(t *testing.T) {
	parseCases(t, []parseCase{
		{"[auth]\nusers_redis = \"\"\n", ""},
		{"[auth]\nusers_redis = \"redis://127.0.0.1:6379/2\"\n", ""},
		{"[auth]\nusers_redis = \"rediss://:pw@redis.example.com:6380\"\nusers_redis_max_stale = \"1h\"\n", ""},
		{"[auth]\nusers_redis = \"cluster\"\n[cluster]\nredis = \"redis://10.0.0.5:6379/0\"\n", ""},
		{"[auth]\nusers_redis = \"cluster\"\n", "bad.toml:2: auth.users_redis: \"cluster\" shares [cluster] redis, which is empty"},
		{"[auth]\n\nusers_redis = \"10.0.0.5:6379\"\n", "bad.toml:3: auth.users_redis: not a URL (parse \"...\": first path segment in URL cannot contain colon): want a redis:// or rediss:// URL"},
		{"[auth]\nusers_redis = \"http://h:6379\"\n", "bad.toml:2: auth.users_redis: \"http://h:6379\": want a redis:// or rediss:// URL"},
		{"[auth]\nusers_redis = \"redis://:hunter2@\"\n", "bad.toml:2: auth.users_redis: \"redis://:xxxxx@\" has no host"},
		{"[auth]\nusers_redis = \"redis://h:1\"\nusers_redis_max_stale = \"0s\"\n", "bad.toml:3: auth.users_redis_max_stale: must be positive, not 0s"},
		{"[auth]\nusers_redis_max_stale = \"ten minutes\"\n", "bad.toml:2: auth.users_redis_max_stale"},
	})
	if strings.Contains(fmt.Sprint(Parse("bad.toml", []byte("[auth]\nusers_redis = \"ftp://:hunter2@h\"\n"))), "hunter2") {
		t.Error("an error quotes the Redis password")
	}
	cfg, err := Parse("ok.toml", []byte("[auth]\nusers_redis = \"cluster\"\n[cluster]\nredis = \"redis://10.0.0.5:6379/0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Auth.UsersRedisURL(cfg.Cluster); got != "redis://10.0.0.5:6379/0" {
		t.Errorf("UsersRedisURL = %q, want the cluster's", got)
	}
}

// parseCase is a config and the error Parse must give for it ("" = valid).
type parseCase struct{ input, want string }

func parseCases(t *testing.T, tests []parseCase) {
	t.Helper()
	for _, tt := range tests {
		_, err := Parse("bad.toml", []byte(tt.input))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.input, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: error %v, want %q", tt.input, err, tt.want)
		}
	}
}
