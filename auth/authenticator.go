package auth

import (
	"encoding/hex"
	"errors"
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

// Authenticator answers "which key does this username have" for one realm. Safe for concurrent use:
// it is immutable, and a config reload builds a new one.
type Authenticator struct {
	realm   string
	users   map[string][]byte // static user name → HA1, for this realm only
	shared  UserSource        // users shared by several nodes (Redis); nil when none
	secrets []string          // TURN REST API secrets; the first signs, every one verifies
}

// UserSource is a store of users that changes while the server runs (users shared through
// Redis). Key is on every authenticated request's path: it must not block, allocate or take a
// shared lock, and the key it returns must never be modified afterwards.
type UserSource interface {
	// Key is the HA1 of name in the Authenticator's realm.
	Key(name string) ([]byte, bool)
}

// WithShared returns a copy of a that also knows the users of src (nil: none), after its
// own users: a name of the users file wins over the same name in src.
func (a *Authenticator) WithShared(src UserSource) *Authenticator {
	b := *a
	b.shared = src
	return &b
}

// New builds an Authenticator for realm from the users file entries and the REST secrets.
//
// Users of other realms are left out (their HA1 is bound to their realm and could never verify
// here). Entries that ReadUsers would reject (bad ha1) are left out too, and so are empty
// secrets: HMAC under an empty key would let anyone mint credentials. If a name appears twice
// for realm, the first entry wins; ReadUsers never returns that.
func New(realm string, users []User, secrets []string) *Authenticator {
	a := &Authenticator{
		realm: realm,
		users: make(map[string][]byte, len(users)),
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
	return len(a.users) > 0 || a.shared != nil || len(a.secrets) > 0
}

// identity is what a username resolves to before any key is checked: a static user's key, or a
// REST username whose keys depend on the secret.
type identity struct {
	userID    string
	staticKey []byte // set for a static user
	expiry    int64  // unix seconds, for a REST username
}

// resolve applies the rules shared by Verify and Key, in their order: realm, static users (first,
// since a users-file name may be all digits; the users file, then the shared store), then REST
// usernames if secrets are configured.
func (a *Authenticator) resolve(username, realm string, now time.Time) (identity, error) {
	if realm != a.realm {
		return identity{}, ErrWrongRealm
	}
	if key, ok := a.users[username]; ok {
		return identity{userID: username, staticKey: key}, nil
	}
	if a.shared != nil {
		if key, ok := a.shared.Key(username); ok {
			return identity{userID: username, staticKey: key}, nil
		}
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
	for _, secret := range a.secrets {
		if key := a.restKey(username, secret); check(key) {
			return id.userID, key, nil
		}
	}
	return "", nil, ErrBadIntegrity
}
