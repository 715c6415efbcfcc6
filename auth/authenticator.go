package auth

import (
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// Errors Verify returns; they are the reasons counted in metrics and logs.
var (
	ErrWrongRealm   = errors.New("wrong realm")
	ErrUnknownUser  = errors.New("unknown user")
	ErrExpired      = errors.New("expired REST credential")
	ErrBadIntegrity = errors.New("bad message integrity")
	// ErrRevoked is for a credential Ferry minted for something that has ended since (an SFU
	// session): its signature and expiry are good, but it no longer buys anything.
	ErrRevoked = errors.New("revoked credential")
)

// Authenticator answers "which key does this username have" for one realm. Safe for concurrent use.
// It is immutable except for a small internal cache (see Verify); a config reload builds a new one.
type Authenticator struct {
	realm   string
	users   map[string][]byte // static user name → HA1, for this realm only
	secrets []string          // TURN REST API secrets; the first signs, every one verifies

	rotated rotatedKeys
}

// New builds an Authenticator for realm from the users file entries and the REST secrets.
//
// Users of other realms are left out (their HA1 is bound to their realm and could never verify
// here). Entries that ReadUsers would reject (bad ha1) are left out too, and so are empty
// secrets: HMAC under an empty key would let anyone mint credentials. If a name appears twice
// for realm, the first entry wins; ReadUsers never returns that.
func New(realm string, users []User, secrets []string) *Authenticator {
	a := &Authenticator{
		realm:   realm,
		users:   make(map[string][]byte, len(users)),
		rotated: newRotatedKeys(),
	}
	for _, u := range users {
		if u.Realm != realm || u.Name == "" {
			continue
		}
		if _, dup := a.users[u.Name]; dup {
			continue
		}
		key, err := hex.DecodeString(u.HA1)
		if err != nil || len(key) != 16 {
			continue
		}
		a.users[u.Name] = key
	}
	for _, s := range secrets {
		if s != "" {
			a.secrets = append(a.secrets, s)
		}
	}
	return a
}

// Realm returns the realm it serves.
func (a *Authenticator) Realm() string { return a.realm }

// HasCredentials reports whether any user or secret is configured: a user of this realm or a
// non-empty secret, that is, whether anyone at all could authenticate.
func (a *Authenticator) HasCredentials() bool {
	return len(a.users) > 0 || len(a.secrets) > 0
}

// identity is what a username resolves to before any key is checked: a static user's key, or a
// REST username whose keys depend on the secret.
type identity struct {
	userID    string
	staticKey []byte // set for a static user
	expiry    int64  // unix seconds, for a REST username
}

// resolve applies the rules shared by Verify and Key, in their order: realm, static users (first,
// since a users-file name may be all digits), then REST usernames if secrets are configured.
func (a *Authenticator) resolve(username, realm string, now time.Time) (identity, error) {
	if realm != a.realm {
		return identity{}, ErrWrongRealm
	}
	if key, ok := a.users[username]; ok {
		return identity{userID: username, staticKey: key}, nil
	}
	if len(a.secrets) == 0 {
		return identity{}, ErrUnknownUser
	}
	expiry, userID, ok := parseRESTUsername(username)
	if !ok {
		return identity{}, ErrUnknownUser
	}
	if expiry < now.Unix() {
		return identity{}, ErrExpired
	}
	return identity{userID: userID, expiry: expiry}, nil
}

// restKey is the long-term key of a REST username under one secret.
func (a *Authenticator) restKey(username, secret string) []byte {
	return HA1(username, a.realm, RESTPassword(secret, username))
}

// Verify finds the key for username in realm and confirms it with check (the caller's
// MESSAGE-INTEGRITY check of the request). It returns the user ID that quotas count by and the key.
//   - realm != a.Realm() → ErrWrongRealm
//   - a static user with that exact Name and the authenticator's realm: userID = Name, key = its HA1 bytes
//   - else, if secrets are configured and username is "EXPIRY" or "EXPIRY:USER" with EXPIRY decimal
//     unix seconds: EXPIRY < now → ErrExpired; otherwise userID = USER (the whole username when there
//     is no ":USER" part) and the candidate keys are HA1(username, realm, RESTPassword(secret_i, username))
//     for each secret in order (the first secret signs, every one verifies: rotation).
//   - else → ErrUnknownUser
//   - no candidate key satisfies check → ErrBadIntegrity
//
// The errors are returned as they are (not wrapped), ready to be used as a metrics label.
//
// When a REST username verifies with a secret other than the first, the key is remembered so that
// Key returns it: pion's AuthHandler is called for the same request without the message, so it
// cannot try every secret itself. The memory is bounded (see rotatedKeys).
func (a *Authenticator) Verify(username, realm string, now time.Time, check func(key []byte) bool) (userID string, key []byte, err error) {
	id, err := a.resolve(username, realm, now)
	if err != nil {
		return "", nil, err
	}
	if id.staticKey != nil {
		if !check(id.staticKey) {
			return "", nil, ErrBadIntegrity
		}
		return id.userID, id.staticKey, nil
	}
	for i, secret := range a.secrets {
		key := a.restKey(username, secret)
		if !check(key) {
			continue
		}
		if i == 0 {
			// The first secret is what Key falls back to; a key remembered from an earlier
			// rotation (impossible unless two secrets collide) must not shadow it.
			a.rotated.forget(username)
		} else {
			a.rotated.remember(username, key, id.expiry, now)
		}
		return id.userID, key, nil
	}
	return "", nil, ErrBadIntegrity
}

// Key returns the key Verify accepted for username (the remembered rotated key, else the first
// candidate), with the same errors as Verify minus ErrBadIntegrity. It is what Ferry's pion
// AuthHandler returns.
//
// Key does not prove anything by itself: the caller (pion) must still check MESSAGE-INTEGRITY
// with the returned key.
func (a *Authenticator) Key(username, realm string, now time.Time) (userID string, key []byte, err error) {
	id, err := a.resolve(username, realm, now)
	if err != nil {
		return "", nil, err
	}
	if id.staticKey != nil {
		return id.userID, id.staticKey, nil
	}
	if key, ok := a.rotated.lookup(username); ok {
		return id.userID, key, nil
	}
	return id.userID, a.restKey(username, a.secrets[0]), nil
}

// rotatedKeys remembers REST username → key for usernames that verified with a secret other than
// the first. It only ever holds keys that Verify proved, so a hit in Key is as good as trying
// every secret again.
//
// Bounds: past pruneAt (1024) entries an insert drops the expired ones; if more than half of
// hardCap (65536) are still live, it drops them all. The map never holds more than hardCap.
type rotatedKeys struct {
	// pruneAt and hardCap are fields, not constants, so that tests can shrink them.
	pruneAt int // prune expired entries when the map grows past this
	hardCap int // never hold more than this; clear everything if pruning leaves over half of it

	mu      sync.Mutex
	entries map[string]rotatedKey
	nextAt  int // current prune threshold: pruneAt, raised while many entries are still valid
}

type rotatedKey struct {
	key    []byte
	expiry int64 // unix seconds after which the username no longer verifies anyway
}

const (
	rotatedPruneAt = 1024
	rotatedHardCap = 65536
)

func newRotatedKeys() rotatedKeys {
	return rotatedKeys{pruneAt: rotatedPruneAt, hardCap: rotatedHardCap}
}

func (r *rotatedKeys) lookup(username string) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[username]
	return e.key, ok
}

func (r *rotatedKeys) forget(username string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.entries, username)
}

func (r *rotatedKeys) remember(username string, key []byte, expiry int64, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries == nil {
		r.entries = make(map[string]rotatedKey)
	}
	r.entries[username] = rotatedKey{key: key, expiry: expiry}
	if r.nextAt == 0 {
		r.nextAt = min(r.pruneAt, r.hardCap)
	}
	if len(r.entries) <= r.nextAt {
		return
	}
	unix := now.Unix()
	for name, e := range r.entries {
		if e.expiry < unix {
			delete(r.entries, name)
		}
	}
	// Too many live entries: clear them all. An entry only matters between a request's Verify
	// and its Key, and Verify puts it back on the next request, whereas an unbounded map could
	// be grown by anyone holding many old-secret credentials with long expiries. Clearing
	// already at half the cap keeps the next prune at least hardCap/2 inserts away.
	if len(r.entries) > r.hardCap/2 {
		clear(r.entries)
	}
	// When many entries are still valid, pruning again at the next insert would scan the whole
	// map each time; wait until the map has doubled (amortised O(1) per insert), but never past
	// the hard cap.
	r.nextAt = min(r.hardCap, max(r.pruneAt, 2*len(r.entries)))
}

// size reports the number of remembered keys (for tests).
func (r *rotatedKeys) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}
