package auth

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

const testRealm = "ferry.local"

// stunCheck builds a real STUN request signed with the long-term credential (username, realm,
// password) and returns the check a server would run: MESSAGE-INTEGRITY under the candidate key.
func stunCheck(t *testing.T, username, realm, password string) func(key []byte) bool {
	t.Helper()
	msg, err := stun.Build(
		stun.TransactionID,
		stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername(username),
		stun.NewRealm(realm),
		stun.NewNonce("nonce"),
		stun.NewLongTermIntegrity(username, realm, password),
	)
	if err != nil {
		t.Fatal(err)
	}
	// Decode from the wire form, as the server would see it.
	got := &stun.Message{Raw: append([]byte(nil), msg.Raw...)}
	if err := got.Decode(); err != nil {
		t.Fatal(err)
	}
	return func(key []byte) bool { return stun.MessageIntegrity(key).Check(got) == nil }
}

// keyCheck accepts exactly want (compared in constant time, like a real integrity check).
func keyCheck(want []byte) func([]byte) bool {
	return func(key []byte) bool { return hmac.Equal(key, want) }
}

func never([]byte) bool { return false }

func TestVerify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	future := strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	past := strconv.FormatInt(now.Add(-time.Second).Unix(), 10)
	nowTS := strconv.FormatInt(now.Unix(), 10)

	users := []User{
		user("alice", testRealm, "alice-pw"),
		user("bob", "other.example", "bob-pw"), // other realm: invisible here
		user("4242", testRealm, "digits-pw"),   // all digits: a static user, not REST
	}
	secrets := []string{"new", "old"}
	restKey := func(username, secret string) []byte {
		return HA1(username, testRealm, RESTPassword(secret, username))
	}

	tests := []struct {
		name     string
		secrets  []string // nil: the default two
		username string
		realm    string
		check    func(t *testing.T) func([]byte) bool
		wantID   string
		wantKey  []byte
		wantErr  error
	}{
		{
			name: "static user", username: "alice", realm: testRealm,
			check:  func(t *testing.T) func([]byte) bool { return stunCheck(t, "alice", testRealm, "alice-pw") },
			wantID: "alice", wantKey: HA1("alice", testRealm, "alice-pw"),
		},
		{
			name: "static user wrong password", username: "alice", realm: testRealm,
			check:   func(t *testing.T) func([]byte) bool { return stunCheck(t, "alice", testRealm, "nope") },
			wantErr: ErrBadIntegrity,
		},
		{
			name: "static user with digits name", username: "4242", realm: testRealm,
			check:  func(t *testing.T) func([]byte) bool { return stunCheck(t, "4242", testRealm, "digits-pw") },
			wantID: "4242", wantKey: HA1("4242", testRealm, "digits-pw"),
		},
		{
			name: "wrong realm", username: "alice", realm: "other.example",
			check:   func(*testing.T) func([]byte) bool { return never },
			wantErr: ErrWrongRealm,
		},
		{
			name: "user of another realm", username: "bob", realm: testRealm,
			check:   func(*testing.T) func([]byte) bool { return never },
			wantErr: ErrUnknownUser,
		},
		{
			name: "unknown user", username: "mallory", realm: testRealm,
			check:   func(*testing.T) func([]byte) bool { return never },
			wantErr: ErrUnknownUser,
		},
		{
			name: "REST first secret", username: future + ":carol", realm: testRealm,
			check: func(t *testing.T) func([]byte) bool {
				return stunCheck(t, future+":carol", testRealm, RESTPassword("new", future+":carol"))
			},
			wantID: "carol", wantKey: restKey(future+":carol", "new"),
		},
		{
			name: "REST second secret", username: future + ":dave", realm: testRealm,
			check: func(t *testing.T) func([]byte) bool {
				return stunCheck(t, future+":dave", testRealm, RESTPassword("old", future+":dave"))
			},
			wantID: "dave", wantKey: restKey(future+":dave", "old"),
		},
		{
			name: "REST unknown secret", username: future + ":erin", realm: testRealm,
			check: func(t *testing.T) func([]byte) bool {
				return stunCheck(t, future+":erin", testRealm, RESTPassword("guess", future+":erin"))
			},
			wantErr: ErrBadIntegrity,
		},
		{
			name: "REST without user part", username: future, realm: testRealm,
			check:  func(*testing.T) func([]byte) bool { return keyCheck(restKey(future, "new")) },
			wantID: future, wantKey: restKey(future, "new"),
		},
		{
			name: "REST expiring this second", username: nowTS + ":frank", realm: testRealm,
			check:  func(*testing.T) func([]byte) bool { return keyCheck(restKey(nowTS+":frank", "new")) },
			wantID: "frank", wantKey: restKey(nowTS+":frank", "new"),
		},
		{
			name: "REST expired", username: past + ":frank", realm: testRealm,
			check:   func(*testing.T) func([]byte) bool { return keyCheck(restKey(past+":frank", "new")) },
			wantErr: ErrExpired,
		},
		{
			name: "wrong realm checked before expiry", username: past + ":frank", realm: "x",
			check:   func(*testing.T) func([]byte) bool { return never },
			wantErr: ErrWrongRealm,
		},
		{
			name: "no secrets: REST-looking name is unknown", secrets: []string{}, username: future + ":carol", realm: testRealm,
			check:   func(*testing.T) func([]byte) bool { return keyCheck(restKey(future+":carol", "new")) },
			wantErr: ErrUnknownUser,
		},
		{
			name: "empty secret ignored", secrets: []string{""}, username: future + ":carol", realm: testRealm,
			check:   func(*testing.T) func([]byte) bool { return keyCheck(restKey(future+":carol", "")) },
			wantErr: ErrUnknownUser,
		},
		{
			name: "bad integrity", username: future + ":carol", realm: testRealm,
			check:   func(*testing.T) func([]byte) bool { return never },
			wantErr: ErrBadIntegrity,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := secrets
			if tt.secrets != nil {
				s = tt.secrets
			}
			a := New(testRealm, users, s)
			id, key, err := a.Verify(tt.username, tt.realm, now, tt.check(t))
			if err != tt.wantErr { // sentinels are returned unwrapped
				t.Fatalf("Verify err = %v, want %v", err, tt.wantErr)
			}
			if id != tt.wantID || !bytes.Equal(key, tt.wantKey) {
				t.Errorf("Verify = %q, %x; want %q, %x", id, key, tt.wantID, tt.wantKey)
			}
		})
	}
}

// TestKeyRotation: a credential of every listed secret verifies with its own key, without
// anything remembered between requests; after a reload without the old secret it fails.
func TestKeyRotation(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := New(testRealm, nil, []string{"new", "old"})
	for _, secret := range []string{"new", "old"} {
		username, password := RESTCredential(secret, "carol", time.Hour, now)
		id, key, err := a.Verify(username, testRealm, now, stunCheck(t, username, testRealm, password))
		if err != nil || id != "carol" || !bytes.Equal(key, HA1(username, testRealm, password)) {
			t.Fatalf("Verify of a %s-secret credential = %q, %x, %v", secret, id, key, err)
		}
	}
	b := New(testRealm, nil, []string{"new"})
	username, password := RESTCredential("old", "carol", time.Hour, now)
	if _, _, err := b.Verify(username, testRealm, now, stunCheck(t, username, testRealm, password)); err != ErrBadIntegrity {
		t.Fatalf("Verify of a removed secret's credential: %v, want ErrBadIntegrity", err)
	}
}

func TestNewAndHasCredentials(t *testing.T) {
	tests := []struct {
		name    string
		users   []User
		secrets []string
		want    bool
	}{
		{"nothing", nil, nil, false},
		{"empty secret", nil, []string{""}, false},
		{"secret", nil, []string{"s"}, true},
		{"user", []User{user("alice", testRealm, "pw")}, nil, true},
		{"user of another realm only", []User{user("alice", "other", "pw")}, nil, false},
		{"user with bad ha1", []User{{Name: "alice", Realm: testRealm, HA1: "zz"}}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(testRealm, tt.users, tt.secrets)
			if got := a.HasCredentials(); got != tt.want {
				t.Errorf("HasCredentials = %v, want %v", got, tt.want)
			}
			if a.Realm() != testRealm {
				t.Errorf("Realm = %q", a.Realm())
			}
		})
	}
}

func TestVerifyConcurrent(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := New(testRealm, []User{user("alice", testRealm, "pw")}, []string{"new", "old"})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				username, password := RESTCredential([]string{"new", "old"}[j%2], fmt.Sprint(i, "-", j), time.Hour, now)
				want := HA1(username, testRealm, password)
				if _, key, err := a.Verify(username, testRealm, now, keyCheck(want)); err != nil || !bytes.Equal(key, want) {
					t.Errorf("Verify(%q) = %x, %v", username, key, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestStoredHA1Verifies ties the users file to the Authenticator: a key written by AddUser and
// read back verifies a real STUN request signed with the password.
func TestStoredHA1Verifies(t *testing.T) {
	path := t.TempDir() + "/users.toml"
	mustAdd(t, path, User{Name: "alice", Realm: testRealm, HA1: hex.EncodeToString(HA1("alice", testRealm, "pw"))})
	a := New(testRealm, mustRead(t, path), nil)
	if _, _, err := a.Verify("alice", testRealm, time.Now(), stunCheck(t, "alice", testRealm, "pw")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Verify("alice", testRealm, time.Now(), stunCheck(t, "alice", testRealm, "wrong")); !errors.Is(err, ErrBadIntegrity) {
		t.Fatalf("wrong password: %v", err)
	}
}
