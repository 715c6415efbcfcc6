package auth

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func user(name, realm, password string) User {
	return User{Name: name, Realm: realm, HA1: hex.EncodeToString(HA1(name, realm, password))}
}

func mustAdd(t *testing.T, path string, u User) {
	t.Helper()
	if err := AddUser(path, u); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []User {
	t.Helper()
	users, err := ReadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	return users
}

func TestReadUsersMissingFile(t *testing.T) {
	users, err := ReadUsers(filepath.Join(t.TempDir(), "nope", "users.toml"))
	if err != nil || len(users) != 0 {
		t.Fatalf("ReadUsers(missing) = %v, %v; want no users, no error", users, err)
	}
}

func TestUsersFileEdits(t *testing.T) {
	alice1 := user("alice", "ferry.local", "one")
	alice2 := user("alice", "ferry.local", "two")
	aliceOther := user("alice", "other.example", "one")
	bob := user("bob", "ferry.local", "pw")
	carol := user("carol", "ferry.local", "pw")
	digits := user("1234", "ferry.local", "pw")

	type step struct {
		add     *User
		del     string
		wantErr error
	}
	tests := []struct {
		name  string
		steps []step
		want  []User
	}{
		{"add", []step{{add: &alice1}}, []User{alice1}},
		{"replace same name and realm", []step{{add: &alice1}, {add: &bob}, {add: &alice2}}, []User{alice2, bob}},
		{"two realms for one name", []step{{add: &aliceOther}, {add: &alice1}}, []User{alice1, aliceOther}},
		{"sorted by name then realm", []step{{add: &carol}, {add: &aliceOther}, {add: &bob}, {add: &digits}, {add: &alice1}},
			[]User{digits, alice1, aliceOther, bob, carol}},
		{"delete every realm", []step{{add: &alice1}, {add: &aliceOther}, {add: &bob}, {del: "alice"}}, []User{bob}},
		{"delete last user", []step{{add: &bob}, {del: "bob"}}, nil},
		{"delete unknown", []step{{add: &bob}, {del: "alice", wantErr: ErrNoSuchUser}}, []User{bob}},
		{"delete from missing file", []step{{del: "alice", wantErr: ErrNoSuchUser}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.toml")
			for _, s := range tt.steps {
				var err error
				if s.add != nil {
					err = AddUser(path, *s.add)
				} else {
					err = DeleteUser(path, s.del)
				}
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("step %+v: err = %v, want %v", s, err, s.wantErr)
				}
			}
			if got := mustRead(t, path); !slices.Equal(got, tt.want) {
				t.Errorf("users = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUsersFileFormat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b") // parent directories do not exist yet
	path := filepath.Join(dir, "users.toml")
	u := user("alice", "ferry.local", "pw")
	u.HA1 = strings.ToUpper(u.HA1) // stored lowercase whatever the caller passes
	mustAdd(t, path, u)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode = %v, want 0600", fi.Mode().Perm())
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("users directory: %v, %v; want mode 0700", di.Mode().Perm(), err)
	}
	if li, err := os.Stat(path + ".lock"); err != nil || li.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v; want mode 0600", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# Ferry users file, managed by \"ferry user add\" and \"ferry user del\".",
		"MD5(name:realm:password)",
		"[[user]]\nname = \"alice\"\nrealm = \"ferry.local\"\nha1 = \"" + strings.ToLower(u.HA1) + "\"\n",
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("users file lacks %q:\n%s", want, data)
		}
	}
	// No temp files left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "users.toml" && e.Name() != "users.toml.lock" {
			t.Errorf("stray file %s", e.Name())
		}
	}
}

// TestDeleteLastUserLeavesEditableFile: with no entries left the file must still accept a
// hand-added [[user]] table (an empty "user = []" array would make that a TOML error).
func TestDeleteLastUserLeavesEditableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.toml")
	mustAdd(t, path, user("alice", "r", "pw"))
	if err := DeleteUser(path, "alice"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bob := user("bob", "r", "pw")
	data = fmt.Appendf(data, "[[user]]\nname = %q\nrealm = %q\nha1 = %q\n", bob.Name, bob.Realm, bob.HA1)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, path); !slices.Equal(got, []User{bob}) {
		t.Errorf("users = %v, want [bob]", got)
	}
}

func TestAddUserRejectsBadEntry(t *testing.T) {
	good := user("alice", "ferry.local", "pw")
	tests := []struct {
		name string
		u    User
		want string
	}{
		{"empty name", User{Realm: good.Realm, HA1: good.HA1}, "empty name"},
		{"colon", User{Name: "1700000000:alice", Realm: good.Realm, HA1: good.HA1}, "':'"},
		{"control char", User{Name: "al\nice", Realm: good.Realm, HA1: good.HA1}, "control character"},
		{"empty realm", User{Name: "alice", HA1: good.HA1}, "empty realm"},
		{"short ha1", User{Name: "alice", Realm: good.Realm, HA1: "abc"}, "ha1"},
		{"non-hex ha1", User{Name: "alice", Realm: good.Realm, HA1: strings.Repeat("z", 32)}, "ha1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.toml")
			err := AddUser(path, tt.u)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("AddUser(%+v) = %v, want error containing %q", tt.u, err, tt.want)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file written despite the error: %v", err)
			}
		})
	}
}

func TestReadUsersErrors(t *testing.T) {
	const ha1 = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		content string
		want    []string // substrings of the error, besides the file name
	}{
		{"syntax", "[[user]]\nname = \"alice\"\nrealm = ferry.local\n", []string{":3:"}},
		{"wrong type", "[[user]]\nname = 5\n", []string{"line 2"}},
		{"unknown key", "[[user]]\nname = \"a\"\nrealm = \"r\"\nha1 = \"" + ha1 + "\"\npassword = \"x\"\n", []string{"unknown key", "password"}},
		{"unknown table", "[[users]]\nname = \"a\"\n", []string{"unknown key", "users"}},
		{"empty name", "[[user]]\nrealm = \"r\"\nha1 = \"" + ha1 + "\"\n", []string{"entry 1", "empty name"}},
		{"colon in name", "[[user]]\nname = \"a\"\nrealm = \"r\"\nha1 = \"" + ha1 + "\"\n[[user]]\nname = \"1:b\"\nrealm = \"r\"\nha1 = \"" + ha1 + "\"\n",
			[]string{"entry 2", `"1:b"`, "':'"}},
		{"empty realm", "[[user]]\nname = \"a\"\nha1 = \"" + ha1 + "\"\n", []string{"entry 1", `"a"`, "empty realm"}},
		{"short ha1", "[[user]]\nname = \"a\"\nrealm = \"r\"\nha1 = \"0123\"\n", []string{"entry 1", `"a"`, "ha1"}},
		{"non-hex ha1", "[[user]]\nname = \"a\"\nrealm = \"r\"\nha1 = \"" + strings.Repeat("g", 32) + "\"\n", []string{`"a"`, "ha1"}},
		{"duplicate", "[[user]]\nname = \"a\"\nrealm = \"r\"\nha1 = \"" + ha1 + "\"\n[[user]]\nname = \"a\"\nrealm = \"r\"\nha1 = \"" + ha1 + "\"\n",
			[]string{"entry 2", "duplicate of entry 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.toml")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadUsers(path)
			if err == nil {
				t.Fatal("ReadUsers: no error")
			}
			for _, want := range append([]string{path}, tt.want...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			// A malformed file is not silently rewritten by an edit either.
			if err := AddUser(path, user("z", "r", "pw")); err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("AddUser on malformed file = %v, want error naming the file", err)
			}
		})
	}
}

func TestReadUsersHandWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.toml")
	content := "# comment\n[[user]]\nname = \"bob\"\nrealm = \"r\"\nha1 = \"0123456789ABCDEF0123456789ABCDEF\"\n" +
		"[[user]]\nname = \"alice\"\nrealm = \"r\"\nha1 = \"0123456789abcdef0123456789abcdef\"\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	want := []User{
		{"alice", "r", "0123456789abcdef0123456789abcdef"},
		{"bob", "r", "0123456789abcdef0123456789abcdef"},
	}
	if got := mustRead(t, path); !slices.Equal(got, want) {
		t.Errorf("users = %v, want %v", got, want)
	}
	// An empty file (or only comments) has no users.
	if err := os.WriteFile(path, []byte("# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, path); len(got) != 0 {
		t.Errorf("users = %v, want none", got)
	}
}

// TestAddUserConcurrentGoroutines relies on each AddUser opening its own descriptor of the lock
// file: flock locks belong to the open file description, so they exclude each other in one
// process too.
func TestAddUserConcurrentGoroutines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.toml")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- AddUser(path, user(fmt.Sprintf("user%02d", i), "ferry.local", "pw"))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	checkAllUsers(t, path, n)
}

func checkAllUsers(t *testing.T, path string, n int) {
	t.Helper()
	got := mustRead(t, path)
	if len(got) != n {
		t.Fatalf("%d users, want %d: %v", len(got), n, got)
	}
	for i, u := range got {
		if want := user(fmt.Sprintf("user%02d", i), "ferry.local", "pw"); u != want {
			t.Errorf("user %d = %v, want %v", i, u, want)
		}
	}
}

// TestStaleTempFilesRemoved: a writer killed between creating its temporary file and the
// rename (kill -9 during `ferry user add`) leaves HA1 keys in a file nobody owns; the next
// write under the lock removes it, whether it adds or deletes.
func TestStaleTempFilesRemoved(t *testing.T) {
	for _, write := range []struct {
		name string
		do   func(path string) error
	}{
		{"add", func(path string) error { return AddUser(path, user("bob", "ferry.local", "pw")) }},
		{"delete", func(path string) error { return DeleteUser(path, "alice") }},
	} {
		t.Run(write.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.toml")
			if err := AddUser(path, user("alice", "ferry.local", "pw")); err != nil {
				t.Fatal(err)
			}
			stale := filepath.Join(filepath.Dir(path), ".users.toml.tmp-123456")
			if err := os.WriteFile(stale, []byte("[[user]]\nname = \"alice\"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := write.do(path); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the stale temporary file is still there: %v", err)
			}
			left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".users.toml.tmp-*"))
			if len(left) != 0 {
				t.Fatalf("temporary files left: %v", left)
			}
		})
	}
}
