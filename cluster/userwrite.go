package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/ferry-rtc/ferry/auth"
)

// UserStore is the users of a Redis, as `ferry user` manages them: each change is
// published on usersChannel, so that every node applies it at once.
type UserStore struct {
	rdb *redis.Client
	url string // redacted, for errors
}

// OpenUserStore connects to the Redis at url (no exchange yet).
func OpenUserStore(url string) (*UserStore, error) {
	rdb, err := newClient(url)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return &UserStore{rdb: rdb, url: redactedURL(url)}, nil
}

// Close closes the connection.
func (s *UserStore) Close() error { return s.rdb.Close() }

// String names the store in messages: its URL without the password.
func (s *UserStore) String() string { return s.url }

// Set adds u or replaces its key (a password change), which it reports.
func (s *UserStore) Set(ctx context.Context, u auth.User) (replaced bool, err error) {
	if err := auth.CheckUser(u); err != nil {
		return false, fmt.Errorf("users: add user %q (realm %q) to %s: %w", u.Name, u.Realm, s.url, err)
	}
	key := userKey(u.Realm, u.Name)
	var old *redis.StatusCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		old = p.SetArgs(ctx, key, strings.ToLower(u.HA1), redis.SetArgs{Get: true})
		p.Publish(ctx, usersChannel, key)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("users: add user %q (realm %q) to %s: %w", u.Name, u.Realm, s.url, err)
	}
	return old.Err() == nil, nil
}

// Delete removes name from every realm; auth.ErrNoSuchUser when it is in none.
func (s *UserStore) Delete(ctx context.Context, name string) error {
	users, err := s.scan(ctx, "turn/realm/*/user/"+globEscape(name)+"/key")
	if err != nil {
		return fmt.Errorf("users: delete user %q from %s: %w", name, s.url, err)
	}
	users = slices.DeleteFunc(users, func(u auth.User) bool { return u.Name != name })
	if len(users) == 0 {
		return fmt.Errorf("users: delete user %q from %s: %w", name, s.url, auth.ErrNoSuchUser)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, u := range users {
			key := userKey(u.Realm, u.Name)
			p.Del(ctx, key)
			p.Publish(ctx, usersChannel, key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("users: delete user %q from %s: %w", name, s.url, err)
	}
	return nil
}

// List returns every user of every realm (without keys), sorted by name then realm.
func (s *UserStore) List(ctx context.Context) ([]auth.User, error) {
	users, err := s.scan(ctx, "turn/realm/*/user/*/key")
	if err != nil {
		return nil, fmt.Errorf("users: list users of %s: %w", s.url, err)
	}
	auth.SortUsers(users)
	return slices.Compact(users), nil // SCAN may return a key twice
}

// scan returns the users whose keys match pattern.
func (s *UserStore) scan(ctx context.Context, pattern string) ([]auth.User, error) {
	var users []auth.User
	err := scanKeys(ctx, s.rdb, pattern, func(batch []string) error {
		for _, k := range batch {
			if realm, name, ok := parseUserKey(k); ok {
				users = append(users, auth.User{Name: name, Realm: realm})
			}
		}
		return nil
	})
	return users, err
}
