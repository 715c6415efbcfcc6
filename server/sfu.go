package server

import (
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/relay"
	"github.com/ferry-rtc/ferry/sfu"
	"github.com/ferry-rtc/ferry/sfu/demo"
)

// peerLimit is the turnserver's PeerLimit: users of SFU credentials reach the SFU only.
func (s *Server) peerLimit(user string) (netip.AddrPort, bool) {
	if s.sfu == nil || !strings.HasPrefix(user, sfuTURNUser) {
		return netip.AddrPort{}, false
	}
	return s.sfu.sfu.ICEAddr(), true
}

// sfuSide is the co-hosted SFU and what it reads from the running config.
type sfuSide struct {
	sfu         *sfu.SFU
	handler     http.Handler
	tokenSecret atomic.Pointer[string] // configured, or generated at start
	generated   string                 // the generated token secret, kept across reloads
}

// newSFU opens the SFU on a pool port, when [sfu] enables it; startHTTP serves it.
func (s *Server) newSFU(cfg *conf.Config) error {
	if !cfg.SFU.Enabled {
		return nil
	}
	secret, err := TokenSecret(cfg)
	if err != nil {
		return err
	}
	side := &sfuSide{}
	side.setSecret(secret)
	if secret == "" && !cfg.IsDefault() {
		// The demo tokens belong to a try-out: a deployment's journal must not hold them.
		s.log.Warn("sfu: no token_secret or token_secret_file: tokens are signed with a key generated for this run " +
			"and shown nowhere, so nobody can publish or watch; set sfu.token_secret_file, or sfu.enabled = false")
	}
	if len(s.currentCreds().secrets()) == 0 {
		s.log.Warn("no TURN REST secret: SFU clients get no TURN credentials and cannot relay; set [auth] secrets")
	}
	side.sfu, err = sfu.New(sfu.Config{
		Pool:         s.relays.pool,
		Local:        s.relays.local,
		BindIP:       s.relays.v4.Bind,
		PublicIP:     s.relays.v4.Public,
		TokenSecret:  func() string { return *side.tokenSecret.Load() },
		ICEServers:   s.sfuICEServers,
		SessionEnded: s.sfuSessionEnded,
		PermitPeer:   func(peer netip.AddrPort) bool { return s.relays.policy.PermitAddr(relay.UDP, peer) },
		Limits:       s.sfuLimits,
		Route:        s.sfuRoute,
		Log:          s.log,
		Metrics:      s.metrics,
	})
	if err != nil {
		return err
	}
	side.handler = side.sfu.Handler(http.FileServerFS(demo.Files))
	s.sfu = side
	return nil
}

// TokenSecret is the key of SFU access tokens that cfg configures: sfu.token_secret, or the
// one line of sfu.token_secret_file, checked as conf checks token_secret; "" if neither.
func TokenSecret(cfg *conf.Config) (string, error) {
	path := cfg.SFU.TokenSecretFile
	if path == "" {
		return cfg.SFU.TokenSecret, nil
	}
	keys, err := auth.ReadSecrets(path)
	if err != nil {
		return "", cfg.Errorf("sfu.token_secret_file", "%v", err)
	}
	if len(keys) != 1 {
		return "", cfg.Errorf("sfu.token_secret_file", "%s holds %d keys, want exactly one", path, len(keys))
	}
	// Do not quote the key: error messages end up in logs.
	if n := utf8.RuneCountInString(keys[0]); n < conf.MinTokenSecret {
		return "", cfg.Errorf("sfu.token_secret_file", "the key in %s is %d characters long, at least %d needed", path, n, conf.MinTokenSecret)
	}
	return keys[0], nil
}

// sfuTokenSecret is TokenSecret for a reload to cfg: a server without the SFU reads no file
// for it, as its start did not.
func (s *Server) sfuTokenSecret(cfg *conf.Config) (string, error) {
	if s.sfu == nil {
		return "", nil
	}
	return TokenSecret(cfg)
}

// setSecret makes secret the token secret, or the generated one when secret is ""; a
// generated one is made the first time it is needed, and reported.
func (side *sfuSide) setSecret(secret string) (generated bool) {
	if secret == "" {
		if side.generated == "" {
			side.generated, generated = randomSecret(), true
		}
		secret = side.generated
	}
	side.tokenSecret.Store(&secret)
	return generated
}

// sfuLimits are the SFU's limits in the running config: a reload applies them to the
// next request.
func (s *Server) sfuLimits() sfu.Limits {
	c := s.cfg.Load().SFU
	return sfu.Limits{SessionsPerToken: c.SessionsPerToken, SessionsPerIP: c.SessionsPerIP,
		FeedsPerToken: c.FeedsPerToken, FeedsPerIP: c.FeedsPerIP, ConnectTimeout: c.ConnectTimeout.Duration}
}

// demoTokens are a publish and a subscribe token for room demo, for the zero-config
// banner.
func (s *Server) demoTokens(cfg *conf.Config) (pub, sub string, err error) {
	secret := *s.sfu.tokenSecret.Load()
	exp := time.Now().Add(cfg.SFU.TokenTTL.Duration)
	if pub, err = auth.NewToken(secret, auth.Claims{Room: "demo", Publish: true, Expiry: exp}); err != nil {
		return "", "", err
	}
	sub, err = auth.NewToken(secret, auth.Claims{Room: "demo", Subscribe: true, Expiry: exp})
	return pub, sub, err
}

// demoHosts are where the demo page is reached: over loopback on this machine (a browser
// allows the camera only on https or localhost pages), and at the public address.
func (s *Server) demoHosts() (local, public string) {
	addr, err := netip.ParseAddrPort(s.httpAddr("sfu"))
	if err != nil {
		return s.httpAddr("sfu"), ""
	}
	ip := addr.Addr()
	if !ip.IsUnspecified() && !ip.IsLoopback() {
		return "", addr.String()
	}
	local = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addr.Port()).String()
	if ip.IsUnspecified() && s.relays.v4.Public.IsValid() {
		public = netip.AddrPortFrom(s.relays.v4.Public, addr.Port()).String()
	}
	return local, public
}
