package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/internal/portprobe"
	"github.com/ferry-rtc/ferry/relay"
	"github.com/ferry-rtc/ferry/turnserver"
)

// relays is the relay side of the server, shared with the SFU later.
type relays struct {
	allocator *relay.Allocator
	policy    *relay.Policy
	v4, v6    relay.Addrs
}

func newRelays(cfg *conf.Config, log *slog.Logger) (*relays, error) {
	r := &relays{}
	var err error
	if r.v4, r.v6, err = relayAddrs(cfg, log); err != nil {
		return nil, err
	}
	pool, err := relay.NewPool(cfg.Relay.MinPort, cfg.Relay.MaxPort)
	if err != nil {
		return nil, cfg.Errorf("relay.min_port", "%v", err)
	}
	own := append(r.v4.OwnIPs(), r.v6.OwnIPs()...)
	r.policy, err = relay.NewPolicy(cfg.Relay.DenyPeers, cfg.Relay.AllowPeers, own, pool.Held)
	if err != nil {
		return nil, cfg.Errorf("relay.deny_peers", "%v", err)
	}
	r.allocator = relay.NewAllocator(pool, r.policy, r.v4, r.v6)
	r.applyConnLimits(cfg)
	return r, nil
}

// relayAddrs resolves the IPv4 and IPv6 relay addresses of cfg. IPv6 relays are turned off,
// with a warning, when the wildcard is configured and there is no address to advertise.
func relayAddrs(cfg *conf.Config, log *slog.Logger) (v4, v6 relay.Addrs, err error) {
	var ok bool
	if v4, ok = relay.ResolveAddrs(parseIP(cfg.Relay.BindIP), parseIP(cfg.Relay.PublicIP)); !ok {
		return v4, v6, cfg.Errorf("relay.public_ip", "bind_ip %s is the wildcard and this machine has no "+
			"non-loopback IPv4 address to advertise: set public_ip", cfg.Relay.BindIP)
	}
	if v6, ok = relay.ResolveAddrs(parseIP(cfg.Relay.BindIP6), parseIP(cfg.Relay.PublicIP6)); !ok {
		log.Warn("IPv6 relays disabled: bind_ip6 is the wildcard and this machine has no global IPv6 address; set public_ip6")
		v6 = relay.Addrs{}
	}
	return v4, v6, nil
}

// turnListeners are the [[listen]] tables of cfg with their certificates.
func turnListeners(cfg *conf.Config, certs []*tls.Certificate) []turnserver.Listener {
	out := make([]turnserver.Listener, len(cfg.Listen))
	for i, l := range cfg.Listen {
		addr, _ := netip.ParseAddrPort(l.Addr)
		out[i] = turnserver.Listener{Proto: l.Proto, Addr: addr, Cert: certs[i]}
	}
	return out
}

// checkListenPorts refuses to start on a listener address that another process holds
// (see portprobe): whatever opens the listeners, a second Ferry must not join them.
func checkListenPorts(cfg *conf.Config) error {
	for i, l := range cfg.Listen {
		addr, _ := netip.ParseAddrPort(l.Addr) // validated
		if err := portprobe.Free(l.Network(), addr); err != nil {
			return cfg.Errorf(fmt.Sprintf("listen[%d].addr", i), "%v", err)
		}
	}
	return nil
}

// loadCerts reads the certificate of each tls and dtls listener; nil for the others.
func loadCerts(cfg *conf.Config) ([]*tls.Certificate, error) {
	certs := make([]*tls.Certificate, len(cfg.Listen))
	for i, l := range cfg.Listen {
		if l.Cert == "" {
			continue
		}
		cert, err := tls.LoadX509KeyPair(l.Cert, l.Key)
		if err != nil {
			return nil, cfg.Errorf(fmt.Sprintf("listen[%d].cert", i), "%v", err)
		}
		certs[i] = &cert
	}
	return certs, nil
}

// turnLimits are the [limits] the TURN server applies itself (the allocation quotas are
// relay.Quota's).
func turnLimits(cfg *conf.Config) turnserver.Limits {
	l := cfg.Limits
	return turnserver.Limits{
		UnauthenticatedRate: l.UnauthenticatedPerIPRate,
		BindingRate:         l.BindingPerIPRate,
		Permissions:         l.PermissionsPerAllocation,
		Channels:            l.ChannelsPerAllocation,
		MaxLifetime:         l.MaxAllocationLifetime.Duration,
		AllocateTimeout:     l.AllocateTimeout.Duration,
		DTLSHandshakes:      l.DTLSHandshakes,
		DTLSHandshakesPerIP: l.DTLSHandshakesPerIP,
	}
}

// applyConnLimits sets the RFC 6062 connection limits of cfg on the allocator.
// tcp_connections_total 0 is a quarter of the open-file limit: every peer connection holds a
// descriptor and its data connection another, and listeners and relays need the rest.
func (r *relays) applyConnLimits(cfg *conf.Config) {
	total := cfg.Limits.TCPConnectionsTotal
	if total == 0 {
		total = openFileLimit() / 4
	}
	r.allocator.SetConnLimits(cfg.Limits.ConnectionsPerAllocation, total)
}
