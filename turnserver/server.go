// Package turnserver is Ferry's STUN/TURN server: pion/turn v5 for the protocol, with
// Ferry's listeners, credentials, relay allocator, peer policy and quotas plugged in.
package turnserver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/pionlog"
	"github.com/ferry-rtc/ferry/relay"
)

// Listener is one socket clients reach the server on.
type Listener struct {
	Proto string         // "udp", "tcp", "tls" or "dtls"
	Addr  netip.AddrPort // where to listen
	Cert  *tls.Certificate
}

// Config wires the server's collaborators.
type Config struct {
	Realm     string
	Software  string // SOFTWARE attribute of Binding responses; "" omits it
	Listeners []Listener
	Auth      *auth.Authenticator
	Allocator *relay.Allocator
	Policy    *relay.Policy
	Quota     *relay.Quota
	Log       *slog.Logger
}

// ListenError says which listener could not be opened.
type ListenError struct {
	Index int // into Config.Listeners
	Err   error
}

func (e *ListenError) Error() string { return e.Err.Error() }
func (e *ListenError) Unwrap() error { return e.Err }

// Server is a running STUN/TURN server.
type Server struct {
	pion     *turn.Server
	guard    *guard
	sessions *sessions
	log      *slog.Logger
	addrs    []net.Addr
}

// New opens every listener and starts serving. On error nothing is left open.
func New(cfg Config) (*Server, error) {
	s := &Server{sessions: newSessions(), log: cfg.Log}
	s.guard = &guard{
		auth:     cfg.Auth,
		policy:   cfg.Policy,
		families: cfg.Allocator.Enabled,
		sessions: s.sessions,
		log:      cfg.Log,
		logLimit: rate.NewLimiter(rate.Every(time.Second), 20),
	}
	if cfg.Software != "" {
		s.guard.software = stun.NewSoftware(cfg.Software)
	}

	pionCfg := turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.authHandler(cfg.Auth),
		QuotaHandler:  s.quotaHandler(cfg.Quota),
		EventHandler:  s.events(cfg.Quota),
		LoggerFactory: pionlog.Factory{Log: cfg.Log},
	}
	permit := func(_ net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		return ok && cfg.Policy.PermitIP(ip)
	}
	var closers []interface{ Close() error }
	closeAll := func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}
	for i, l := range cfg.Listeners {
		pc, ln, err := s.open(l)
		if err != nil {
			closeAll()
			return nil, &ListenError{Index: i, Err: err}
		}
		if pc != nil {
			closers = append(closers, pc)
			s.addrs = append(s.addrs, pc.LocalAddr())
			pionCfg.PacketConnConfigs = append(pionCfg.PacketConnConfigs, turn.PacketConnConfig{
				PacketConn: pc, RelayAddressGenerator: cfg.Allocator, PermissionHandler: permit,
			})
			continue
		}
		closers = append(closers, ln)
		s.addrs = append(s.addrs, ln.Addr())
		pionCfg.ListenerConfigs = append(pionCfg.ListenerConfigs, turn.ListenerConfig{
			Listener: ln, RelayAddressGenerator: cfg.Allocator, PermissionHandler: permit,
		})
	}
	pionServer, err := turn.NewServer(pionCfg)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	s.pion = pionServer
	return s, nil
}

// Addrs returns the bound address of each listener, in Config.Listeners order.
func (s *Server) Addrs() []net.Addr { return s.addrs }

// Allocations returns the number of live allocations.
func (s *Server) Allocations() int { return s.sessions.count() }

// DeniedSends returns how many Send indications the peer policy dropped.
func (s *Server) DeniedSends() uint64 { return s.guard.deniedSends.Load() }

// Close stops every listener and ends every allocation.
func (s *Server) Close() error { return s.pion.Close() }

func (s *Server) authHandler(a *auth.Authenticator) turn.AuthHandler {
	return func(ra *turn.RequestAttributes) (string, []byte, bool) {
		user, key, err := a.Key(ra.Username, ra.Realm, time.Now())
		return user, key, err == nil
	}
}

func (s *Server) quotaHandler(q *relay.Quota) turn.QuotaHandler {
	return func(user, _ string, client net.Addr) bool {
		if q.Admit(user, client) {
			return true
		}
		s.log.Info("allocation quota reached", "user", user, "client", client)
		return false
	}
}

func (s *Server) events(q *relay.Quota) turn.EventHandler {
	return turn.EventHandler{
		OnAllocationCreated: func(client, server net.Addr, _, user, _ string, relayAddr net.Addr, _ int) {
			q.Created(client)
			s.sessions.add(client, server, session{user: user, relay: relayAddr, created: time.Now()})
			s.log.Info("allocation created", "user", user, "client", client, "server", server, "relay", relayAddr)
		},
		OnAllocationDeleted: func(client, server net.Addr, _, user, _ string) {
			q.Released(user)
			sess, _ := s.sessions.remove(client, server)
			s.log.Info("allocation ended", "user", user, "client", client, "relay", sess.relay,
				"duration", time.Since(sess.created).Round(time.Millisecond))
		},
		OnAllocationError: func(client, _ net.Addr, _, message string) {
			q.Failed(client)
			s.log.Debug("request failed", "client", client, "err", message)
		},
	}
}
