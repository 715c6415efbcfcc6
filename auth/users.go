package auth

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// User is one entry of the users file.
type User struct {
	Name  string `toml:"name"`
	Realm string `toml:"realm"`
	HA1   string `toml:"ha1"` // lowercase hex of HA1(name, realm, password)
}

// ErrNoSuchUser is returned (wrapped) by DeleteUser when no entry has the name.
var ErrNoSuchUser = errors.New("no such user")

// usersFile is the on-disk shape of the users file: a TOML array of tables named "user".
type usersFile struct {
	User []User `toml:"user"`
}

// ReadUsers reads the users file. A missing file is not an error: it returns no users.
// Malformed content → error naming the file (and line when TOML reports one); an entry with an
// empty name, a name containing ':' (reserved for REST usernames), an empty realm or an ha1 that
// is not 32 hex chars → error naming the file and the entry.
//
// Entries are returned sorted by name then realm, with ha1 in lowercase. ReadUsers takes no
// lock: writers replace the file with a rename, so a reader sees either the old or the new file.
func ReadUsers(path string) ([]User, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read users file %s: %w", path, err)
	}
	users, err := parseUsers(path, data)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return users, nil
}

// parseUsers decodes and validates the content of the users file at path (path only names the
// file in errors, which have no "auth:" prefix so that callers can add their own context).
func parseUsers(path string, data []byte) ([]User, error) {
	var f usersFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("users file %s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	// A misspelt key ("passwd", "[[users]]") must not be silently ignored: the entry it was
	// meant for would just not work, with nothing to say why.
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return nil, fmt.Errorf("users file %s: unknown key %q", path, undecoded[0].String())
	}

	type nameRealm struct{ name, realm string }
	seen := make(map[nameRealm]int, len(f.User))
	for i := range f.User {
		u := &f.User[i]
		if err := CheckUser(*u); err != nil {
			return nil, fmt.Errorf("users file %s: entry %d (name %q, realm %q): %w",
				path, i+1, u.Name, u.Realm, err)
		}
		u.HA1 = strings.ToLower(u.HA1)
		// Two keys for one name and realm would make the outcome depend on the order of the
		// entries; AddUser never writes that, so it is a hand edit to fix.
		k := nameRealm{u.Name, u.Realm}
		if first, dup := seen[k]; dup {
			return nil, fmt.Errorf("users file %s: entry %d (name %q, realm %q): duplicate of entry %d",
				path, i+1, u.Name, u.Realm, first)
		}
		seen[k] = i + 1
	}
	SortUsers(f.User)
	return f.User, nil
}

// CheckUser checks one entry as the users file requires it; the error does not name the
// entry, the caller does. Shared stores (Redis) hold users to the same rules.
func CheckUser(u User) error {
	if u.Name == "" {
		return errors.New("empty name")
	}
	// "EXPIRY:USER" is the shape of TURN REST usernames; a static name with ':' would be
	// ambiguous with them.
	if strings.Contains(u.Name, ":") {
		return errors.New("name contains ':' (reserved for TURN REST API usernames)")
	}
	if err := checkText(u.Name); err != nil {
		return fmt.Errorf("name %w", err)
	}
	if u.Realm == "" {
		return errors.New("empty realm")
	}
	if err := checkText(u.Realm); err != nil {
		return fmt.Errorf("realm %w", err)
	}
	if len(u.HA1) != 2*16 {
		return fmt.Errorf("ha1 is %d characters, want 32 hex characters", len(u.HA1))
	}
	if _, err := hex.DecodeString(u.HA1); err != nil {
		return errors.New("ha1 is not 32 hex characters")
	}
	return nil
}

// checkText rejects what a STUN USERNAME or REALM cannot carry usefully: invalid UTF-8 and
// control characters (which also keep the file and log lines readable).
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return errors.New("contains a control character")
	}
	return nil
}

// SortUsers sorts users by name, then realm: the order of the users file and of listings.
func SortUsers(users []User) {
	slices.SortFunc(users, func(a, b User) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Realm, b.Realm))
	})
}

// AddUser adds u, replacing an existing entry with the same Name and Realm (password change).
//
// It creates the file (and its parent directory, 0700) if missing. The whole read-modify-write
// holds an exclusive lock on "<path>.lock", and the new content replaces the file atomically,
// so concurrent AddUser/DeleteUser calls, in this process or others, never lose an update.
func AddUser(path string, u User) error {
	_, err := SetUser(path, u)
	return err
}

// SetUser is AddUser that also reports whether an entry with the same Name and Realm was
// replaced (a password change) rather than added.
func SetUser(path string, u User) (replaced bool, err error) {
	if err := CheckUser(u); err != nil {
		return false, fmt.Errorf("auth: add user %q (realm %q) to %s: %w", u.Name, u.Realm, path, err)
	}
	u.HA1 = strings.ToLower(u.HA1)
	err = updateUsers(path, true, func(users []User) ([]User, error) {
		n := len(users)
		users = slices.DeleteFunc(users, func(e User) bool {
			return e.Name == u.Name && e.Realm == u.Realm
		})
		replaced = len(users) < n
		return append(users, u), nil
	})
	if err != nil {
		return false, fmt.Errorf("auth: add user %q (realm %q): %w", u.Name, u.Realm, err)
	}
	return replaced, nil
}

// DeleteUser removes every entry named name (any realm); ErrNoSuchUser if there was none.
// The file is left untouched when there is nothing to remove.
func DeleteUser(path, name string) error {
	err := updateUsers(path, false, func(users []User) ([]User, error) {
		n := len(users)
		users = slices.DeleteFunc(users, func(e User) bool { return e.Name == name })
		if len(users) == n {
			return nil, ErrNoSuchUser
		}
		return users, nil
	})
	if errors.Is(err, ErrNoSuchUser) {
		return fmt.Errorf("auth: delete user %q from %s: %w", name, path, err)
	}
	if err != nil {
		return fmt.Errorf("auth: delete user %q: %w", name, err)
	}
	return nil
}
