package server

import (
	"context"
	"net/netip"
	"os"
	"slices"

	"github.com/ferry-rtc/ferry/cluster"
	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/sfu"
)

// startCluster joins the cluster that [cluster] redis names, if any. It runs after the SFU
// exists and before TURN serves: TURN's quotas count through it.
func (s *Server) startCluster(cfg *conf.Config, version string) error {
	if cfg.Cluster.Redis == "" {
		return nil
	}
	name, err := nodeName(cfg)
	if err != nil {
		return err
	}
	turnAddr, err := s.advertisedTURN(cfg)
	if err != nil {
		return err
	}
	sfuURL, err := s.advertisedSFU(cfg)
	if err != nil {
		return err
	}
	cpu := &cpuMeter{}
	c, err := cluster.New(cluster.Config{
		URL: cfg.Cluster.Redis, Node: name, TURN: turnAddr, SFU: sfuURL, TTL: cfg.Cluster.TTL.Duration, Version: version,
		State: func() (cluster.Load, bool) {
			load := cluster.Load{Sessions: s.sfuSessions(), CPU: cpu.sample()}
			if turn := s.serving.Load(); turn != nil {
				load.Allocations = turn.Allocations()
			}
			return load, s.draining.Load()
		},
		Published: s.publishedRooms,
		Lost:      s.roomLost,
		Refreshed: s.clusterRefreshed,
		Log:       s.log,
		Meters:    s.clusterMeters,
	})
	if err != nil {
		return cfg.Errorf("cluster.redis", "%v", err)
	}
	s.cluster = c
	return nil
}

// nodeName is cluster.node, or the host name.
func nodeName(cfg *conf.Config) (string, error) {
	if cfg.Cluster.Node != "" {
		return cfg.Cluster.Node, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", cfg.Errorf("cluster.node", "no host name to name this node by (%v): set cluster.node", err)
	}
	if !conf.ValidNodeName(host) {
		return "", cfg.Errorf("cluster.node", "the host name %q cannot name a node: set cluster.node", host)
	}
	return host, nil
}

// advertisedTURN is the TURN address other nodes send clients to: cluster.advertise_turn,
// or the first udp listener's advertised address (of any listener without a udp one).
func (s *Server) advertisedTURN(cfg *conf.Config) (netip.AddrPort, error) {
	if a := cfg.Cluster.AdvertiseTURN; a != "" {
		return netip.ParseAddrPort(a) // validated
	}
	listeners := slices.Clone(cfg.Listen)
	slices.SortStableFunc(listeners, func(a, b conf.Listener) int {
		return boolInt(a.Proto != "udp") - boolInt(b.Proto != "udp")
	})
	for _, l := range listeners {
		if addr, ok := advertised(l, s.relays.v4, s.relays.v6); ok {
			return addr, nil
		}
	}
	return netip.AddrPort{}, cfg.Errorf("cluster.advertise_turn", "no listener has an address to advertise: set it")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// advertisedSFU is the base URL other nodes redirect WHIP and WHEP requests to:
// cluster.advertise_sfu, or http:// with sfu.http's address (the relay's public address for
// a wildcard one); "" without the SFU.
func (s *Server) advertisedSFU(cfg *conf.Config) (string, error) {
	if s.sfu == nil {
		return "", nil
	}
	if u := cfg.Cluster.AdvertiseSFU; u != "" {
		return u, nil
	}
	ap, _ := netip.ParseAddrPort(cfg.SFU.HTTP) // validated
	host := ap.Addr()
	if host.IsUnspecified() {
		host = s.relays.v4.Public
		if ap.Addr().Is6() {
			host = s.relays.v6.Public
		}
	}
	if ap.Port() == 0 || !host.IsValid() {
		return "", cfg.Errorf("cluster.advertise_sfu", "sfu.http %s gives no address other nodes can redirect to: set it", cfg.SFU.HTTP)
	}
	return "http://" + netip.AddrPortFrom(host, ap.Port()).String(), nil
}

// sfuRoute is the SFU's Route: where the room directory says a WHIP or WHEP request for
// room is served. A WHIP claims a room nobody owns for this node, unless this node drains:
// then it goes to the least-loaded live node. Without Redis, every room is served here.
func (s *Server) sfuRoute(ctx context.Context, room string, publish bool) sfu.Redirect {
	c := s.cluster
	if c == nil {
		return sfu.Redirect{}
	}
	var rt cluster.Route
	var err error
	switch {
	case publish && s.draining.Load():
		if rt, err = c.Owner(ctx, room); err == nil && rt.Owner == "" {
			if n, ok := c.LeastLoaded(); ok && n.SFU != "" {
				s.clusterMeters.Redirected(publish)
				return sfu.Redirect{URL: n.SFU}
			}
		}
	case publish:
		rt, err = c.Claim(ctx, room)
	default:
		rt, err = c.Owner(ctx, room)
	}
	switch {
	case err != nil || rt.Here:
		return sfu.Redirect{}
	case rt.Node.SFU != "":
		s.clusterMeters.Redirected(publish)
		return sfu.Redirect{URL: rt.Node.SFU}
	}
	return sfu.Redirect{RetryAfter: rt.Retry}
}

// publishedRooms are the rooms with a publisher here: the cluster renews their claims.
func (s *Server) publishedRooms() []string {
	if s.sfu == nil {
		return nil
	}
	var rooms []string
	for _, si := range s.sfu.sfu.SessionList("") {
		if si.Role == "publisher" && !slices.Contains(rooms, si.Room) {
			rooms = append(rooms, si.Room)
		}
	}
	return rooms
}

// roomLost ends the sessions of a room that another node owns now: this node was cut from
// Redis past the TTL and the room was claimed elsewhere. Its clients come back through the
// directory, to the owner.
func (s *Server) roomLost(room, owner string) {
	if s.sfu == nil {
		return
	}
	n := 0
	for _, si := range s.sfu.sfu.SessionList(room) {
		if si.Role == "publisher" && s.sfu.sfu.Kill(si.ID) {
			n++
		}
	}
	s.log.Warn("cluster: room lost to another node: its publishers here were ended (their viewers with them)",
		"room", room, "owner", owner, "publishers", n)
}

// clusterRefreshed follows the registry while draining: Allocates are sent to the
// least-loaded live node (300 Try Alternate), unless server.alternate_server names one.
func (s *Server) clusterRefreshed() {
	if s.draining.Load() && s.turn != nil {
		if alt, ok := s.clusterAlternate(); ok {
			s.turn.Drain(alt)
		}
	}
}

// clusterAlternate is the TURN address of the least-loaded other live node, when no
// server.alternate_server is set.
func (s *Server) clusterAlternate() (netip.AddrPort, bool) {
	if s.cluster == nil || s.cfg.Load().Server.AlternateServer != "" {
		return netip.AddrPort{}, false
	}
	n, ok := s.cluster.LeastLoaded()
	if !ok {
		return netip.AddrPort{}, false
	}
	alt, err := netip.ParseAddrPort(n.TURN)
	return alt, err == nil
}

// clusterName is this node's name in the cluster, or "off".
func (s *Server) clusterName() string {
	if s.cluster == nil {
		return "off"
	}
	return s.cluster.Name()
}
