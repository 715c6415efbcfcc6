// Package turnserver is Ferry's STUN/TURN server: pion/turn v5 for the protocol, with
// Ferry's listeners, credentials, relay allocator, peer policy and quotas plugged in.
package turnserver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
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
	Limits    Limits
	// Metrics receives the server's metrics; nil keeps them private.
	Metrics *metrics.Set
	// PeerLimit, if set, returns the only peer address a user may relay to: the SFU's
	// clients get credentials for the SFU, not for the internet.
	PeerLimit func(user string) (netip.AddrPort, bool)
	// Revoked, if set, reports whether the credentials of user have been revoked: those
	// minted for an SFU session that has ended. A request with them gets 401.
	Revoked func(user string) bool
}

// Limits bound what clients can make the server do. Zero means no limit.
type Limits struct {
	// UnauthenticatedRate caps answers per second to one source IP for requests without
	// valid credentials, BindingRate those to Binding requests.
	UnauthenticatedRate, BindingRate int
	// Permissions caps the peer IPs one allocation has permissions for, Channels its
	// channels: one more is answered 508.
	Permissions, Channels int
	// MaxLifetime is the longest LIFETIME an allocation gets; 0 leaves pion's own rule
	// (under an hour, or else its 10-minute default).
	MaxLifetime time.Duration
	// AllocateTimeout closes a TCP, TLS or DTLS connection that has had no allocation for
	// this long.
	AllocateTimeout time.Duration
	// DTLSHandshakes caps the DTLS handshakes in progress, DTLSHandshakesPerIP those from
	// one source IP (IPv6: /64): a ClientHello past either is dropped (internal/dtlsgate).
	DTLSHandshakes, DTLSHandshakesPerIP int
}

// Settings are what a reload changes on a running server.
type Settings struct {
	Auth   *auth.Authenticator
	Certs  []*tls.Certificate // one per Config.Listeners entry; nil for udp and tcp
	Limits Limits
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
	pion      *turn.Server
	guard     *guard
	sessions  *sessions
	meters    *meters
	allocator *relay.Allocator
	log       *slog.Logger
	addrs     []net.Addr
	bound     []boundListener
	certs     []*atomic.Pointer[tls.Certificate] // per listener; nil for udp and tcp
}

// New opens every listener and starts serving. On error nothing is left open.
func New(cfg Config) (*Server, error) {
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	s := &Server{sessions: newSessions(), allocator: cfg.Allocator, log: cfg.Log,
		meters: newMeters(set, cfg.Allocator)}
	s.guard = &guard{
		policy:    cfg.Policy,
		families:  cfg.Allocator.Enabled,
		connRoom:  cfg.Allocator.ConnRoom,
		sessions:  s.sessions,
		plane:     newDataPlane(),
		meters:    s.meters,
		unauth:    newIPLimiter(cfg.Limits.UnauthenticatedRate),
		bindings:  newIPLimiter(cfg.Limits.BindingRate),
		peerLimit: cfg.PeerLimit,
		revoked:   cfg.Revoked,
		log:       cfg.Log,
		logLimit:  rate.NewLimiter(rate.Every(time.Second), 20),
	}
	s.guard.auth.Store(cfg.Auth)
	s.guard.limits.Store(&cfg.Limits)
	if cfg.Software != "" {
		s.guard.software = stun.NewSoftware(cfg.Software)
	}

	pionCfg := turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.authHandler,
		QuotaHandler:  s.quotaHandler(cfg.Quota),
		EventHandler:  s.events(cfg.Quota),
		LoggerFactory: pionlog.Factory{Log: cfg.Log},
	}
	permit := func(_ net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		if ok && cfg.Policy.PermitIP(ip) {
			return true
		}
		s.meters.peerDenied[deniedCreatePermission].Add(1)
		return false
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
			s.bind(l.Proto, pc.LocalAddr())
			pionCfg.PacketConnConfigs = append(pionCfg.PacketConnConfigs, turn.PacketConnConfig{
				PacketConn: pc, RelayAddressGenerator: cfg.Allocator, PermissionHandler: permit,
			})
			continue
		}
		closers = append(closers, ln)
		s.bind(l.Proto, ln.Addr())
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

func (s *Server) bind(proto string, addr net.Addr) {
	s.addrs = append(s.addrs, addr)
	ap, _ := addrPort(addr)
	s.bound = append(s.bound, boundListener{proto: proto, addr: ap})
}

// Addrs returns the bound address of each listener, in Config.Listeners order.
func (s *Server) Addrs() []net.Addr { return s.addrs }

// Allocations returns the number of live allocations.
func (s *Server) Allocations() int { return s.sessions.count() }

// DeniedSends returns how many Send indications the peer policy dropped.
func (s *Server) DeniedSends() uint64 { return s.meters.peerDenied[deniedSend].Load() }

// Apply puts reloaded settings into effect. Allocations keep running; the new credentials
// apply from the next request, the new certificates from the next handshake.
func (s *Server) Apply(st Settings) {
	s.guard.auth.Store(st.Auth)
	for i, cert := range st.Certs {
		if cert != nil && i < len(s.certs) && s.certs[i] != nil {
			s.certs[i].Store(cert)
		}
	}
	s.guard.limits.Store(&st.Limits)
	s.guard.unauth.set(st.Limits.UnauthenticatedRate)
	s.guard.bindings.set(st.Limits.BindingRate)
}

// Drain stops new allocations: every Allocate is answered 508 Insufficient Capacity, or
// 300 Try Alternate with alternate when it is valid. Existing allocations go on.
func (s *Server) Drain(alternate netip.AddrPort) {
	if alternate.IsValid() {
		ip := alternate.Addr().Unmap()
		s.guard.alternate.Store(&stun.AlternateServer{IP: ip.AsSlice(), Port: int(alternate.Port())})
	}
	s.guard.draining.Store(true)
}

// Resume ends a drain: Allocates are served again.
func (s *Server) Resume() {
	s.guard.draining.Store(false)
	s.guard.alternate.Store(nil)
}

// Sessions describes every live allocation.
func (s *Server) Sessions() []Session { return s.sessions.list(time.Now()) }

// Kill ends the session with id: its relay closes, pion deletes the allocation, and the
// client's next request about it is answered 437. false if there is no such session.
func (s *Server) Kill(id string) bool {
	return s.end(s.sessions.kill(func(sess *session) bool { return strconv.FormatUint(sess.id, 10) == id })) > 0
}

// KillUser ends every session of user, as Kill does, and returns how many it ended.
func (s *Server) KillUser(user string) int {
	return s.end(s.sessions.kill(func(sess *session) bool { return sess.user == user }))
}

// end closes the relays of sessions the admin (or the SFU) ended.
func (s *Server) end(relays []net.Addr) int {
	for _, relayAddr := range relays {
		ap, _ := addrPort(relayAddr)
		s.allocator.End(ap.Port())
	}
	return len(relays)
}

// Close stops every listener and ends every allocation.
func (s *Server) Close() error { return s.pion.Close() }

func (s *Server) authHandler(ra *turn.RequestAttributes) (string, []byte, bool) {
	user, key, err := s.guard.auth.Load().Key(ra.Username, ra.Realm, time.Now())
	return user, key, err == nil
}

func (s *Server) quotaHandler(q *relay.Quota) turn.QuotaHandler {
	return func(user, _ string, client net.Addr) bool {
		if q.Admit(user, client) {
			return true
		}
		s.meters.quota.Inc()
		s.log.Info("allocation quota reached", "user", user, "client", client)
		return false
	}
}

func (s *Server) events(q *relay.Quota) turn.EventHandler {
	return turn.EventHandler{
		OnAllocationCreated: func(client, server net.Addr, _, user, realm string, relayAddr net.Addr, _ int) {
			q.Created(client)
			sess := &session{
				user: user, realm: realm, client: client, relay: relayAddr, created: time.Now(),
				transport: transportOf(s.bound, client, server),
				perms:     map[netip.Addr]struct{}{}, channels: map[uint16]netip.AddrPort{},
			}
			ap, _ := addrPort(relayAddr)
			sess.traffic, _ = s.allocator.Traffic(ap.Port())
			s.openRoute(sess, server, ap.Port())
			s.sessions.add(server, sess)
			s.guard.plane.awaitAllocation(client, server, 0)
			s.meters.allocationCreated(sess.key())
			s.log.Info("allocation created", "id", sess.id, "user", user, "client", client,
				"transport", sess.transport, "relay", relayAddr)
		},
		OnAllocationDeleted: func(client, server net.Addr, _, user, _ string) {
			q.Released(user)
			sess, ok := s.sessions.remove(client, server)
			if !ok {
				return
			}
			if sess.route != nil {
				s.guard.plane.close(sess.routeKey, sess.route)
			}
			s.guard.plane.awaitAllocation(client, server, s.guard.limits.Load().AllocateTimeout)
			s.ended(sess)
		},
		OnAllocationError: func(client, _ net.Addr, _, message string) {
			q.Failed(client)
			s.log.Debug("request failed", "client", client, "err", message)
		},
		OnPermissionCreated: func(client, server net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			if ip, ok := netip.AddrFromSlice(peer); ok {
				s.sessions.update(client, server, func(sess *session) {
					sess.perms[ip.Unmap()] = struct{}{}
					delete(sess.pendingPerms, ip.Unmap())
					sess.publishPeers()
				})
			}
		},
		OnPermissionDeleted: func(client, server net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			if ip, ok := netip.AddrFromSlice(peer); ok {
				s.sessions.update(client, server, func(sess *session) {
					delete(sess.perms, ip.Unmap())
					sess.publishPeers()
				})
			}
		},
		OnChannelCreated: func(client, server net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
			ap, ok := addrPort(peer)
			if !ok {
				return
			}
			s.sessions.update(client, server, func(sess *session) {
				sess.channels[number] = ap
				delete(sess.pendingChannels, number)
				sess.publishPeers()
			})
		},
		OnChannelDeleted: func(client, server net.Addr, _, _, _ string, _, _ net.Addr, number uint16) {
			s.sessions.update(client, server, func(sess *session) {
				delete(sess.channels, number)
				sess.publishPeers()
			})
		},
	}
}

// openRoute puts a new allocation with a UDP relay on relayPort on the data plane.
func (s *Server) openRoute(sess *session, server net.Addr, relayPort uint16) {
	rl, ok := s.allocator.UDPRelay(relayPort)
	if !ok {
		return // an RFC 6062 TCP allocation: its data goes over its own connections
	}
	client, _ := addrPort(sess.client)
	local, _ := addrPort(server)
	sess.routeKey = routeKey{client: client, server: local, stream: sess.transport != "udp"}
	sess.route = s.guard.plane.open(sess.routeKey, rl, s.guard.onlyPeer(sess.user))
}

// ended accounts for an allocation pion deleted: metrics and the log line with its traffic.
func (s *Server) ended(sess *session) {
	s.meters.allocationEnded(sess.key())
	lifetime := time.Since(sess.created)
	s.meters.lifetime.Observe(lifetime.Seconds())
	u := sess.usage()
	s.log.Info("allocation ended", "id", sess.id, "user", sess.user, "client", sess.client,
		"transport", sess.transport, "relay", sess.relay, "duration", lifetime.Round(time.Millisecond),
		"killed", sess.killed, "to_peer_bytes", u.ToPeerBytes, "from_peer_bytes", u.FromPeerBytes)
}
