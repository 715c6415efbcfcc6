// Package conf is Ferry's TOML configuration: the types, the embedded and
// documented default (default.toml), strict decoding (unknown keys are
// errors) and validation whose errors point at FILE:LINE: KEY.
package conf

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"time"

	"github.com/BurntSushi/toml"
)

// defaultTOML is the documented default configuration. A string, not a
// []byte, so that no caller can modify it.
//
//go:embed default.toml
var defaultTOML string

// defaultName is the File() of the embedded default.
const defaultName = "(default)"

// Config is Ferry's whole configuration.
type Config struct {
	Server  Server     `toml:"server"`
	Listen  []Listener `toml:"listen"`
	Relay   Relay      `toml:"relay"`
	Auth    Auth       `toml:"auth"`
	Limits  Limits     `toml:"limits"`
	SFU     SFU        `toml:"sfu"`
	Metrics Metrics    `toml:"metrics"`
	Admin   Admin      `toml:"admin"`
	Log     Log        `toml:"log"`
	Debug   Debug      `toml:"debug"`
	Cluster Cluster    `toml:"cluster"`

	file  string         // name the config was parsed from, for errors
	lines map[string]int // dotted key → line in file, for errors
}

// Server is the [server] table.
type Server struct {
	Realm           string   `toml:"realm"`            // required, non-empty
	Software        string   `toml:"software"`         // SOFTWARE attribute in Binding responses; "" omits it
	Name            string   `toml:"name"`             // "" or a DNS host name: the host of the URIs Ferry hands out
	AlternateServer string   `toml:"alternate_server"` // "" or "IP:port", not unspecified: ALTERNATE-SERVER of 300 answers while draining
	DrainTimeout    Duration `toml:"drain_timeout"`    // >= 0: how long a drain waits for allocations to end
	Procs           Procs    `toml:"procs"`            // "auto" or a fixed GOMAXPROCS >= 1
}

// Listener is one [[listen]] table.
type Listener struct {
	Proto string `toml:"proto"` // "udp" | "tcp" | "tls" | "dtls"
	Addr  string `toml:"addr"`  // "IP:port" (IPv6 in brackets), IP literal only, port 1..65535
	Cert  string `toml:"cert"`  // tls/dtls only, required there: PEM certificate file
	Key   string `toml:"key"`   // tls/dtls only, required there: PEM private key file
}

// Network is the socket type l runs on: "udp" for udp and dtls, "tcp" for tcp and tls.
func (l Listener) Network() string { return network(l.Proto) }

// Relay is the [relay] table.
type Relay struct {
	BindIP     string   `toml:"bind_ip"`     // IPv4 literal (0.0.0.0 allowed); relay sockets for IPv4 allocations bind here
	PublicIP   string   `toml:"public_ip"`   // "" or IPv4 literal, not unspecified: advertised in XOR-RELAYED-ADDRESS (1:1 NAT)
	BindIP6    string   `toml:"bind_ip6"`    // "" (no IPv6 relays) or IPv6 literal (:: allowed)
	PublicIP6  string   `toml:"public_ip6"`  // "" or IPv6 literal, not unspecified
	MinPort    int      `toml:"min_port"`    // first port of the relay pool
	MaxPort    int      `toml:"max_port"`    // last port of the relay pool (inclusive)
	DenyPeers  []string `toml:"deny_peers"`  // each: "recommended", a CIDR, or a single IP
	AllowPeers []string `toml:"allow_peers"` // each: a CIDR or a single IP
	// Offload is the kernel fast path: "auto" (relay UDP clients' ChannelData in the
	// kernel where it can, else in user space) or "off".
	Offload           string   `toml:"offload"`
	OffloadInterfaces []string `toml:"offload_interfaces"` // interface names; none: detected from the addresses
}

// Auth is the [auth] table.
type Auth struct {
	UsersFile     string   `toml:"users_file"`     // "" = no users file
	Secrets       []string `toml:"secrets"`        // TURN REST API shared secrets; each non-empty
	SecretsFile   string   `toml:"secrets_file"`   // "" = none; one more secret per line
	CredentialTTL Duration `toml:"credential_ttl"` // > 0
	// UsersRedis is a shared users store: "" (off), "cluster" (the URL of [cluster] redis)
	// or a redis:// or rediss:// URL. Restart only.
	UsersRedis string `toml:"users_redis"`
	// UsersRedisMaxStale is how long the users last read from Redis keep working while
	// Redis cannot be reached: > 0. Restart only.
	UsersRedisMaxStale Duration `toml:"users_redis_max_stale"`
}

// UsersRedisCluster is the value of auth.users_redis that shares [cluster] redis.
const UsersRedisCluster = "cluster"

// UsersRedisURL is the Redis URL of the shared users store, "" when off.
func (a Auth) UsersRedisURL(cl Cluster) string {
	if a.UsersRedis == UsersRedisCluster {
		return cl.Redis
	}
	return a.UsersRedis
}

// Limits is the [limits] table.
type Limits struct {
	AllocationsPerUser       int `toml:"allocations_per_user"`        // >= 0, 0 = unlimited
	AllocationsTotal         int `toml:"allocations_total"`           // >= 0, 0 = unlimited
	UnauthenticatedPerIPRate int `toml:"unauthenticated_per_ip_rate"` // >= 0, 0 = unlimited: 401 answers per second to one source IP
	BindingPerIPRate         int `toml:"binding_per_ip_rate"`         // >= 0, 0 = unlimited: Binding answers per second to one source IP

	PermissionsPerAllocation int      `toml:"permissions_per_allocation"` // >= 0, 0 = unlimited: peer IPs one allocation may have permissions for
	ChannelsPerAllocation    int      `toml:"channels_per_allocation"`    // >= 0, 0 = unlimited (the protocol's own limit is 4096)
	MaxAllocationLifetime    Duration `toml:"max_allocation_lifetime"`    // > 0: longer LIFETIMEs asked for are cut to it
	AllocateTimeout          Duration `toml:"allocate_timeout"`           // > 0: a TCP, TLS or DTLS connection without an allocation is closed after it

	ConnectionsPerAllocation int `toml:"connections_per_allocation"` // >= 0, 0 = unlimited: RFC 6062 peer connections of one allocation
	TCPConnectionsTotal      int `toml:"tcp_connections_total"`      // >= 0, 0 = a quarter of the open-file limit: RFC 6062 peer connections in all

	DTLSHandshakes      int `toml:"dtls_handshakes"`        // >= 0, 0 = unlimited: DTLS handshakes in progress at once
	DTLSHandshakesPerIP int `toml:"dtls_handshakes_per_ip"` // >= 0, 0 = unlimited: of them from one source IP (IPv6: /64)
}

// SFU is the [sfu] table: the SFU co-hosted with the TURN server.
type SFU struct {
	Enabled           bool     `toml:"enabled"`             // serve the SFU's HTTP endpoints
	HTTP              string   `toml:"http"`                // "IP:port" (IPv6 in brackets), port 0 = any free port; required when Enabled
	TokenSecret       string   `toml:"token_secret"`        // HS256 key of access tokens; "" = random at each start, else at least 16 characters
	TokenSecretFile   string   `toml:"token_secret_file"`   // "" or a file holding the key instead (read by server.TokenSecret); not with TokenSecret
	TURNCredentialTTL Duration `toml:"turn_credential_ttl"` // > 0: lifetime of the TURN credentials in WHIP/WHEP Link headers
	// >= 0, 0 = unlimited: TURN allocations of all the credentials minted for one access token
	TURNAllocationsPerToken int      `toml:"turn_allocations_per_token"`
	TokenTTL                Duration `toml:"token_ttl"`          // > 0: default lifetime of `ferry token` and of the zero-config demo tokens
	SelfTest                bool     `toml:"self_test"`          // at start, reach the SFU through the own TURN relay and log the outcome
	SessionsPerToken        int      `toml:"sessions_per_token"` // >= 0, 0 = unlimited: live WHIP/WHEP sessions of one access token
	SessionsPerIP           int      `toml:"sessions_per_ip"`    // >= 0, 0 = unlimited: live WHIP/WHEP sessions from one source IP (IPv6: /64)
	FeedsPerToken           int      `toml:"feeds_per_token"`    // >= 0, 0 = unlimited: open room event feeds of one access token
	FeedsPerIP              int      `toml:"feeds_per_ip"`       // >= 0, 0 = unlimited: open room event feeds from one source IP (IPv6: /64)
	ConnectTimeout          Duration `toml:"connect_timeout"`    // >= 1s: a session not connected this long after its answer is ended
}

// MaxAllocationLifetime is the most limits.max_allocation_lifetime may be:
// an allocation whose client vanished without a Refresh of 0 keeps its
// relay port and its place in the quotas no longer.
const MaxAllocationLifetime = time.Hour

// MinTokenSecret is the fewest characters a non-empty sfu.token_secret may
// have: a short HS256 key could be found by trying keys against any token.
const MinTokenSecret = 16

// Metrics is the [metrics] table.
type Metrics struct {
	Listen string `toml:"listen"` // "" (off) or "IP:port" (IPv6 in brackets), port 0 = any free port
}

// Admin is the [admin] table.
type Admin struct {
	Listen string `toml:"listen"` // "" (off) or "IP:port" (IPv6 in brackets), port 0 = any free port
	Token  string `toml:"token"`  // bearer token; required when Listen is not a loopback address
}

// Debug is the [debug] table.
type Debug struct {
	Pprof string `toml:"pprof"` // "" (off) or a loopback "IP:port" serving net/http/pprof
}

// Cluster is the [cluster] table: several Ferry nodes coordinated through Redis (node
// registry, room directory, shared quotas). Every key needs a restart.
type Cluster struct {
	Redis string `toml:"redis"` // "" (off) or a redis:// or rediss:// URL
	Node  string `toml:"node"`  // "" = the host name; else 1 to 64 letters, digits, '.', '_' or '-'
	// AdvertiseTURN is the TURN address other nodes send clients to (300 Try Alternate while
	// draining): "" = the first udp listener's advertised address; else "IP:port".
	AdvertiseTURN string `toml:"advertise_turn"`
	// AdvertiseSFU is the base URL of this node's SFU that other nodes redirect WHIP and WHEP
	// requests to (307): "" = http://relay public IP:sfu.http port; else an http or https URL
	// without a path.
	AdvertiseSFU string   `toml:"advertise_sfu"`
	TTL          Duration `toml:"ttl"` // 3s to 10m: how long a node's record and room claims outlive its last refresh
}

// Cluster TTL bounds: a node refreshes its record and claims every TTL/3.
const (
	MinClusterTTL = 3 * time.Second
	MaxClusterTTL = 10 * time.Minute
)

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`  // "debug" | "info" | "warn" | "error"
	Format string `toml:"format"` // "text" | "json"
}

// SlogLevel returns the slog level of l.Level; slog.LevelInfo for any
// value Validate rejects.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// DefaultTOML returns the embedded, documented default configuration.
// `ferry config default` prints it verbatim. Each call returns a new copy.
func DefaultTOML() []byte { return []byte(defaultTOML) }

// Default returns the parsed embedded default; its File() is "(default)".
// Each call returns a new Config that the caller may modify. It never fails:
// a test parses and validates the embedded file.
func Default() *Config {
	c, err := Parse(defaultName, []byte(defaultTOML))
	if err != nil {
		panic("conf: embedded default.toml is invalid: " + err.Error())
	}
	return c
}

// Load reads, decodes and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// The *PathError already names the file.
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data; name is used in error messages.
//
// Decoding starts from the default values, so keys absent from data keep
// them. If data has any [[listen]] tables they replace the default listeners
// as a whole rather than merging with them.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{file: name}
	// The embedded default is decoded without checks here; Default's test
	// proves that it passes them.
	if _, err := toml.Decode(defaultTOML, c); err != nil {
		return nil, fmt.Errorf("conf: decode embedded default: %w", err)
	}

	// First decode into a plain map: this reports syntax errors alone and
	// gives checkTable the raw values, so that unknown keys and wrong types
	// are reported with our own FILE:LINE: KEY messages (the decoder's type
	// errors are not positioned and drop the [[listen]] index).
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, c.syntaxError(err)
	}
	c.lines = indexLines(data)
	if err := c.checkTable("", raw, reflect.TypeFor[Config]()); err != nil {
		return nil, err
	}

	// The decoder fills slices element by element, so user tables would
	// inherit the unset keys of the default listener at the same index.
	if _, ok := raw["listen"]; ok {
		c.Listen = nil
	}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		// checkTable has vetted every value, so this is not expected.
		return nil, c.decodeError(err)
	}
	// Also redundant with checkTable, kept as a safety net should the
	// decoder and checkTable ever disagree on what a key is.
	if u := md.Undecoded(); len(u) > 0 {
		return nil, c.Errorf(u[0].String(), "unknown key")
	}

	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// IsDefault reports whether c is the embedded default rather than a file's: only then
// does Ferry print demo credentials, which belong to a try-out, not a deployment.
func (c *Config) IsDefault() bool { return c != nil && c.file == defaultName }

// File returns the name the config was parsed from: the path given to Load,
// the name given to Parse, or "(default)".
func (c *Config) File() string {
	if c == nil {
		return ""
	}
	return c.file
}

// syntaxError positions a TOML syntax error as FILE:LINE:COL.
func (c *Config) syntaxError(err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: c.file, Err: err}
	}
	return &Error{
		File: c.file,
		Line: pe.Position.Line,
		Col:  pe.Position.Col,
		Err:  tomlError{pe},
	}
}

// decodeError positions an error of the decoder proper (after syntax was
// checked) at its key when the decoder tells which key it was.
func (c *Config) decodeError(err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) || pe.LastKey == "" {
		return &Error{File: c.file, Err: err}
	}
	return &Error{
		File: c.file,
		Line: pe.Position.Line,
		Key:  pe.LastKey,
		Err:  tomlError{pe},
	}
}

// tomlError prints a toml.ParseError without the line it already carries
// in our Error, and keeps it reachable through errors.As.
type tomlError struct{ pe toml.ParseError }

func (e tomlError) Error() string { return "toml: " + e.pe.Message }
func (e tomlError) Unwrap() error { return e.pe }
