package server

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"reflect"
	"slices"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/turnserver"
)

// setting is one config key as a reload sees it.
type setting struct {
	key     string
	restart bool // a running server cannot apply it: listeners, relay sockets, endpoints
	get     func(*conf.Config) any
}

// settings lists every key. Restart-only keys keep their running value after a reload
// (reported, never half-applied); the others take effect at once.
var settings = []setting{
	{"server.realm", true, func(c *conf.Config) any { return c.Server.Realm }},
	{"server.software", true, func(c *conf.Config) any { return c.Server.Software }},
	{"server.name", false, func(c *conf.Config) any { return c.Server.Name }},
	{"server.alternate_server", false, func(c *conf.Config) any { return c.Server.AlternateServer }},
	{"server.drain_timeout", false, func(c *conf.Config) any { return c.Server.DrainTimeout }},
	{"server.procs", true, func(c *conf.Config) any { return c.Server.Procs }},
	{"listen", true, func(c *conf.Config) any { return listenAddrs(c) }},
	{"listen.cert", false, func(c *conf.Config) any { return certPaths(c) }},
	{"relay.bind_ip", true, func(c *conf.Config) any { return c.Relay.BindIP }},
	{"relay.public_ip", true, func(c *conf.Config) any { return c.Relay.PublicIP }},
	{"relay.bind_ip6", true, func(c *conf.Config) any { return c.Relay.BindIP6 }},
	{"relay.public_ip6", true, func(c *conf.Config) any { return c.Relay.PublicIP6 }},
	{"relay.min_port", true, func(c *conf.Config) any { return c.Relay.MinPort }},
	{"relay.max_port", true, func(c *conf.Config) any { return c.Relay.MaxPort }},
	{"relay.deny_peers", false, func(c *conf.Config) any { return c.Relay.DenyPeers }},
	{"relay.allow_peers", false, func(c *conf.Config) any { return c.Relay.AllowPeers }},
	{"relay.offload", true, func(c *conf.Config) any { return c.Relay.Offload }},
	{"relay.offload_interfaces", true, func(c *conf.Config) any { return c.Relay.OffloadInterfaces }},
	{"auth.users_file", false, func(c *conf.Config) any { return c.Auth.UsersFile }},
	{"auth.secrets", false, func(c *conf.Config) any { return c.Auth.Secrets }},
	{"auth.secrets_file", false, func(c *conf.Config) any { return c.Auth.SecretsFile }},
	{"auth.credential_ttl", false, func(c *conf.Config) any { return c.Auth.CredentialTTL }},
	{"auth.users_redis", true, func(c *conf.Config) any { return c.Auth.UsersRedis }},
	{"auth.users_redis_max_stale", true, func(c *conf.Config) any { return c.Auth.UsersRedisMaxStale }},
	{"limits.allocations_per_user", false, func(c *conf.Config) any { return c.Limits.AllocationsPerUser }},
	{"limits.allocations_total", false, func(c *conf.Config) any { return c.Limits.AllocationsTotal }},
	{"limits.unauthenticated_per_ip_rate", false, func(c *conf.Config) any { return c.Limits.UnauthenticatedPerIPRate }},
	{"limits.binding_per_ip_rate", false, func(c *conf.Config) any { return c.Limits.BindingPerIPRate }},
	{"limits.permissions_per_allocation", false, func(c *conf.Config) any { return c.Limits.PermissionsPerAllocation }},
	{"limits.channels_per_allocation", false, func(c *conf.Config) any { return c.Limits.ChannelsPerAllocation }},
	{"limits.max_allocation_lifetime", false, func(c *conf.Config) any { return c.Limits.MaxAllocationLifetime }},
	{"limits.allocate_timeout", false, func(c *conf.Config) any { return c.Limits.AllocateTimeout }},
	{"limits.connections_per_allocation", false, func(c *conf.Config) any { return c.Limits.ConnectionsPerAllocation }},
	{"limits.tcp_connections_total", false, func(c *conf.Config) any { return c.Limits.TCPConnectionsTotal }},
	{"limits.dtls_handshakes", false, func(c *conf.Config) any { return c.Limits.DTLSHandshakes }},
	{"limits.dtls_handshakes_per_ip", false, func(c *conf.Config) any { return c.Limits.DTLSHandshakesPerIP }},
	{"sfu.enabled", true, func(c *conf.Config) any { return c.SFU.Enabled }},
	{"sfu.http", true, func(c *conf.Config) any { return c.SFU.HTTP }},
	{"sfu.token_secret", false, func(c *conf.Config) any { return c.SFU.TokenSecret }},
	{"sfu.token_secret_file", false, func(c *conf.Config) any { return c.SFU.TokenSecretFile }},
	{"sfu.turn_credential_ttl", false, func(c *conf.Config) any { return c.SFU.TURNCredentialTTL }},
	{"sfu.token_ttl", false, func(c *conf.Config) any { return c.SFU.TokenTTL }},
	{"sfu.self_test", true, func(c *conf.Config) any { return c.SFU.SelfTest }},
	{"sfu.sessions_per_token", false, func(c *conf.Config) any { return c.SFU.SessionsPerToken }},
	{"sfu.sessions_per_ip", false, func(c *conf.Config) any { return c.SFU.SessionsPerIP }},
	{"sfu.feeds_per_token", false, func(c *conf.Config) any { return c.SFU.FeedsPerToken }},
	{"sfu.feeds_per_ip", false, func(c *conf.Config) any { return c.SFU.FeedsPerIP }},
	{"sfu.connect_timeout", false, func(c *conf.Config) any { return c.SFU.ConnectTimeout }},
	{"sfu.turn_allocations_per_token", false, func(c *conf.Config) any { return c.SFU.TURNAllocationsPerToken }},
	{"metrics.listen", true, func(c *conf.Config) any { return c.Metrics.Listen }},
	{"admin.listen", true, func(c *conf.Config) any { return c.Admin.Listen }},
	{"admin.token", false, func(c *conf.Config) any { return c.Admin.Token }},
	{"log.level", false, func(c *conf.Config) any { return c.Log.Level }},
	{"log.format", true, func(c *conf.Config) any { return c.Log.Format }},
	{"debug.pprof", true, func(c *conf.Config) any { return c.Debug.Pprof }},
	{"cluster.redis", true, func(c *conf.Config) any { return c.Cluster.Redis }},
	{"cluster.node", true, func(c *conf.Config) any { return c.Cluster.Node }},
	{"cluster.advertise_turn", true, func(c *conf.Config) any { return c.Cluster.AdvertiseTURN }},
	{"cluster.advertise_sfu", true, func(c *conf.Config) any { return c.Cluster.AdvertiseSFU }},
	{"cluster.ttl", true, func(c *conf.Config) any { return c.Cluster.TTL }},
}

// listenAddrs is what identifies the listeners: proto and address, not the cert paths.
func listenAddrs(c *conf.Config) []string {
	out := make([]string, len(c.Listen))
	for i, l := range c.Listen {
		out[i] = l.Proto + " " + l.Addr
	}
	return out
}

func certPaths(c *conf.Config) []string {
	out := make([]string, len(c.Listen))
	for i, l := range c.Listen {
		out[i] = l.Cert + " " + l.Key
	}
	return out
}

// Reload re-reads the config file, the users file, the secrets file and the certificates,
// and applies what changed. Allocations keep running. If anything is invalid nothing is
// applied: the error is logged and returned, and the running config goes on serving.
func (s *Server) Reload() (ReloadResult, error) {
	s.reload.Lock()
	defer s.reload.Unlock()
	old := s.cfg.Load()
	res, err := s.reloadFrom(old)
	if err != nil {
		s.reloadFailed.Inc()
		s.log.Error("reload refused: the running config goes on serving", "config", old.File(), "err", err)
		return res, err
	}
	s.reloadOK.Inc()
	return res, nil
}

func (s *Server) reloadFrom(old *conf.Config) (ReloadResult, error) {
	next, err := reread(old)
	if err != nil {
		return ReloadResult{}, err
	}
	res := diff(old, next)
	keepRestartOnly(next, old)
	res.Changed = diff(old, next).Changed // what is applied: a replaced listener's cert path is not
	running := s.currentCreds()
	creds, err := loadCredentials(next, running.generated)
	if err != nil {
		return res, err
	}
	certs, err := loadCerts(next)
	if err != nil {
		return res, err
	}
	tokenSecret, err := s.sfuTokenSecret(next)
	if err != nil {
		return res, err
	}
	if err := s.relays.policy.SetPeers(next.Relay.DenyPeers, next.Relay.AllowPeers); err != nil {
		return res, next.Errorf("relay.deny_peers", "%v", err)
	}
	// Nothing below can fail: the reload is applied whole.
	s.turn.Apply(turnserver.Settings{
		Auth:   creds.authenticator(next.Server.Realm, s.users),
		Certs:  certs,
		Limits: turnLimits(next),
	})
	s.level.Set(next.Log.SlogLevel())
	if s.sfu != nil && s.sfu.setSecret(tokenSecret) {
		s.log.Warn("sfu.token_secret and token_secret_file are now empty: a random key was generated; tokens signed before are refused")
	}
	added, removed := userChanges(running.users, creds.users)
	sums := fingerprints(certs)
	res.Changed = append(res.Changed, replacedCerts(s.certSums, sums)...)
	s.certSums = sums
	s.creds.Store(&creds)
	s.cfg.Store(next)
	s.log.Info("config reloaded", "config", next.File(), "changed", res.Changed,
		"users_added", added, "users_removed", removed, "secrets", len(creds.secrets()))
	if len(res.Restart) > 0 {
		s.log.Warn("changes that need a restart were not applied", "keys", res.Restart)
	}
	if creds.zeroConfig() && creds.generated == "" {
		s.log.Warn("no users and no secrets are configured: nobody can authenticate")
	}
	creds.warnRealm(s.log, next)
	return res, nil
}

// reread loads the config from where the running one came from.
func reread(old *conf.Config) (*conf.Config, error) {
	if old.File() == conf.Default().File() {
		return conf.Default(), nil
	}
	return conf.Load(old.File())
}

// diff lists the keys whose values differ between old and next.
func diff(old, next *conf.Config) ReloadResult {
	res := ReloadResult{Changed: []string{}, Restart: []string{}}
	for _, st := range settings {
		if reflect.DeepEqual(st.get(old), st.get(next)) {
			continue
		}
		if st.restart {
			res.Restart = append(res.Restart, st.key)
		} else {
			res.Changed = append(res.Changed, st.key)
		}
	}
	return res
}

// keepRestartOnly gives next the running values of the keys only a restart applies, so
// that what is in effect stays what was started.
func keepRestartOnly(next, old *conf.Config) {
	next.Server.Realm, next.Server.Software, next.Server.Procs = old.Server.Realm, old.Server.Software, old.Server.Procs
	if !slices.Equal(listenAddrs(next), listenAddrs(old)) {
		next.Listen = slices.Clone(old.Listen) // certificate paths too: they belong to those listeners
	}
	next.Relay.BindIP, next.Relay.PublicIP = old.Relay.BindIP, old.Relay.PublicIP
	next.Relay.BindIP6, next.Relay.PublicIP6 = old.Relay.BindIP6, old.Relay.PublicIP6
	next.Relay.MinPort, next.Relay.MaxPort = old.Relay.MinPort, old.Relay.MaxPort
	next.Relay.Offload, next.Relay.OffloadInterfaces = old.Relay.Offload, old.Relay.OffloadInterfaces
	next.Metrics.Listen, next.Admin.Listen = old.Metrics.Listen, old.Admin.Listen
	next.SFU.Enabled, next.SFU.HTTP, next.SFU.SelfTest = old.SFU.Enabled, old.SFU.HTTP, old.SFU.SelfTest
	next.Log.Format = old.Log.Format
	next.Debug.Pprof = old.Debug.Pprof
	next.Cluster = old.Cluster
}

// userChanges names the users added and removed between two reads of the users file; a
// changed password counts as both.
func userChanges(before, after []auth.User) (added, removed []string) {
	key := func(u auth.User) string { return u.Realm + "/" + u.Name + "/" + u.HA1 }
	had := map[string]bool{}
	for _, u := range before {
		had[key(u)] = true
	}
	has := map[string]bool{}
	for _, u := range after {
		has[key(u)] = true
		if !had[key(u)] {
			added = append(added, u.Name)
		}
	}
	for _, u := range before {
		if !has[key(u)] {
			removed = append(removed, u.Name)
		}
	}
	return added, removed
}

// fingerprints identify the certificates of the listeners, to log which ones a reload
// replaced.
func fingerprints(certs []*tls.Certificate) [][sha256.Size]byte {
	out := make([][sha256.Size]byte, len(certs))
	for i, c := range certs {
		if c != nil && len(c.Certificate) > 0 {
			out[i] = sha256.Sum256(c.Certificate[0])
		}
	}
	return out
}

// replacedCerts names the listeners whose certificate differs between two reads.
func replacedCerts(before, after [][sha256.Size]byte) []string {
	var out []string
	for i := range min(len(before), len(after)) {
		if before[i] != after[i] {
			out = append(out, fmt.Sprintf("listen[%d].certificate", i))
		}
	}
	return out
}
