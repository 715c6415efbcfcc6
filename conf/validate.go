package conf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxChars bounds REALM and SOFTWARE: RFC 8489 sections 14.9 and 14.14
// allow fewer than 128 characters.
const maxChars = 127

// Validate checks c and returns the first problem as an *Error positioned
// at the key at fault. The checks run in a fixed order (server, listen,
// relay, auth, limits, sfu, metrics, admin, log, debug, cluster), so the same file always
// gives the same error.
// Parse and Load call it; call it again after changing a Config by hand.
// It reads the tls and dtls certificate and key files.
func (c *Config) Validate() error {
	for _, check := range []func() error{
		c.validateServer,
		c.validateListeners,
		c.validateRelay,
		c.validateAuth,
		c.validateLimits,
		c.validateSFU,
		c.validateMetrics,
		c.validateAdmin,
		c.validateLog,
		c.validateDebug,
		c.validateCluster,
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
	if err := c.checkHostName("server.name", s.Name); err != nil {
		return err
	}
	if s.AlternateServer != "" {
		ap, err := c.checkAddrPort("server.alternate_server", s.AlternateServer, `"203.0.113.7:3478" or "[2001:db8::7]:3478"`, false)
		if err != nil {
			return err
		}
		if err := c.checkSpecific("server.alternate_server", s.AlternateServer, ap.Addr(), false); err != nil {
			return err
		}
	}
	if d := s.DrainTimeout.Duration; d < 0 {
		return c.Errorf("server.drain_timeout", "must be 0 (exit at once) or more, not %s", d)
	}
	return nil
}

// checkHostName checks that s, written at key, is "" or a DNS host name (RFC 1123): dot
// separated labels of letters, digits and hyphens, 1 to 63 characters each and not starting
// or ending with a hyphen, at most 253 characters in all. An IP address is refused: the
// URIs carry the advertised address without a name.
func (c *Config) checkHostName(key, s string) error {
	if s == "" {
		return nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return c.Errorf(key, "%q is an IP address: want a host name such as \"turn.example.com\" (without one, URIs carry the advertised address)", s)
	}
	if len(s) > 253 {
		return c.Errorf(key, "is %d characters long, at most 253 allowed", len(s))
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !hostLabel(label) {
			return c.Errorf(key, "%q is not a host name: label %q must be 1 to 63 letters, digits or hyphens, not starting or ending with a hyphen", s, label)
		}
	}
	return nil
}

// hostLabel reports whether label is one label of a host name.
func hostLabel(label string) bool {
	if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for _, r := range label {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// checkAddrPort checks that s, written at key, is "IP:port" with a literal
// IP (IPv6 in brackets) and returns it. The port must be 1 to 65535, or
// may also be 0 if anyPort. eg shows valid values in the error message.
func (c *Config) checkAddrPort(key, s, eg string, anyPort bool) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, c.Errorf(key, "%q is not IP:port with a literal IP (IPv6 in brackets), e.g. %s", s, eg)
	}
	if ap.Port() == 0 && !anyPort {
		return ap, c.Errorf(key, "%q: port must be 1 to 65535", s)
	}
	return ap, nil
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
		ap, err := c.checkAddrPort(key+".addr", l.Addr, `"0.0.0.0:3478" or "[::]:3478"`, false)
		if err != nil {
			return err
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
	return c.validateOffload()
}

// validateOffload checks [relay] offload and offload_interfaces.
func (c *Config) validateOffload() error {
	r := c.Relay
	if r.Offload != "auto" && r.Offload != "off" {
		return c.Errorf("relay.offload", "%q: want \"auto\" or \"off\"", r.Offload)
	}
	seen := map[string]bool{}
	for _, name := range r.OffloadInterfaces {
		// Linux interface names: 1 to 15 bytes, no slash, no whitespace, not . or ..
		if name == "" || len(name) > 15 || name == "." || name == ".." ||
			strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) }) {
			return c.Errorf("relay.offload_interfaces", "%q is not an interface name (1 to 15 bytes, no '/', ':' or spaces)", name)
		}
		if seen[name] {
			return c.Errorf("relay.offload_interfaces", "%q is listed twice", name)
		}
		seen[name] = true
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
	if err != nil || !family(ip) {
		return c.Errorf(key, "%q is not %s", s, want)
	}
	return c.checkSpecific(key, s, ip, unspecified)
}

// checkSpecific checks that ip, written as s at key, has no zone, and is
// not the unspecified address (0.0.0.0, ::) unless unspecified is true.
func (c *Config) checkSpecific(key, s string, ip netip.Addr, unspecified bool) error {
	switch {
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
	switch r := c.Auth.UsersRedis; {
	case r == UsersRedisCluster && c.Cluster.Redis == "":
		return c.Errorf("auth.users_redis", "%q shares [cluster] redis, which is empty: set cluster.redis, or give users_redis a redis:// URL of its own", r)
	case r != "" && r != UsersRedisCluster:
		if err := c.checkRedisURL("auth.users_redis", r); err != nil {
			return err
		}
	}
	if d := c.Auth.UsersRedisMaxStale.Duration; d <= 0 {
		return c.Errorf("auth.users_redis_max_stale", "must be positive, not %s", d)
	}
	return nil
}

// checkRedisURL checks that s is a redis:// or rediss:// URL with a host; the errors never
// show its password.
func (c *Config) checkRedisURL(key, s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return c.Errorf(key, "not a URL (%s): want a redis:// or rediss:// URL, e.g. \"redis://10.0.0.5:6379/0\"", strings.ReplaceAll(err.Error(), s, "..."))
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return c.Errorf(key, "%q: want a redis:// or rediss:// URL, e.g. \"redis://10.0.0.5:6379/0\"", u.Redacted())
	case u.Host == "":
		return c.Errorf(key, "%q has no host", u.Redacted())
	}
	return nil
}

func (c *Config) validateLimits() error {
	l := c.Limits
	if err := c.checkCounts([]countKey{
		{"limits.allocations_per_user", l.AllocationsPerUser},
		{"limits.allocations_total", l.AllocationsTotal},
		{"limits.unauthenticated_per_ip_rate", l.UnauthenticatedPerIPRate},
		{"limits.binding_per_ip_rate", l.BindingPerIPRate},
		{"limits.permissions_per_allocation", l.PermissionsPerAllocation},
		{"limits.channels_per_allocation", l.ChannelsPerAllocation},
		{"limits.connections_per_allocation", l.ConnectionsPerAllocation},
		{"limits.dtls_handshakes", l.DTLSHandshakes},
		{"limits.dtls_handshakes_per_ip", l.DTLSHandshakesPerIP},
	}); err != nil {
		return err
	}
	if l.TCPConnectionsTotal < 0 {
		return c.Errorf("limits.tcp_connections_total", "must be 0 (a quarter of the open-file limit) or more, not %d", l.TCPConnectionsTotal)
	}
	if d := l.MaxAllocationLifetime.Duration; d < time.Second || d > MaxAllocationLifetime {
		return c.Errorf("limits.max_allocation_lifetime", "must be between 1s and %s, not %s", MaxAllocationLifetime, d)
	}
	if d := l.AllocateTimeout.Duration; d < time.Second {
		return c.Errorf("limits.allocate_timeout", "must be at least 1s, not %s", d)
	}
	return nil
}

func (c *Config) validateSFU() error {
	s := c.SFU
	const eg = `"0.0.0.0:8080" or "[::]:8080"`
	switch {
	case s.Enabled && s.HTTP == "":
		return c.Errorf("sfu.http", "must be set when sfu.enabled is true")
	case s.Enabled:
		if err := c.checkHTTPListen("sfu.http", s.HTTP, eg); err != nil {
			return err
		}
	case s.HTTP != "":
		// Not served, so it cannot clash with anything; a typo is still
		// better reported now than when the SFU is enabled.
		if _, err := c.checkAddrPort("sfu.http", s.HTTP, eg, true); err != nil {
			return err
		}
	}
	// Do not quote the secret: error messages end up in logs.
	if n := utf8.RuneCountInString(s.TokenSecret); s.TokenSecret != "" && n < MinTokenSecret {
		return c.Errorf("sfu.token_secret", "is %d characters long, at least %d needed (or \"\" for a random one at each start)", n, MinTokenSecret)
	}
	if s.TokenSecret != "" && s.TokenSecretFile != "" {
		return c.Errorf("sfu.token_secret_file", "set token_secret or token_secret_file, not both")
	}
	if ttl := s.TURNCredentialTTL.Duration; ttl <= 0 {
		return c.Errorf("sfu.turn_credential_ttl", "must be positive, not %s", ttl)
	}
	if ttl := s.TokenTTL.Duration; ttl <= 0 {
		return c.Errorf("sfu.token_ttl", "must be positive, not %s", ttl)
	}
	return c.validateSFULimits()
}

// countKey is an integer key for which 0 means no limit.
type countKey struct {
	key string
	n   int
}

// checkCounts reports the first of keys that is negative.
func (c *Config) checkCounts(keys []countKey) error {
	for _, k := range keys {
		if k.n < 0 {
			return c.Errorf(k.key, "must be 0 (no limit) or more, not %d", k.n)
		}
	}
	return nil
}

func (c *Config) validateSFULimits() error {
	s := c.SFU
	if err := c.checkCounts([]countKey{
		{"sfu.sessions_per_token", s.SessionsPerToken},
		{"sfu.sessions_per_ip", s.SessionsPerIP},
		{"sfu.feeds_per_token", s.FeedsPerToken},
		{"sfu.feeds_per_ip", s.FeedsPerIP},
		{"sfu.turn_allocations_per_token", s.TURNAllocationsPerToken},
	}); err != nil {
		return err
	}
	if d := s.ConnectTimeout.Duration; d < time.Second {
		return c.Errorf("sfu.connect_timeout", "must be at least 1s, not %s", d)
	}
	return nil
}

func (c *Config) validateMetrics() error {
	return c.checkHTTPListen("metrics.listen", c.Metrics.Listen, `"127.0.0.1:9641" or "[::1]:9641"`)
}

func (c *Config) validateAdmin() error {
	a := c.Admin
	if err := c.checkHTTPListen("admin.listen", a.Listen, `"127.0.0.1:9642" or "[::1]:9642"`); err != nil {
		return err
	}
	// Do not quote the token: error messages end up in logs.
	if i := strings.IndexFunc(a.Token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return c.Errorf("admin.token", "must not contain whitespace or control characters (one is at byte %d)", i)
	}
	if a.Token == "" && a.Listen != "" {
		// Valid: checkHTTPListen accepted it.
		if ap, _ := netip.ParseAddrPort(a.Listen); !ap.Addr().IsLoopback() {
			return c.Errorf("admin.token", "must be set when admin.listen (%s) is not a loopback address", a.Listen)
		}
	}
	return nil
}

// validateDebug allows the profiler on loopback only: it has no authentication, and a
// profile shows memory contents such as credentials.
func (c *Config) validateDebug() error {
	p := c.Debug.Pprof
	if err := c.checkHTTPListen("debug.pprof", p, `"127.0.0.1:6060"`); err != nil || p == "" {
		return err
	}
	if ap, _ := netip.ParseAddrPort(p); !ap.Addr().IsLoopback() {
		return c.Errorf("debug.pprof", "must be a loopback address, not %s: the profiler has no authentication", p)
	}
	return nil
}

// checkHTTPListen checks the listen address s, written at key, of one of
// Ferry's HTTP servers (metrics, admin, sfu): "" (off) or IP:port as for a
// listener, except that port 0 (any free port) is allowed. A fixed port
// must lie outside the relay port range, like a listener's, and not be a
// TCP address that a listener, or an HTTP server before key in tcpSockets,
// uses. Such a clash is reported at key, or at the other address if key
// keeps its default value and the other is written in the file.
func (c *Config) checkHTTPListen(key, s, eg string) error {
	if s == "" {
		return nil
	}
	ap, err := c.checkAddrPort(key, s, eg, true)
	if err != nil || ap.Port() == 0 {
		return err
	}
	if port, r := int(ap.Port()), c.Relay; port >= r.MinPort && port <= r.MaxPort {
		return c.Errorf(key, "port %d is in the relay port range %d-%d", port, r.MinPort, r.MaxPort)
	}
	for _, u := range c.tcpSockets() {
		if u.key == key {
			break
		}
		if u.addr == ap {
			// When key keeps its default value, the clash is the doing of the
			// other address, written in the file: point at that one.
			if c.line(key) == 0 && c.line(u.key) > 0 {
				return c.Errorf(u.key, "tcp %s is already used by %s", ap, key)
			}
			return c.Errorf(key, "tcp %s is already used by %s", ap, u.user)
		}
	}
	return nil
}

// tcpSocket is a TCP address Ferry listens on, with the key that sets it
// and how to name its user in an error.
type tcpSocket struct {
	key  string
	user string
	addr netip.AddrPort
}

// tcpSockets returns the TCP addresses Ferry listens on: tcp and tls
// listeners, metrics.listen, admin.listen, then sfu.http if the SFU is
// enabled. Addresses that are empty or do not parse are left out.
//
// checkHTTPListen compares a key with those before it, so each pair is
// compared once. sfu.http comes last although Validate checks it before
// metrics and admin, so that its clashes with them are found (and, both
// addresses written, reported) at sfu.http.
func (c *Config) tcpSockets() []tcpSocket {
	var socks []tcpSocket
	add := func(key, user, s string) {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			socks = append(socks, tcpSocket{key, user, ap})
		}
	}
	for i, l := range c.Listen {
		if network(l.Proto) == "tcp" {
			key := fmt.Sprintf("listen[%d]", i)
			add(key+".addr", fmt.Sprintf("%s (%s)", key, l.Proto), l.Addr)
		}
	}
	add("metrics.listen", "metrics.listen", c.Metrics.Listen)
	add("admin.listen", "admin.listen", c.Admin.Listen)
	add("debug.pprof", "debug.pprof", c.Debug.Pprof)
	if c.SFU.Enabled {
		add("sfu.http", "sfu.http", c.SFU.HTTP)
	}
	return socks
}

func (c *Config) validateLog() error {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return c.Errorf("log.level", "unknown level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return c.Errorf("log.format", "unknown format %q: want text or json", c.Log.Format)
	}
	return nil
}

// validateCluster checks [cluster]: only its form; whether Redis answers is the server's
// business (a node starts and serves locally while it does not).
func (c *Config) validateCluster() error {
	cl := c.Cluster
	if cl.Redis != "" {
		if err := c.checkRedisURL("cluster.redis", cl.Redis); err != nil {
			return err
		}
	}
	if n := cl.Node; n != "" && !ValidNodeName(n) {
		return c.Errorf("cluster.node", "%q: want 1 to 64 letters, digits, '.', '_' or '-'", n)
	}
	if cl.AdvertiseTURN != "" {
		ap, err := c.checkAddrPort("cluster.advertise_turn", cl.AdvertiseTURN, `"203.0.113.10:3478"`, false)
		if err != nil {
			return err
		}
		if err := c.checkSpecific("cluster.advertise_turn", cl.AdvertiseTURN, ap.Addr(), false); err != nil {
			return err
		}
	}
	if s := cl.AdvertiseSFU; s != "" {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return c.Errorf("cluster.advertise_sfu", "%q: want an http or https URL without path or query, e.g. \"https://sfu1.example.com\"", s)
		}
	}
	if d := cl.TTL.Duration; d < MinClusterTTL || d > MaxClusterTTL {
		return c.Errorf("cluster.ttl", "must be between %s and %s, not %s", MinClusterTTL, MaxClusterTTL, d)
	}
	return nil
}

// ValidNodeName reports whether s can name a cluster node: it is part of Redis keys and
// of log lines, so a short plain word.
func ValidNodeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
