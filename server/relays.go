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

// relays is what the TURN relays and the SFU share: the port pool, the peer policy, the
// in-process hand-off and the relay addresses.
type relays struct {
	pool   *relay.Pool
	policy *relay.Policy
	local  *relay.Local
	v4, v6 relay.Addrs
}

func newRelays(cfg *conf.Config, log *slog.Logger) (*relays, error) {
	r := &relays{}
	var err error
	if r.v4, r.v6, err = relayAddrs(cfg, log); err != nil {
		return nil, err
	}
	if r.pool, err = relay.NewPool(cfg.Relay.MinPort, cfg.Relay.MaxPort); err != nil {
		return nil, cfg.Errorf("relay.min_port", "%v", err)
	}
	own := append(r.v4.OwnIPs(), r.v6.OwnIPs()...)
	r.policy, err = relay.NewPolicy(cfg.Relay.DenyPeers, cfg.Relay.AllowPeers, own, r.pool.Held)
	if err != nil {
		return nil, cfg.Errorf("relay.deny_peers", "%v", err)
	}
	r.local = relay.NewLocal(r.pool)
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

// turnLimits are the [limits] of cfg, as the TURN server takes them.
func turnLimits(cfg *conf.Config) turnserver.Limits {
	l := cfg.Limits
	tcpTotal := l.TCPConnectionsTotal
	if tcpTotal == 0 {
		// Every peer connection holds a descriptor and its data connection another;
		// listeners and relays need the rest.
		tcpTotal = openFileLimit() / 4
	}
	return turnserver.Limits{
		AllocationsPerUser:       l.AllocationsPerUser,
		AllocationsTotal:         l.AllocationsTotal,
		UnauthenticatedRate:      l.UnauthenticatedPerIPRate,
		BindingRate:              l.BindingPerIPRate,
		Permissions:              l.PermissionsPerAllocation,
		Channels:                 l.ChannelsPerAllocation,
		MaxLifetime:              l.MaxAllocationLifetime.Duration,
		AllocateTimeout:          l.AllocateTimeout.Duration,
		DTLSHandshakes:           l.DTLSHandshakes,
		DTLSHandshakesPerIP:      l.DTLSHandshakesPerIP,
		ConnectionsPerAllocation: l.ConnectionsPerAllocation,
		TCPConnections:           tcpTotal,
	}
}
