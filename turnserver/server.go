// Package turnserver is Ferry's STUN/TURN server (RFC 8489, 8656, 6062, 6156), written
// here on pion/stun's message format: one allocation table owns every allocation, a
// handler per method changes it, and the data plane relays ChannelData, Send and Data
// indications on the listeners' and relays' read loops with lock-free lookups.
package turnserver

import (
	"crypto/tls"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/stun/v4"
	"golang.org/x/time/rate"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/iplimit"
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
	Pool      *relay.Pool   // every relay port comes from here
	Policy    *relay.Policy // which peers relays may talk to
	V4, V6    relay.Addrs   // the relay addresses of each family; a family not Enabled is off
	Local     *relay.Local  // the in-process hand-off to the SFU; nil: none
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
	// QuotaGroup, if set, puts users into groups counted as one under a limit of their
	// own (0: none), in place of AllocationsPerUser; ok false leaves a user on their own.
	QuotaGroup func(user string) (group string, limit int, ok bool)
	// Offload, if set, is the kernel fast path: the table drives its maps.
	Offload Offload
	// Shared, if set, counts the quota slots of users and groups that have a limit across
	// servers (a cluster): the allocations other servers hold count against the limit.
	Shared SharedQuota
}

// SharedQuota is a quota count kept across servers.
type SharedQuota interface {
	// Others returns the allocations that other servers hold of slot; ok false when that
	// is not known now (the local count alone decides).
	Others(slot string) (n int, ok bool)
	// Changed is told the allocations this server holds of slot after each change, in
	// order: it runs under the allocation table's lock, so it must not block.
	Changed(slot string, n int)
}

// Limits bound what clients can make the server do. Zero means no limit.
type Limits struct {
	// AllocationsPerUser and AllocationsTotal are the quotas (486 past them).
	AllocationsPerUser, AllocationsTotal int
	// UnauthenticatedRate caps answers per second to requests without valid credentials,
	// BindingRate those to Binding requests: per source IP over UDP, per connection over
	// streams.
	UnauthenticatedRate, BindingRate int
	// Permissions caps the peer IPs one allocation has permissions for, Channels its
	// channels: one more is answered 508.
	Permissions, Channels int
	// MaxLifetime is the longest lifetime an allocation gets; a longer LIFETIME gets it.
	MaxLifetime time.Duration
	// AllocateTimeout closes a TCP, TLS or DTLS connection that has had no allocation for
	// this long.
	AllocateTimeout time.Duration
	// DTLSHandshakes caps the DTLS handshakes in progress, DTLSHandshakesPerIP those from
	// one source IP (IPv6: /64): a ClientHello past either is dropped (internal/dtlsgate).
	DTLSHandshakes, DTLSHandshakesPerIP int
	// ConnectionsPerAllocation caps an RFC 6062 allocation's peer connections,
	// TCPConnections those of the whole server: a Connect past either is 508.
	ConnectionsPerAllocation, TCPConnections int
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
	// cfg is the Config New got; the live Auth and Limits, which a reload replaces, are in
	// auth and limits.
	cfg      Config
	software stun.Setter   // nil: no SOFTWARE attribute
	logLimit *rate.Limiter // auth failures are logged at most this often: a flood must not fill the disk

	auth     atomic.Pointer[auth.Authenticator]
	limits   atomic.Pointer[Limits]
	unauth   *iplimit.Limiter
	bindings *iplimit.Limiter
	nonces   *nonces
	meters   *meters
	table    *table
	reserved reservations

	// drain is set while draining: the alternate server to answer Allocate 300 with, or one
	// with no IP for 508.
	drain atomic.Pointer[stun.AlternateServer]

	listeners []*listener
	stop      chan struct{}
	wg        sync.WaitGroup // every goroutine the server started
	closeOnce sync.Once
}

// New opens every listener and starts serving. On error nothing is left open.
func New(cfg Config) (*Server, error) {
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	s := &Server{
		cfg:      cfg,
		logLimit: rate.NewLimiter(rate.Every(time.Second), 20),
		unauth:   iplimit.New(cfg.Limits.UnauthenticatedRate),
		bindings: iplimit.New(cfg.Limits.BindingRate),
		nonces:   newNonces(), table: newTable(cfg.Shared), stop: make(chan struct{}),
		reserved: reservations{held: map[[8]byte]*reservation{}},
	}
	if cfg.Software != "" {
		s.software = stun.NewSoftware(cfg.Software)
	}
	s.auth.Store(cfg.Auth)
	s.limits.Store(&cfg.Limits)
	s.meters = newMeters(set, s)
	for i, l := range cfg.Listeners {
		ln, err := s.open(l)
		if err != nil {
			_ = s.Close()
			return nil, &ListenError{Index: i, Err: err}
		}
		s.listeners = append(s.listeners, ln)
	}
	for _, ln := range s.listeners {
		ln.serve()
	}
	s.wg.Go(s.sweep)
	return s, nil
}

// Addrs returns the bound address of each listener, in Config.Listeners order.
func (s *Server) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.addr
	}
	return out
}

// Allocations returns the number of live allocations.
func (s *Server) Allocations() int { return int(s.table.live.Load()) }

// Apply puts reloaded settings into effect. Allocations keep running; the new credentials
// apply from the next request, the new certificates from the next handshake. The peer
// policy (which the caller has replaced) is applied again to every permission and channel:
// those it now denies end, in user space and in the kernel.
func (s *Server) Apply(st Settings) {
	defer s.recheckPeers(time.Now())
	s.auth.Store(st.Auth)
	for i, cert := range st.Certs {
		if cert != nil && i < len(s.listeners) && s.listeners[i].cert.Load() != nil {
			s.listeners[i].cert.Store(cert)
		}
	}
	s.limits.Store(&st.Limits)
	s.unauth.Set(st.Limits.UnauthenticatedRate)
	s.bindings.Set(st.Limits.BindingRate)
}

// Drain stops new allocations: every Allocate is answered 508 Insufficient Capacity, or
// 300 Try Alternate with alternate when it is valid. Existing allocations go on.
func (s *Server) Drain(alternate netip.AddrPort) {
	alt := &stun.AlternateServer{}
	if alternate.IsValid() {
		alt.IP, alt.Port = alternate.Addr().Unmap().AsSlice(), int(alternate.Port())
	}
	s.drain.Store(alt)
}

// Resume ends a drain: Allocates are served again.
func (s *Server) Resume() {
	s.drain.Store(nil)
}

// Kill ends the allocation with id: its relay closes at once, and the client's next
// request about it is answered 437. false if there is no such allocation.
func (s *Server) Kill(id string) bool {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return false
	}
	return s.killWhere(func(a *allocation) bool { return a.id == n }) > 0
}

// KillUser ends every allocation of user, as Kill does, and returns how many it ended.
func (s *Server) KillUser(user string) int {
	return s.killWhere(func(a *allocation) bool { return a.user == user })
}

func (s *Server) killWhere(match func(*allocation) bool) int {
	n := 0
	for _, a := range s.table.all() {
		if match(a) {
			s.end(a, "killed")
			n++
		}
	}
	return n
}

// Close stops every listener, ends every allocation and waits for every goroutine the
// server started.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		for _, l := range s.listeners {
			l.close()
		}
		for _, a := range s.table.all() {
			s.end(a, "server stopped")
		}
		s.reserved.expire(time.Now().Add(reservationLifetime+time.Second), s.cfg.Pool)
	})
	s.wg.Wait()
	return nil
}

// lifetimeSweep is how often lifetimes are enforced: allocations, permissions and channels
// end within this much of their expiry (the data plane checks its own expiries on every
// packet, so only the control plane's view lags).
const lifetimeSweep = time.Second

// sweep ends allocations whose lifetime ran out, forgets expired permissions and channels,
// and lets expired reservations go, until the server closes.
func (s *Server) sweep() {
	tick := time.NewTicker(lifetimeSweep)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-tick.C:
			for _, a := range s.table.all() {
				if !a.live(now) {
					s.end(a, "expired")
					continue
				}
				a.expire(now)
			}
			s.reserved.expire(now, s.cfg.Pool)
		}
	}
}

// end ends an allocation, once: it leaves the table, its relays close and give their ports
// back, and it is logged and counted.
func (s *Server) end(a *allocation, why string) {
	if !a.ended.CompareAndSwap(false, true) {
		return
	}
	a.endKernel() // before the relay ports go back to the pool
	if s.table.remove(a) {
		s.table.release(a.quotaSlot)
	}
	a.closeRelays()
	if c, ok := a.client.(*streamConn); ok && c.alloc.CompareAndSwap(a, nil) {
		c.awaitAllocation(s.limits.Load().AllocateTimeout) // to make another, or be closed
	}
	s.meters.allocationEnded(a)
	u, k := a.usage(), a.kernelUsage()
	s.cfg.Log.Info("allocation ended", "id", a.id, "user", a.user, "client", a.five.client.String(),
		"transport", a.transport, "relay", a.relayAddrs(), "duration", time.Since(a.created).Round(time.Millisecond),
		"reason", why, "killed", why == "killed", "to_peer_bytes", u.ToPeerBytes, "from_peer_bytes", u.FromPeerBytes,
		"kernel_to_peer_packets", k.ToPeerPackets, "kernel_from_peer_packets", k.FromPeerPackets)
}
