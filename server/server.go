// Package server runs Ferry: it wires conf, auth, relay and turnserver into one process,
// serves the metrics and admin endpoints, and owns reload and drain. cmd/ferry only parses
// flags and turns signals into calls here.
package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ferry-rtc/ferry/cluster"
	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/internal/procs"
	"github.com/ferry-rtc/ferry/turnserver"
	"github.com/ferry-rtc/ferry/turnserver/offload"
)

// Options are what the process gives the server.
type Options struct {
	Config  *conf.Config
	Log     *slog.Logger
	Level   *slog.LevelVar // the level of Log, which a reload changes
	Version string         // the version and commit, "0.1.0+4406345abcde"
	Out     io.Writer      // the zero-config banner goes here
	// Procs applies [server] procs to the process's GOMAXPROCS. Only `ferry serve` sets it: a
	// server run inside another program (the tests) leaves that program's runtime alone.
	Procs bool
}

// Server is a running Ferry.
type Server struct {
	log      *slog.Logger
	level    *slog.LevelVar
	cfg      atomic.Pointer[conf.Config] // what is in effect
	reload   sync.Mutex                  // one reload at a time
	relays   *relays
	turn     *turnserver.Server
	offload  *offload.Offload // the kernel fast path; nil when off
	metrics  *metrics.Set
	creds    atomic.Pointer[credentials]
	sfu      *sfuSide            // nil when [sfu] is off
	sfuCreds *sfuCreds           // the TURN credentials of live SFU sessions
	certSums [][sha256.Size]byte // of each listener's certificate, to log replaced ones
	http     []*httpServer

	draining               atomic.Bool
	drainMu                sync.Mutex // guards drainReason and drainSince
	drainReason            string     // "" (serving), drainAdmin or drainShutdown
	drainSince             time.Time
	reloadOK, reloadFailed *metrics.Counter
	stopSelfTest           func()           // stops the self-test and waits for it; nil when none runs
	cluster                *cluster.Cluster // nil without [cluster] redis
	clusterMeters          *cluster.Meters
	users                  *cluster.Users // nil without auth.users_redis
	userMeters             *cluster.UserMeters
	// serving is turn once New returned it: the cluster's refresh loop starts before TURN
	// (TURN counts its quotas through the cluster) and reads the allocations from here.
	serving atomic.Pointer[turnserver.Server]
	procs   *procs.Controller // nil unless Options.Procs
}

// Start opens every listener and starts serving cfg. On error nothing is left open; a
// listener that cannot be opened is reported at its config line.
func Start(opts Options) (*Server, error) {
	cfg := opts.Config
	s := &Server{log: opts.Log, level: opts.Level, metrics: metrics.NewSet(), sfuCreds: newSFUCreds()}
	s.cfg.Store(cfg)
	p, err := load(cfg, s.log)
	if err != nil {
		return nil, err
	}
	creds, certs := p.creds, p.certs
	s.relays = p.relays
	if creds.zeroConfig() {
		creds.generated = randomSecret()
	}
	s.creds.Store(&creds)
	if creds.missingFile {
		s.log.Info("users file does not exist yet: no users ('ferry user add' creates it)", "path", cfg.Auth.UsersFile)
	}
	creds.warnRealm(s.log, cfg)
	s.certSums = fingerprints(certs)
	if err := checkListenPorts(cfg); err != nil {
		return nil, err
	}
	// The SFU exists before TURN serves: TURN asks it for its address (peerLimit).
	if err := s.newSFU(cfg); err != nil {
		return nil, err
	}
	s.clusterMeters = cluster.NewMeters(s.metrics)
	if err := s.startCluster(cfg, opts.Version); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.startUsers(cfg); err != nil {
		_ = s.Close()
		return nil, err
	}
	var shared turnserver.SharedQuota
	if s.cluster != nil {
		shared = s.cluster
	}
	s.offload = s.startOffload(cfg)
	s.turn, err = turnserver.New(turnserver.Config{
		Realm:      cfg.Server.Realm,
		Software:   cfg.Server.Software,
		Listeners:  turnListeners(cfg, certs),
		Auth:       creds.authenticator(cfg.Server.Realm, s.users),
		Pool:       s.relays.pool,
		V4:         s.relays.v4,
		V6:         s.relays.v6,
		Local:      s.relays.local,
		Policy:     s.relays.policy,
		Log:        s.log,
		Limits:     turnLimits(cfg),
		Metrics:    s.metrics,
		PeerLimit:  s.peerLimit,
		Revoked:    s.sfuCreds.revoked,
		QuotaGroup: s.sfuQuotaGroup,
		Offload:    turnserver.KernelOffload(s.offload),
		Shared:     shared,
	})
	if err != nil {
		_ = s.Close()
		var le *turnserver.ListenError
		if errors.As(err, &le) {
			return nil, cfg.Errorf(fmt.Sprintf("listen[%d].addr", le.Index), "%v", le.Err)
		}
		return nil, err
	}
	s.serving.Store(s.turn)
	s.registerMetrics(opts.Version)
	// After turnserver.New: its UDP listeners open one socket per P that GOMAXPROCS counts
	// then, every CPU, before the controller starts Ferry on one P.
	if opts.Procs {
		s.procs = procs.Start(procs.Options{Fixed: int(cfg.Server.Procs), Env: os.Getenv("GOMAXPROCS"), Log: s.log, Metrics: s.metrics})
	}
	if err := s.startHTTP(cfg); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.printBanner(opts.Out, cfg); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.log.Info("ferry serving", "version", opts.Version, "config", cfg.File(), "realm", cfg.Server.Realm, "listeners", listenerList(cfg, s.turn.Addrs()),
		"relay_ipv4", s.relays.v4.Public, "relay_ipv6", s.relays.v6.Public,
		"ports", fmt.Sprintf("%d-%d", cfg.Relay.MinPort, cfg.Relay.MaxPort),
		"users", len(creds.users), "secrets", len(creds.secrets()),
		"metrics", s.httpAddr("metrics"), "admin", s.httpAddr("admin"), "sfu", s.httpAddr("sfu"), "cluster", s.clusterName())
	if s.sfu != nil && cfg.SFU.SelfTest {
		s.startSelfTest()
	}
	return s, nil
}

// printBanner prints what a zero-config start needs to be used: the generated TURN
// credential, and the demo page with tokens when the token secret was generated and no
// config file was given.
func (s *Server) printBanner(w io.Writer, cfg *conf.Config) error {
	if creds := s.currentCreds(); creds.generated != "" {
		if err := printZeroConfig(w, cfg, s.relays, creds.generated); err != nil {
			return err
		}
	}
	if s.sfu == nil || s.sfu.generated == "" || !cfg.IsDefault() {
		return nil
	}
	pub, sub, err := s.demoTokens(cfg)
	if err != nil {
		return err
	}
	query := "/?room=demo&pub=" + pub + "&sub=" + sub
	fmt.Fprintf(w, "No [sfu] token_secret is configured: this run uses a generated one.\n"+
		"SFU tokens for room demo, valid for %s:\n  publish:   %s\n  subscribe: %s\nSFU demo page:\n",
		cfg.SFU.TokenTTL.Duration, pub, sub)
	local, public := s.demoHosts()
	if local != "" {
		fmt.Fprintf(w, "  on this machine: http://%s%s\n", local, query)
	}
	if public != "" {
		_, err = fmt.Fprintf(w, "  from elsewhere (watching only: browsers allow the camera on https pages): http://%s%s\n",
			public, query)
	}
	return err
}

func (s *Server) currentCreds() credentials { return *s.creds.Load() }

// Close stops everything at once: listeners, allocations, HTTP endpoints.
func (s *Server) Close() error {
	s.procs.Stop()
	if s.stopSelfTest != nil {
		s.stopSelfTest()
	}
	for _, h := range s.http {
		h.close()
	}
	if s.sfu != nil {
		_ = s.sfu.sfu.Close()
	}
	var err error
	if s.turn != nil {
		err = s.turn.Close() // ends every allocation: the kernel relays nothing more
	}
	if s.offload != nil {
		err = errors.Join(err, s.offload.Close())
	}
	if s.cluster != nil {
		err = errors.Join(err, s.cluster.Close()) // leaves: other nodes take its rooms at once
	}
	if s.users != nil {
		err = errors.Join(err, s.users.Close())
	}
	return err
}

func (s *Server) registerMetrics(version string) {
	metrics.ExposeMetadata(true)
	s.metrics.NewGauge(fmt.Sprintf("ferry_build_info{version=%q}", version), func() float64 { return 1 })
	pool := s.relays.pool
	s.metrics.NewGauge("ferry_relay_ports_in_use", func() float64 { return float64(pool.InUse()) })
	s.metrics.NewGauge("ferry_relay_ports_free", func() float64 { return float64(pool.Free()) })
	s.metrics.NewGauge("ferry_draining", func() float64 {
		if s.draining.Load() {
			return 1
		}
		return 0
	})
	offload.RegisterMetrics(s.metrics, s.offload)
	s.reloadOK = s.metrics.NewCounter(`ferry_config_reloads_total{result="ok"}`)
	s.reloadFailed = s.metrics.NewCounter(`ferry_config_reloads_total{result="error"}`)
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseIP parses a validated config address; "" gives the invalid Addr.
func parseIP(s string) netip.Addr {
	ip, _ := netip.ParseAddr(s)
	return ip
}

// listenerList names each listener by its protocol and bound address, in config order:
// "udp 0.0.0.0:3478, tcp 0.0.0.0:3478, tls 0.0.0.0:5349".
func listenerList(cfg *conf.Config, addrs []netip.AddrPort) string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		proto := "?"
		if i < len(cfg.Listen) {
			proto = cfg.Listen[i].Proto
		}
		out[i] = proto + " " + a.String()
	}
	return strings.Join(out, ", ")
}
