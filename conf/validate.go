package conf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"unicode/utf8"
)

// maxChars bounds REALM and SOFTWARE: RFC 8489 sections 14.9 and 14.14
// allow fewer than 128 characters.
const maxChars = 127

// Validate checks c and returns the first problem as an *Error positioned
// at the key at fault. The checks run in a fixed order (server, listen,
// relay, auth, limits), so the same file always gives the same error.
// Parse and Load call it; call it again after changing a Config by hand.
// It reads the tls and dtls certificate and key files.
func (c *Config) Validate() error {
	for _, check := range []func() error{
		c.validateServer,
		c.validateListeners,
		c.validateRelay,
		c.validateAuth,
		c.validateLimits,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateServer() error {
	s := c.Server
	if strings.TrimSpace(s.Realm) == "" {
		return c.Errorf("server.realm", "must not be empty")
	}
	if n := utf8.RuneCountInString(s.Realm); n > maxChars {
		return c.Errorf("server.realm", "is %d characters long, at most %d allowed", n, maxChars)
	}
	if n := utf8.RuneCountInString(s.Software); n > maxChars {
		return c.Errorf("server.software", "is %d characters long, at most %d allowed", n, maxChars)
	}
	return nil
}

// network returns the socket type a listener proto runs on: tls shares
// TCP with tcp, dtls shares UDP with udp.
func network(proto string) string {
	switch proto {
	case "udp", "dtls":
		return "udp"
	case "tcp", "tls":
		return "tcp"
	}
	return ""
}

func (c *Config) validateListeners() error {
	if len(c.Listen) == 0 {
		return c.Errorf("listen", "at least one [[listen]] table is needed")
	}
	type socket struct {
		network string
		addr    netip.AddrPort
	}
	seen := make(map[socket]int) // → index of the listener using it
	for i, l := range c.Listen {
		key := fmt.Sprintf("listen[%d]", i)
		if network(l.Proto) == "" {
			return c.Errorf(key+".proto", "unknown proto %q: want udp, tcp, tls or dtls", l.Proto)
		}
		ap, err := netip.ParseAddrPort(l.Addr)
		if err != nil {
			return c.Errorf(key+".addr", "%q is not IP:port with a literal IP (IPv6 in brackets), e.g. \"0.0.0.0:3478\" or \"[::]:3478\"", l.Addr)
		}
		if ap.Port() == 0 {
			return c.Errorf(key+".addr", "%q: port must be 1 to 65535", l.Addr)
		}
		if err := c.validateCert(key, l); err != nil {
			return err
		}
		s := socket{network(l.Proto), ap}
		if j, ok := seen[s]; ok {
			return c.Errorf(key+".addr", "%s %s is already used by listen[%d] (%s)", s.network, ap, j, c.Listen[j].Proto)
		}
		seen[s] = i
	}
	return nil
}

// validateCert checks the cert and key of listener l, written at key:
// required and loadable as a pair for tls and dtls, absent otherwise.
func (c *Config) validateCert(key string, l Listener) error {
	if l.Proto == "udp" || l.Proto == "tcp" {
		switch {
		case l.Cert != "":
			return c.Errorf(key+".cert", "cert and key only apply to tls and dtls listeners")
		case l.Key != "":
			return c.Errorf(key+".key", "cert and key only apply to tls and dtls listeners")
		}
		return nil
	}
	if l.Cert == "" {
		return c.Errorf(key+".cert", "a %s listener needs cert and key", l.Proto)
	}
	if l.Key == "" {
		return c.Errorf(key+".key", "a %s listener needs cert and key", l.Proto)
	}
	certPEM, err := os.ReadFile(l.Cert)
	if err != nil {
		return c.Errorf(key+".cert", "%w", err)
	}
	keyPEM, err := os.ReadFile(l.Key)
	if err != nil {
		return c.Errorf(key+".key", "%w", err)
	}
	// Check the certificate alone first, so that a failure of the pair
	// below can be blamed on the key.
	if err := checkCertPEM(certPEM); err != nil {
		return c.Errorf(key+".cert", "%s: %w", l.Cert, err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return c.Errorf(key+".key", "key %s for cert %s: %w", l.Key, l.Cert, err)
	}
	return nil
}

// checkCertPEM checks that data holds at least one PEM certificate and that
// the first one parses.
func checkCertPEM(data []byte) error {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return fmt.Errorf("no PEM CERTIFICATE block found")
		}
		if block.Type == "CERTIFICATE" {
			_, err := x509.ParseCertificate(block.Bytes)
			return err
		}
	}
}

func (c *Config) validateRelay() error {
	r := c.Relay
	if err := c.checkIP("relay.bind_ip", r.BindIP, false, true); err != nil {
		return err
	}
	if r.PublicIP != "" {
		if err := c.checkIP("relay.public_ip", r.PublicIP, false, false); err != nil {
			return err
		}
	}
	if r.BindIP6 != "" {
		if err := c.checkIP("relay.bind_ip6", r.BindIP6, true, true); err != nil {
			return err
		}
	}
	if r.PublicIP6 != "" {
		if err := c.checkIP("relay.public_ip6", r.PublicIP6, true, false); err != nil {
			return err
		}
		if r.BindIP6 == "" {
			return c.Errorf("relay.public_ip6", "needs relay.bind_ip6: IPv6 relays are off without it")
		}
	}

	for _, p := range []struct {
		key  string
		port int
	}{{"relay.min_port", r.MinPort}, {"relay.max_port", r.MaxPort}} {
		if p.port < 1 || p.port > 65535 {
			return c.Errorf(p.key, "%d is not a port: want 1 to 65535", p.port)
		}
	}
	if r.MinPort > r.MaxPort {
		return c.Errorf("relay.min_port", "min_port %d is above max_port %d", r.MinPort, r.MaxPort)
	}
	for i, l := range c.Listen {
		ap, err := netip.ParseAddrPort(l.Addr) // valid: validateListeners ran first
		if port := int(ap.Port()); err == nil && port >= r.MinPort && port <= r.MaxPort {
			return c.Errorf("relay.min_port", "port range %d-%d overlaps listen[%d] port %d", r.MinPort, r.MaxPort, i, port)
		}
	}

	for _, e := range r.DenyPeers {
		if e != "recommended" && !isPeerEntry(e) {
			return c.Errorf("relay.deny_peers", "%q is not \"recommended\", a CIDR or an IP address", e)
		}
	}
	for _, e := range r.AllowPeers {
		if !isPeerEntry(e) {
			return c.Errorf("relay.allow_peers", "%q is not a CIDR or an IP address", e)
		}
	}
	return nil
}

// checkIP checks that s, written at key, is an IPv4 literal (or IPv6 if v6;
// an IPv4-mapped IPv6 address counts as neither) without a zone, and the
// unspecified address (0.0.0.0, ::) only if unspecified is true.
func (c *Config) checkIP(key, s string, v6, unspecified bool) error {
	want, family := "an IPv4 address", netip.Addr.Is4
	if v6 {
		want, family = "an IPv6 address", func(ip netip.Addr) bool { return ip.Is6() && !ip.Is4In6() }
	}
	ip, err := netip.ParseAddr(s)
	switch {
	case err != nil || !family(ip):
		return c.Errorf(key, "%q is not %s", s, want)
	case ip.Zone() != "":
		return c.Errorf(key, "%q: a zone is not allowed here", s)
	case !unspecified && ip.IsUnspecified():
		return c.Errorf(key, "%q: want a specific address, not the unspecified one", s)
	}
	return nil
}

// isPeerEntry reports whether s is a CIDR or a single IP without a zone:
// the peer policy compares addresses without zones.
func isPeerEntry(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	ip, err := netip.ParseAddr(s)
	return err == nil && ip.Zone() == ""
}

func (c *Config) validateAuth() error {
	for i, s := range c.Auth.Secrets {
		if s == "" {
			return c.Errorf(fmt.Sprintf("auth.secrets[%d]", i), "a secret must not be empty")
		}
	}
	if ttl := c.Auth.CredentialTTL.Duration; ttl <= 0 {
		return c.Errorf("auth.credential_ttl", "must be positive, not %s", ttl)
	}
	return nil
}

func (c *Config) validateLimits() error {
	if n := c.Limits.AllocationsPerUser; n < 0 {
		return c.Errorf("limits.allocations_per_user", "must be 0 (no limit) or more, not %d", n)
	}
	if n := c.Limits.AllocationsTotal; n < 0 {
		return c.Errorf("limits.allocations_total", "must be 0 (no limit) or more, not %d", n)
	}
	return nil
}
