package server

import (
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/conf"
)

func TestDiff(t *testing.T) {
	tests := []struct {
		name             string
		edit             func(*conf.Config)
		changed, restart []string
	}{
		{"nothing", func(*conf.Config) {}, nil, nil},
		{"secrets and quota", func(c *conf.Config) {
			c.Auth.Secrets = []string{"s2"}
			c.Limits.AllocationsPerUser = 3
		}, []string{"auth.secrets", "limits.allocations_per_user"}, nil},
		{"a listener address", func(c *conf.Config) { c.Listen[0].Addr = "0.0.0.0:3479" }, nil, []string{"listen"}},
		{"a certificate path", func(c *conf.Config) { c.Listen[0].Cert = "/x.pem" }, []string{"listen.cert"}, nil},
		{"relay ports and log level", func(c *conf.Config) {
			c.Relay.MinPort = 50000
			c.Log.Level = "debug"
		}, []string{"log.level"}, []string{"relay.min_port"}},
		{"drain timeout and realm", func(c *conf.Config) {
			c.Server.DrainTimeout = conf.Duration{Duration: time.Second}
			c.Server.Realm = "other"
		}, []string{"server.drain_timeout"}, []string{"server.realm"}},
	}
	for _, tt := range tests {
		old, next := conf.Default(), conf.Default()
		tt.edit(next)
		res := diff(old, next)
		if !slices.Equal(res.Changed, append([]string{}, tt.changed...)) || !slices.Equal(res.Restart, append([]string{}, tt.restart...)) {
			t.Errorf("%s: diff = changed %v, restart %v; want %v, %v", tt.name, res.Changed, res.Restart, tt.changed, tt.restart)
		}
	}
}

// TestKeepRestartOnly: after a reload the restart-only keys keep their running values, and
// a second reload of the same file reports them again rather than forgetting them.
func TestKeepRestartOnly(t *testing.T) {
	old, next := conf.Default(), conf.Default()
	next.Listen[0].Addr = "0.0.0.0:3479"
	next.Relay.MaxPort = 60000
	next.Metrics.Listen = ""
	next.Limits.AllocationsTotal = 7
	keepRestartOnly(next, old)
	if len(diff(old, next).Restart) != 0 {
		t.Errorf("restart-only keys still differ after keepRestartOnly: %v", diff(old, next).Restart)
	}
	if next.Limits.AllocationsTotal != 7 {
		t.Error("keepRestartOnly reverted a reloadable key")
	}
}

func TestUserChanges(t *testing.T) {
	u := func(name, ha1 string) auth.User { return auth.User{Name: name, Realm: "r", HA1: ha1} }
	before := []auth.User{u("alice", "a1"), u("bob", "b1"), u("dave", "d1")}
	after := []auth.User{u("alice", "a1"), u("carol", "c1"), u("dave", "d2")}
	added, removed := userChanges(before, after)
	if !slices.Equal(added, []string{"carol", "dave"}) || !slices.Equal(removed, []string{"bob", "dave"}) {
		t.Errorf("userChanges = added %v, removed %v; want [carol dave], [bob dave] (a new password is both)", added, removed)
	}
}

func TestReplacedCerts(t *testing.T) {
	a, b := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	var none [sha256.Size]byte
	got := replacedCerts([][sha256.Size]byte{none, a, a}, [][sha256.Size]byte{none, a, b})
	if !slices.Equal(got, []string{"listen[2].certificate"}) {
		t.Errorf("replacedCerts = %v, want [listen[2].certificate]", got)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9642":  "127.0.0.1:9642",
		"0.0.0.0:9642":    "127.0.0.1:9642",
		"[::]:9642":       "[::1]:9642",
		"192.0.2.10:9642": "192.0.2.10:9642",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%s) = %s, want %s", in, got, want)
		}
	}
}
