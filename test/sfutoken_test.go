package test

import (
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSFUTokenSecretFile: sfu.token_secret_file keys the SFU's tokens, `ferry token
// --config` reads it too, a reload re-reads it (tokens of the old key are refused then),
// and a file that does not hold exactly one key is refused by a reload and by a start.
func TestSFUTokenSecretFile(t *testing.T) {
	s, _ := sfuSetup(t)
	s.tokenSecret = ""
	keyFile := filepath.Join(t.TempDir(), "sfu-token-secret")
	writeConfig(t, keyFile, "# the SFU's token key\nfirst-key-0123456789\n")
	f := startFerry(t, withTokenSecretFile(s.toml(), keyFile))
	path := filepath.Join(f.dir, "ferry.toml")
	room := "http://" + s.sfuAddr + "/api/rooms/r"
	first := mintToken(t, path)
	if status := httpDo(t, http.MethodGet, room, first, "", "").StatusCode; status != http.StatusOK {
		t.Fatalf("a token of ferry token --config: %d, want 200", status)
	}

	writeConfig(t, keyFile, "second-key-0123456789\n")
	f.signal(t, syscall.SIGHUP)
	f.waitLog(t, `msg="config reloaded"`, 1)
	if status := httpDo(t, http.MethodGet, room, first, "", "").StatusCode; status != http.StatusUnauthorized {
		t.Errorf("a token of the replaced key: %d, want 401", status)
	}
	second := mintToken(t, path)
	if status := httpDo(t, http.MethodGet, room, second, "", "").StatusCode; status != http.StatusOK {
		t.Errorf("a token of the new key: %d, want 200", status)
	}

	// A bad file is refused by a reload, which then changes nothing, and by a start.
	writeConfig(t, keyFile, "")
	f.signal(t, syscall.SIGHUP)
	f.waitLog(t, `msg="reload refused`, 1)
	if status := httpDo(t, http.MethodGet, room, second, "", "").StatusCode; status != http.StatusOK {
		t.Errorf("after a refused reload, a token of the key in effect: %d, want 200", status)
	}
	f.stop()
	for _, bad := range []struct{ name, content, want string }{
		{"two keys", "a-key-0123456789abc\nb-key-0123456789abc\n", "holds 2 keys, want exactly one"},
		{"a short key", "short\n", "is 5 characters long, at least 16 needed"},
	} {
		writeConfig(t, keyFile, bad.content)
		_, stderr, err := runFerry(t, "", "serve", "--config", path)
		if exitCode(err) != 1 || !strings.Contains(stderr, ": sfu.token_secret_file: ") || !strings.Contains(stderr, bad.want) {
			t.Errorf("%s: serve exit %d, stderr %q; want exit 1 naming sfu.token_secret_file: %s", bad.name, exitCode(err), stderr, bad.want)
		}
	}
}

// TestNoDemoTokensWithConfigFile: demo tokens belong to a try-out without a config file
// (TestZeroConfig): a server started from a file without a token key prints none, and
// says why nobody can use its SFU.
func TestNoDemoTokensWithConfigFile(t *testing.T) {
	s, _ := sfuSetup(t)
	s.tokenSecret = ""
	f := startFerry(t, s.toml())
	f.waitLog(t, "nobody can publish or watch", 1)
	if out := f.stdout.String(); strings.Contains(out, "pub=") || strings.Contains(out, "SFU tokens") {
		t.Errorf("a start from a config file printed demo tokens:\n%s", out)
	}
}

// withTokenSecretFile sets sfu.token_secret_file in a config that setup.toml wrote.
func withTokenSecretFile(config, path string) string {
	config = strings.Replace(config, "token_secret = \"\"\n", "", 1)
	return strings.Replace(config, "[sfu]\n", "[sfu]\ntoken_secret_file = \""+path+"\"\n", 1)
}

// mintToken runs ferry token with the config at path: a subscribe token for room r.
func mintToken(t *testing.T, path string) string {
	t.Helper()
	out, stderr, err := runFerry(t, "", "token", "--config", path, "--room", "r", "--subscribe")
	if err != nil {
		t.Fatalf("ferry token --config: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(out)
}
