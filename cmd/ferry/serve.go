package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/relay"
	"github.com/ferry-rtc/ferry/turnserver"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:   "serve",
		Usage:  "run the STUN/TURN server",
		Flags:  []cli.Flag{configFlag},
		Action: serve,
	}
}

func serve(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	relays, err := newRelays(cfg, log)
	if err != nil {
		return err
	}
	var users []auth.User
	if path := cfg.Auth.UsersFile; path != "" {
		if users, err = auth.ReadUsers(path); err != nil {
			return err
		}
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			log.Info("users file does not exist yet: no users ('ferry user add' creates it)", "path", path)
		}
	}
	secrets := cfg.Auth.Secrets
	zeroConfig := len(users) == 0 && len(secrets) == 0
	if zeroConfig {
		secrets = []string{randomSecret()}
	}
	listeners, err := turnListeners(cfg)
	if err != nil {
		return err
	}
	srv, err := turnserver.New(turnserver.Config{
		Realm:     cfg.Server.Realm,
		Software:  cfg.Server.Software,
		Listeners: listeners,
		Auth:      auth.New(cfg.Server.Realm, users, secrets),
		Allocator: relays.allocator,
		Policy:    relays.policy,
		Quota:     relay.NewQuota(cfg.Limits.AllocationsPerUser, cfg.Limits.AllocationsTotal),
		Log:       log,
	})
	if err != nil {
		var le *turnserver.ListenError
		if errors.As(err, &le) {
			return cfg.Errorf(fmt.Sprintf("listen[%d].addr", le.Index), "%v", le.Err)
		}
		return err
	}
	defer srv.Close()

	if zeroConfig {
		stunURIs, turnURIs := auth.URIs(endpoints(cfg, relays.v4, relays.v6))
		cred := auth.NewRESTResponse(secrets[0], "ferry", cfg.Auth.CredentialTTL.Duration, time.Now(), turnURIs)
		if err := printZeroConfig(c.App.Writer, stunURIs, cred); err != nil {
			return err
		}
	}

	// The last line of start-up: everything is listening and printed.
	log.Info("ferry serving", "config", cfg.File(), "realm", cfg.Server.Realm, "listeners", srv.Addrs(),
		"relay_ipv4", relays.v4.Public, "relay_ipv6", relays.v6.Public,
		"ports", fmt.Sprintf("%d-%d", cfg.Relay.MinPort, cfg.Relay.MaxPort),
		"users", len(users), "secrets", len(secrets))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("ferry stopping")
	return nil
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func printZeroConfig(w io.Writer, stunURIs []string, cred auth.RESTResponse) error {
	js, err := json.Marshal(map[string]any{"iceServers": auth.ICEServers(stunURIs, cred)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "No users and no secrets are configured: this run uses a generated TURN REST secret.\n"+
		"RTCPeerConnection configuration, valid for %s:\n%s\n", time.Duration(cred.TTL)*time.Second, js)
	return err
}

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
	own := []netip.Addr{r.v4.Bind, r.v4.Public, r.v6.Bind, r.v6.Public}
	r.policy, err = relay.NewPolicy(cfg.Relay.DenyPeers, cfg.Relay.AllowPeers, own, pool.Held)
	if err != nil {
		return nil, cfg.Errorf("relay.deny_peers", "%v", err)
	}
	r.allocator = relay.NewAllocator(pool, r.policy, r.v4, r.v6)
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

// parseIP parses a validated config address; "" gives the invalid Addr.
func parseIP(s string) netip.Addr {
	ip, _ := netip.ParseAddr(s)
	return ip
}

func turnListeners(cfg *conf.Config) ([]turnserver.Listener, error) {
	out := make([]turnserver.Listener, len(cfg.Listen))
	for i, l := range cfg.Listen {
		addr, _ := netip.ParseAddrPort(l.Addr)
		out[i] = turnserver.Listener{Proto: l.Proto, Addr: addr}
		if l.Cert == "" {
			continue
		}
		cert, err := tls.LoadX509KeyPair(l.Cert, l.Key)
		if err != nil {
			return nil, cfg.Errorf(fmt.Sprintf("listen[%d].cert", i), "%v", err)
		}
		out[i].Cert = &cert
	}
	return out, nil
}

// endpoints are the listeners as clients reach them: a wildcard listener is advertised at
// the relay's public address of its family.
func endpoints(cfg *conf.Config, v4, v6 relay.Addrs) []auth.Endpoint {
	var out []auth.Endpoint
	for _, l := range cfg.Listen {
		addr, _ := netip.ParseAddrPort(l.Addr)
		host := addr.Addr()
		if host.IsUnspecified() {
			host = v4.Public
			if addr.Addr().Is6() {
				host = v6.Public
			}
		}
		if host.IsValid() {
			out = append(out, auth.Endpoint{Proto: l.Proto, Addr: netip.AddrPortFrom(host, addr.Port())})
		}
	}
	return out
}
