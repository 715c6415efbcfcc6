package server

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/turnserver/offload"
)

// startOffload loads the kernel fast path as [relay] offload says, and logs one line on
// what came of it: on (with its interfaces), off by the config, or off because the kernel,
// the capabilities or the addresses do not allow it (Ferry then relays in user space).
func (s *Server) startOffload(cfg *conf.Config) *offload.Offload {
	if cfg.Relay.Offload == "off" {
		s.log.Info("kernel fast path off ([relay] offload = \"off\"): relaying in user space")
		return nil
	}
	var listeners []netip.AddrPort
	for _, l := range cfg.Listen {
		if l.Proto == "udp" {
			addr, _ := netip.ParseAddrPort(l.Addr) // validated
			listeners = append(listeners, addr)
		}
	}
	if len(listeners) == 0 {
		s.log.Info("kernel fast path off: no udp listener: relaying in user space")
		return nil
	}
	o, err := offload.Open(offload.Config{
		Interfaces: cfg.Relay.OffloadInterfaces,
		Listeners:  listeners,
		RelayBind:  s.relays.v4.Bind,
		MinPort:    cfg.Relay.MinPort,
		MaxPort:    cfg.Relay.MaxPort,
	})
	switch {
	case errors.Is(err, offload.ErrNothingToAttach):
		s.log.Info("kernel fast path off: " + err.Error() + ": relaying in user space")
		return nil
	case err != nil:
		s.log.Warn("kernel fast path off: "+err.Error()+": relaying in user space", "config", "[relay] offload = \"auto\"")
		return nil
	}
	s.log.Info("kernel fast path on: UDP clients' ChannelData is relayed in the kernel", "interfaces", strings.Join(o.Interfaces(), ","))
	return o
}
