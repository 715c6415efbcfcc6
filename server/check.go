package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/ferry-rtc/ferry/conf"
)

// loaded is what a config leads to before any socket is opened: the relay addresses, port
// pool and peer policy, the users and secrets, and the certificates.
type loaded struct {
	relays *relays
	creds  credentials
	certs  []*tls.Certificate
}

// load reads and resolves everything cfg names, as Start does first; its errors name the
// config's file, line and key.
func load(cfg *conf.Config, log *slog.Logger) (loaded, error) {
	var p loaded
	var err error
	if p.relays, err = newRelays(cfg, log); err != nil {
		return p, err
	}
	if p.creds, err = loadCredentials(cfg, ""); err != nil {
		return p, err
	}
	if p.certs, err = loadCerts(cfg); err != nil {
		return p, err
	}
	return p, nil
}

// CheckReport sums up a config that Check accepted.
type CheckReport struct {
	Listeners int
	Users     int
	Secrets   int
	RelayIPv4 string // the advertised IPv4 relay address
	RelayIPv6 string // "" without IPv6 relays
	Notes     []string
}

// Check loads everything Start loads from cfg (the relay addresses, the port range and peer
// rules, the users file, the secrets file, every certificate, the SFU's token key file)
// without opening a socket (nor probing the listeners' ports, which a running server holds),
// and fails where Start would fail, with the same error. `ferry config check` runs it.
func Check(cfg *conf.Config) (CheckReport, error) {
	p, err := load(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return CheckReport{}, err
	}
	// The SFU's token key file, as newSFU reads it at start.
	var tokenSecret string
	if cfg.SFU.Enabled {
		if tokenSecret, err = TokenSecret(cfg); err != nil {
			return CheckReport{}, err
		}
	}
	r := CheckReport{Listeners: len(cfg.Listen), Users: len(p.creds.users), Secrets: len(p.creds.configured)}
	if p.relays.v4.Public.IsValid() {
		r.RelayIPv4 = p.relays.v4.Public.String()
	}
	if p.relays.v6.Public.IsValid() {
		r.RelayIPv6 = p.relays.v6.Public.String()
	} else if cfg.Relay.BindIP6 != "" {
		r.Notes = append(r.Notes, fmt.Sprintf("relay.bind_ip6 %s: this machine has no global IPv6 address "+
			"to advertise, so IPv6 relays would be off; set public_ip6", cfg.Relay.BindIP6))
	}
	if p.creds.missingFile {
		r.Notes = append(r.Notes, fmt.Sprintf("auth.users_file %s does not exist yet: no users "+
			"('ferry user add' creates it)", cfg.Auth.UsersFile))
	}
	if cfg.SFU.Enabled && tokenSecret == "" && !cfg.IsDefault() {
		r.Notes = append(r.Notes, "sfu: no token_secret or token_secret_file: each start signs tokens with a key "+
			"shown nowhere, so nobody can publish or watch; set sfu.token_secret_file, or sfu.enabled = false")
	}
	if p.creds.zeroConfig() {
		r.Notes = append(r.Notes, "no users and no secrets: each start generates a TURN REST secret and prints a credential")
	}
	return r, nil
}
