package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/cluster"
	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/relay"
)

// credentials are the users and secrets a config leads to.
type credentials struct {
	users       []auth.User
	configured  []string // secrets of [auth] secrets, then of secrets_file
	generated   string   // the zero-config secret of this run, if it started with no credentials
	missingFile bool     // users_file is set but does not exist
	usersRedis  bool     // auth.users_redis is on: users may come and go in Redis
}

// loadCredentials reads the users file and the secrets file of cfg. generated carries the
// zero-config secret over a reload.
func loadCredentials(cfg *conf.Config, generated string) (credentials, error) {
	c := credentials{generated: generated, usersRedis: cfg.Auth.UsersRedisURL(cfg.Cluster) != ""}
	if path := cfg.Auth.UsersFile; path != "" {
		var err error
		if c.users, err = auth.ReadUsers(path); err != nil {
			return c, cfg.Errorf("auth.users_file", "%v", err)
		}
		_, err = os.Stat(path)
		c.missingFile = errors.Is(err, fs.ErrNotExist)
	}
	var err error
	c.configured, err = configuredSecrets(cfg)
	return c, err
}

// configuredSecrets are the secrets of [auth] secrets, then those of secrets_file.
func configuredSecrets(cfg *conf.Config) ([]string, error) {
	secrets := slices.Clone(cfg.Auth.Secrets)
	if path := cfg.Auth.SecretsFile; path != "" {
		more, err := auth.ReadSecrets(path)
		if err != nil {
			return nil, cfg.Errorf("auth.secrets_file", "%v", err)
		}
		secrets = append(secrets, more...)
	}
	return secrets, nil
}

// SigningSecret is the secret that signs the credentials Ferry mints: the first configured.
func SigningSecret(cfg *conf.Config) (string, error) {
	secrets, err := configuredSecrets(cfg)
	if err != nil {
		return "", err
	}
	if len(secrets) == 0 {
		return "", cfg.Errorf("auth.secrets", "no secret to sign with: set [auth] secrets or secrets_file")
	}
	return secrets[0], nil
}

// TURNURIs are the turn: and turns: URIs clients reach cfg's listeners at.
func TURNURIs(cfg *conf.Config) ([]string, error) {
	v4, v6, err := relayAddrs(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	_, uris := auth.URIs(endpoints(cfg, v4, v6))
	return uris, nil
}

// warnRealm says so when the users file has users but none of them in realm: the server
// checks a user's key only in its own realm, so none of them can authenticate (the file was
// written with another --realm, or the realm was changed after).
func (c credentials) warnRealm(log *slog.Logger, cfg *conf.Config) {
	var others []string
	for _, u := range c.users {
		if u.Realm == cfg.Server.Realm {
			return
		}
		if !slices.Contains(others, u.Realm) {
			others = append(others, u.Realm)
		}
	}
	if len(others) > 0 {
		log.Warn("no user of the users file is in the server's realm: none of them can authenticate",
			"realm", cfg.Server.Realm, "users_file", cfg.Auth.UsersFile, "users", len(c.users), "their_realms", others)
	}
}

// zeroConfig reports whether nobody could authenticate with the configured credentials. A
// shared users store counts as credentials even while empty: its users arrive without a
// reload, and a generated secret would outlive its purpose.
func (c credentials) zeroConfig() bool {
	return len(c.users) == 0 && len(c.configured) == 0 && !c.usersRedis
}

// secrets are the secrets in effect: the configured ones, or the generated one while there
// are no credentials at all.
func (c credentials) secrets() []string {
	if c.zeroConfig() && c.generated != "" {
		return []string{c.generated}
	}
	return c.configured
}

// authenticator checks the users of the users file, then those of shared (nil: none),
// then the secrets.
func (c credentials) authenticator(realm string, shared *cluster.Users) *auth.Authenticator {
	a := auth.New(realm, c.users, c.secrets())
	if shared != nil { // a nil *Users in the interface would not be a nil UserSource
		a = a.WithShared(shared)
	}
	return a
}

// startUsers follows the users of the realm in the Redis of auth.users_redis, if it is set.
func (s *Server) startUsers(cfg *conf.Config) error {
	s.userMeters = cluster.NewUserMeters(s.metrics)
	url := cfg.Auth.UsersRedisURL(cfg.Cluster)
	if url == "" {
		return nil
	}
	u, err := cluster.StartUsers(cluster.UsersConfig{URL: url, Realm: cfg.Server.Realm,
		MaxStale: cfg.Auth.UsersRedisMaxStale.Duration, Log: s.log, Meters: s.userMeters})
	if err != nil {
		return cfg.Errorf("auth.users_redis", "%v", err)
	}
	s.users = u
	return nil
}

func printZeroConfig(w io.Writer, cfg *conf.Config, r *relays, secret string) error {
	stunURIs, turnURIs := auth.URIs(endpoints(cfg, r.v4, r.v6))
	cred := auth.NewRESTResponse(secret, "ferry", cfg.Auth.CredentialTTL.Duration, time.Now(), turnURIs)
	js, err := json.Marshal(map[string]any{"iceServers": auth.ICEServers(stunURIs, cred)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "No users and no secrets are configured: this run uses a generated TURN REST secret.\n"+
		"RTCPeerConnection configuration, valid for %s:\n%s\n", time.Duration(cred.TTL)*time.Second, js)
	return err
}

// endpoints are the listeners as clients reach them (see advertised), every one by
// server.name when it is set.
func endpoints(cfg *conf.Config, v4, v6 relay.Addrs) []auth.Endpoint {
	var out []auth.Endpoint
	for _, l := range cfg.Listen {
		if addr, ok := advertised(l, v4, v6); ok {
			out = append(out, auth.Endpoint{Proto: l.Proto, Addr: addr, Name: cfg.Server.Name})
		}
	}
	return out
}

// advertised is the address clients are given for listener l: its own, or for a wildcard
// listener the relay's public address of its family; false when that family has none.
func advertised(l conf.Listener, v4, v6 relay.Addrs) (netip.AddrPort, bool) {
	addr, _ := netip.ParseAddrPort(l.Addr) // validated
	host := addr.Addr()
	if host.IsUnspecified() {
		host = v4.Public
		if addr.Addr().Is6() {
			host = v6.Public
		}
	}
	return netip.AddrPortFrom(host, addr.Port()), host.IsValid()
}
