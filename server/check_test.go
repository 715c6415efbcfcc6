package server

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-rtc/ferry/conf"
)

// restartKeys are the keys the reload code leaves to a restart.
func restartKeys() []string {
	var keys []string
	for _, st := range settings {
		if st.restart {
			keys = append(keys, st.key)
		}
	}
	slices.Sort(keys)
	return keys
}

// documentedKeys are the dotted keys in text, with listen.proto and listen.addr as the one
// "listen" key the reload code compares.
func documentedKeys(text string) []string {
	var keys []string
	for _, k := range regexp.MustCompile(`\b[a-z0-9_]+\.[a-z0-9_]+\b`).FindAllString(text, -1) {
		if k == "listen.proto" || k == "listen.addr" {
			k = "listen"
		}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// between is the text of s from the first start to the next end after it.
func between(t *testing.T, s, start, end string) string {
	t.Helper()
	i := strings.Index(s, start)
	if i < 0 {
		t.Fatalf("%q not found", start)
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		t.Fatalf("%q not found after %q", end, start)
	}
	return s[:j]
}

// TestRestartKeysDocumented keeps the restart-only keys of default.toml's header and of the
// README's Configuration section in step with those the reload code does not apply.
func TestRestartKeysDocumented(t *testing.T) {
	want := restartKeys()
	def := between(t, string(conf.DefaultTOML()), "which need a restart:", ";")
	if got := documentedKeys(def); !slices.Equal(got, want) {
		t.Errorf("conf/default.toml's restart-only keys\n  %v\nthe reload code's\n  %v", got, want)
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	para := between(t, string(readme), "A reload applies every key except these", "See Operations")
	quoted := strings.Join(regexp.MustCompile("`[^`]*`").FindAllString(para, -1), " ")
	if got := documentedKeys(quoted); !slices.Equal(got, want) {
		t.Errorf("README's restart-only keys\n  %v\nthe reload code's\n  %v", got, want)
	}
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheck: Check fails on the files a config names as Start does, with the config's
// file:line:key, and sums up a config it accepts. (conf.Parse already loads certificates.)
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	users := writeFile(t, dir, "users.toml", "[[user]]\nname = \"bob\"\nrealm = \"r\"\nha1 = \"00112233445566778899aabbccddeeff\"\n")
	badUsers := writeFile(t, dir, "bad-users.toml", "[[users]]\nname = \"bob\"\n")
	secrets := writeFile(t, dir, "secrets", "# comment\ns1\ns2\n")
	base := "[relay]\nbind_ip = \"127.0.0.1\"\n"
	cases := []struct{ name, body, err string }{
		{"missing secrets file", base + "[auth]\nsecrets_file = \"" + dir + "/none\"\n", "cfg.toml:4: auth.secrets_file: auth: secrets file: open " + dir + "/none"},
		{"malformed users file", base + "[auth]\nusers_file = \"" + badUsers + "\"\n", "cfg.toml:4: auth.users_file: auth: users file " + badUsers + `: unknown key "users"`},
		{"peer rules", base + "deny_peers = [\"recommended\"]\n", ""},
		{"missing token key file", base + "[sfu]\ntoken_secret_file = \"" + dir + "/key\"\n", "cfg.toml:4: sfu.token_secret_file: auth: secrets file: open " + dir + "/key"},
	}
	for _, tc := range cases {
		cfg, err := conf.Parse("cfg.toml", []byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, err = Check(cfg)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %s...", tc.name, err, tc.err)
		}
		// Start fails the same way, before it opens anything.
		var serr error
		if _, lerr := load(cfg, slog.New(slog.DiscardHandler)); lerr != nil {
			serr = lerr
		} else if _, terr := TokenSecret(cfg); terr != nil {
			serr = terr
		}
		if serr == nil || serr.Error() != err.Error() {
			t.Errorf("%s: Start's loading says %v, Check %v", tc.name, serr, err)
		}
	}

	cfg, err := conf.Parse("cfg.toml", []byte(base+"[auth]\nusers_file = \""+users+"\"\nsecrets_file = \""+secrets+"\"\nsecrets = [\"s0\"]\n"+
		"[sfu]\nenabled = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Check(cfg)
	if err != nil || r.Users != 1 || r.Secrets != 3 || r.Listeners != 2 || r.RelayIPv4 != "127.0.0.1" || len(r.Notes) != 0 {
		t.Fatalf("Check: %+v, %v", r, err)
	}
	cfg, _ = conf.Parse("cfg.toml", []byte(base+"[auth]\nusers_file = \""+dir+"/later.toml\"\n"))
	if r, err = Check(cfg); err != nil || len(r.Notes) != 3 {
		t.Fatalf("a missing users file, no credentials and no SFU token key: %+v, %v; want three notes", r, err)
	}
	// Users in Redis are credentials even when none is there yet: no zero-config secret.
	cfg, _ = conf.Parse("cfg.toml", []byte(base+"[auth]\nusers_file = \"\"\nusers_redis = \"redis://127.0.0.1:1/0\"\n[sfu]\nenabled = false\n"))
	if r, err = Check(cfg); err != nil || len(r.Notes) != 0 {
		t.Fatalf("users in Redis: %+v, %v; want no note", r, err)
	}
}

func TestListenerList(t *testing.T) {
	cfg, err := conf.Parse("l.toml", []byte("[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n"+
		"[[listen]]\nproto = \"tcp\"\naddr = \"[::1]:3478\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	addrs := []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:3478"), netip.MustParseAddrPort("[::1]:3478")}
	if got := listenerList(cfg, addrs); got != "udp 0.0.0.0:3478, tcp [::1]:3478" {
		t.Fatalf("listenerList: %q", got)
	}
}
