package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParseUsers: any users file is either refused with an error naming the file, or gives
// users that each pass CheckUser, with a lowercase key, and no name and realm twice.
func FuzzParseUsers(f *testing.F) {
	f.Add([]byte("[[user]]\nname = \"alice\"\nrealm = \"ferry.test\"\nha1 = \"0123456789abcdef0123456789ABCDEF\"\n"))
	f.Add([]byte("[[user]]\nname = \"a:b\"\nrealm = \"r\"\nha1 = \"00\"\n"))
	f.Add([]byte("[[users]]\npasswd = 1\n"))
	f.Add([]byte("[[user]]\nname = \"bob\"\nrealm = \"r\"\nha1 = \"0123456789abcdef0123456789abcdef\"\n[[user]]\nname = \"bob\"\nrealm = \"r\"\nha1 = \"0123456789abcdef0123456789abcdef\"\n"))
	f.Add([]byte("\x00[[user"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseUsers("users.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "users file users.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		type nameRealm struct{ name, realm string }
		seen := map[nameRealm]bool{}
		for _, u := range users {
			if err := CheckUser(u); err != nil || u.HA1 != strings.ToLower(u.HA1) {
				t.Fatalf("accepted user %+v: %v", u, err)
			}
			if seen[nameRealm{u.Name, u.Realm}] {
				t.Fatalf("accepted %q in realm %q twice", u.Name, u.Realm)
			}
			seen[nameRealm{u.Name, u.Realm}] = true
		}
	})
}

// FuzzRESTUsername: a username parses only as digits, optionally followed by ":USER", and the
// user ID is never empty.
func FuzzRESTUsername(f *testing.F) {
	for _, s := range []string{"1700000000:alice", "1700000000", "1700000000:", ":alice", "-1:x",
		"99999999999999999999:x", "17e9:x", "1700000000:a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, username string) {
		expiry, user, ok := parseRESTUsername(username)
		if !ok {
			return
		}
		ts, _, _ := strings.Cut(username, ":")
		if expiry < 0 || user == "" || strings.Trim(ts, "0123456789") != "" {
			t.Fatalf("%q parsed as expiry %d, user %q", username, expiry, user)
		}
	})
}

// FuzzParseToken: any string is either refused with ErrBadToken or gives claims with a room
// and an expiry after now; claims re-signed with NewToken parse back the same.
func FuzzParseToken(f *testing.F) {
	const secret = "fuzz-secret-0123456789"
	now := time.Unix(1_800_000_000, 0)
	valid, err := NewToken(secret, Claims{Room: "demo", Publish: true, Expiry: now.Add(time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	other, _ := NewToken("another-secret-0123456789", Claims{Room: "demo", Expiry: now.Add(time.Hour)})
	for _, s := range []string{valid, other, "", "a.b.c", "eyJhbGciOiJub25lIn0.eyJyb29tIjoieCJ9.",
		valid[:len(valid)-2], strings.Replace(valid, ".", "..", 1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := ParseToken(secret, token, now)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("error is not ErrBadToken: %v", err)
			}
			return
		}
		if c.Room == "" || !c.Expiry.After(now) {
			t.Fatalf("accepted claims %+v", c)
		}
		again, err := NewToken(secret, c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseToken(secret, again, now)
		if err != nil || back != c {
			t.Fatalf("re-signed claims %+v came back as %+v (%v)", c, back, err)
		}
	})
}
