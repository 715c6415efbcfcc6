package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"
)

// usersHeader opens every users file that AddUser/DeleteUser write, so that someone who finds the
// file knows where it comes from and that it holds no password.
const usersHeader = `# Ferry users file, managed by "ferry user add" and "ferry user del".
#
# Each [[user]] is a TURN long-term credential (RFC 8489) for one realm.
# ha1 is the lowercase hex of MD5(name:realm:password), the key the server
# checks requests with: the password itself is never stored.
# Names cannot contain ':' (reserved for TURN REST API usernames).
# Hand edits are fine, but "ferry user add/del" rewrites the file and drops comments.

`

// updateUsers runs one read-modify-write of the users file at path under an exclusive flock of
// "<path>.lock" and replaces the file atomically with the result of modify (sorted).
//
// mkdir says whether the parent directory may be created. Without it (for updates that only
// remove entries) a missing directory means no users: modify sees none, and its result is not
// written, since there is nothing to remove.
func updateUsers(path string, mkdir bool, modify func([]User) ([]User, error)) error {
	dir := filepath.Dir(path)
	if mkdir {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create users directory %s: %w", dir, err)
		}
	}

	unlock, err := lockUsers(path+".lock", dir)
	if errors.Is(err, fs.ErrNotExist) && !mkdir {
		_, err := modify(nil)
		return err
	}
	if err != nil {
		return err
	}
	defer unlock()
	removeStaleTemps(path)

	// Read under the lock: another process may have written the file since any earlier read.
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read users file %s: %w", path, err)
	}
	users, err := parseUsers(path, data)
	if err != nil {
		return err
	}
	users, err = modify(users)
	if err != nil {
		return err
	}
	SortUsers(users)

	content, err := encodeUsers(users)
	if err != nil {
		return fmt.Errorf("encode users file %s: %w", path, err)
	}
	return writeFileAtomic(path, content)
}

// lockUsers takes an exclusive flock on lockPath (created 0600 if missing) and returns the
// function that releases it. The lock is on a separate file because the users file itself is
// replaced by rename: a lock on it would be on an inode that the next writer no longer sees.
// The lock file is never removed, for the same reason.
func lockUsers(lockPath, dir string) (unlock func(), err error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open users lock file %s: %w", lockPath, err)
	}
	if err := matchOwner(f, dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("chown users lock file %s: %w", lockPath, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock users lock file %s: %w", lockPath, err)
	}
	// Closing the descriptor releases the flock.
	return func() { f.Close() }, nil
}

func encodeUsers(users []User) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(usersHeader)
	if len(users) == 0 {
		// The encoder would write "user = []", after which a hand-added [[user]] table is a
		// TOML error (the key is already defined). No entries, no key.
		return buf.Bytes(), nil
	}
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(usersFile{User: users}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeFileAtomic replaces path with content so that a reader (the server reloading, or another
// `ferry user` command) sees either the old file or the new one, never a partial write, and a
// crash leaves one of the two on disk: temp file in the same directory, fsync, rename, fsync of
// the directory (which makes the rename itself durable).
func writeFileAtomic(path string, content []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(tempPattern(path)))
	if err != nil {
		return fmt.Errorf("write users file %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(content); err != nil {
		return fmt.Errorf("write users file %s: %w", tmp.Name(), err)
	}
	// CreateTemp already uses 0600; chmod anyway so the mode does not depend on that detail.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod users file %s: %w", tmp.Name(), err)
	}
	ownerOf := path
	if _, err := os.Stat(path); err != nil {
		ownerOf = dir
	}
	if err := matchOwner(tmp, ownerOf); err != nil {
		return fmt.Errorf("chown users file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync users file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close users file %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace users file %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		// The new file is in place; only its durability across a crash is in doubt.
		return fmt.Errorf("sync users directory %s: %w", dir, err)
	}
	return nil
}

// tempPattern is the name pattern of writeFileAtomic's temporary files for path.
func tempPattern(path string) string {
	dir, base := filepath.Split(path)
	return filepath.Join(dir, "."+base+".tmp-*")
}

// removeStaleTemps removes temporary users files that a writer killed before its rename
// left behind: they hold HA1 keys, which nobody would ever clean up. It runs under the
// users lock, which every writer holds while its temporary file exists, so whatever it
// finds is stale.
func removeStaleTemps(path string) {
	stale, _ := filepath.Glob(tempPattern(path))
	for _, f := range stale {
		_ = os.Remove(f)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// matchOwner gives f the owner of ref when running as root. `sudo ferry user add` must not leave
// a root-owned 0600 file that the server, running as its own user, can no longer read: the file
// keeps the owner of the file it replaces, or takes the owner of its directory when new (e.g. a
// systemd StateDirectory owned by the service user). Other users cannot chown, and need not.
func matchOwner(f *os.File, ref string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(ref)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
