package conf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// exported returns c's exported fields only, for comparisons.
func exported(c *Config) Config {
	x := *c
	x.file, x.lines = "", nil
	return x
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.File() != "(default)" {
		t.Errorf("File() = %q, want (default)", c.File())
	}
	want := Config{
		Server: Server{Realm: "ferry.local", Software: "ferry", DrainTimeout: Duration{30 * time.Second}},
		Listen: []Listener{{Proto: "udp", Addr: "0.0.0.0:3478"}, {Proto: "tcp", Addr: "0.0.0.0:3478"}},
		Relay: Relay{
			BindIP: "0.0.0.0", MinPort: 49152, MaxPort: 65535,
			DenyPeers: []string{"recommended"}, AllowPeers: []string{},
			Offload: "auto", OffloadInterfaces: []string{},
		},
		Auth: Auth{
			UsersFile:     "/var/lib/ferry/users.toml",
			Secrets:       []string{},
			CredentialTTL: Duration{24 * time.Hour}, UsersRedisMaxStale: Duration{10 * time.Minute},
		},
		Limits: Limits{
			AllocationsPerUser: 10, UnauthenticatedPerIPRate: 20, BindingPerIPRate: 100,
			PermissionsPerAllocation: 100, ChannelsPerAllocation: 100,
			MaxAllocationLifetime: Duration{time.Hour}, AllocateTimeout: Duration{time.Minute},
			ConnectionsPerAllocation: 32, DTLSHandshakes: 1000, DTLSHandshakesPerIP: 32,
		},
		SFU: SFU{
			Enabled:           true,
			HTTP:              "0.0.0.0:8080",
			TURNCredentialTTL: Duration{12 * time.Hour}, TURNAllocationsPerToken: 10,
			TokenTTL:         Duration{time.Hour},
			SelfTest:         true,
			SessionsPerToken: 100,
			SessionsPerIP:    200,
			FeedsPerToken:    100,
			FeedsPerIP:       200,
			ConnectTimeout:   Duration{15 * time.Second},
		},
		Metrics: Metrics{Listen: "127.0.0.1:9641"},
		Admin:   Admin{Listen: "127.0.0.1:9642"},
		Log:     Log{Level: "info", Format: "text"},
		Cluster: Cluster{TTL: Duration{10 * time.Second}},
	}
	if got := exported(c); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", got, want)
	}
	// Each call returns a Config of its own.
	c.Listen[0].Addr = "changed"
	if Default().Listen[0].Addr != "0.0.0.0:3478" {
		t.Error("Default() shares state between calls")
	}
}

func TestDefaultTOML(t *testing.T) {
	b := DefaultTOML()
	b[0] = 'X'
	if bytes.Equal(b, DefaultTOML()) {
		t.Error("DefaultTOML() shares its bytes between calls")
	}

	want := exported(Default())
	// The printed default parses to the default.
	c, err := Parse("ferry.toml", DefaultTOML())
	if err != nil {
		t.Fatal(err)
	}
	if got := exported(c); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(DefaultTOML()) =\n%+v\nwant\n%+v", got, want)
	}
	// And the default, encoded back to TOML, parses to itself.
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(Default()); err != nil {
		t.Fatal(err)
	}
	c, err = Parse("encoded.toml", buf.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.Bytes())
	}
	if got := exported(c); !reflect.DeepEqual(got, want) {
		t.Errorf("encoded default parses to\n%+v\nwant\n%+v", got, want)
	}
}

func TestParse(t *testing.T) {
	def := Default()
	tests := []struct {
		name  string
		input string
		want  func(c *Config) // edits a default Config into the expected one
	}{
		{"empty file keeps every default", "", func(*Config) {}},
		{"comments only", "# nothing\n\n", func(*Config) {}},
		{
			"absent keys keep their defaults",
			"[server]\nrealm = \"example.org\"\n[relay]\nmax_port = 60000\n",
			func(c *Config) { c.Server.Realm = "example.org"; c.Relay.MaxPort = 60000 },
		},
		{
			"listen tables replace the default list",
			"[[listen]]\nproto = \"udp\"\naddr = \"192.0.2.1:3479\"\n",
			func(c *Config) { c.Listen = []Listener{{Proto: "udp", Addr: "192.0.2.1:3479"}} },
		},
		{
			"more listen tables than the default",
			"[[listen]]\nproto = \"tcp\"\naddr = \"[::1]:3478\"\n[[listen]]\nproto = \"udp\"\naddr = \"[::]:3478\"\n[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:3478\"\n",
			func(c *Config) {
				c.Listen = []Listener{{"tcp", "[::1]:3478", "", ""}, {"udp", "[::]:3478", "", ""}, {"udp", "127.0.0.1:3478", "", ""}}
			},
		},
		{
			"listen as an inline array",
			"listen = [{ proto = \"udp\", addr = \"0.0.0.0:3478\" }]\n",
			func(c *Config) { c.Listen = c.Listen[:1] },
		},
		{
			"explicit empty deny_peers denies nothing",
			"[relay]\ndeny_peers = []\n",
			func(c *Config) { c.Relay.DenyPeers = []string{} },
		},
		{
			"peer lists",
			"[relay]\ndeny_peers = [\n  \"recommended\",\n  \"192.0.2.0/24\",\n  \"2001:db8::1\",\n]\nallow_peers = [\"127.0.0.1/32\", \"10.1.2.3\"]\n",
			func(c *Config) {
				c.Relay.DenyPeers = []string{"recommended", "192.0.2.0/24", "2001:db8::1"}
				c.Relay.AllowPeers = []string{"127.0.0.1/32", "10.1.2.3"}
			},
		},
		{
			"dotted keys",
			"relay.min_port = 50000\nauth.credential_ttl = \"90m\"\n",
			func(c *Config) { c.Relay.MinPort = 50000; c.Auth.CredentialTTL = Duration{90 * time.Minute} },
		},
		{
			"relay addresses",
			"[relay]\nbind_ip = \"10.0.0.5\"\npublic_ip = \"203.0.113.7\"\nbind_ip6 = \"::\"\npublic_ip6 = \"2001:db8::7\"\n",
			func(c *Config) {
				c.Relay.BindIP, c.Relay.PublicIP = "10.0.0.5", "203.0.113.7"
				c.Relay.BindIP6, c.Relay.PublicIP6 = "::", "2001:db8::7"
			},
		},
		{
			"auth and limits",
			"[auth]\nusers_file = \"\"\nsecrets = [\"new\", \"old\"]\ncredential_ttl = \"1h30m\"\n[limits]\nallocations_per_user = 0\nallocations_total = 1000\n" +
				"binding_per_ip_rate = 0\npermissions_per_allocation = 8\nchannels_per_allocation = 0\nmax_allocation_lifetime = \"5m\"\nallocate_timeout = \"10s\"\n" +
				"connections_per_allocation = 4\ntcp_connections_total = 100\ndtls_handshakes = 0\ndtls_handshakes_per_ip = 5\n",
			func(c *Config) {
				c.Auth = Auth{Secrets: []string{"new", "old"}, CredentialTTL: Duration{90 * time.Minute}, UsersRedisMaxStale: Duration{10 * time.Minute}}
				c.Limits = Limits{AllocationsTotal: 1000, UnauthenticatedPerIPRate: 20, PermissionsPerAllocation: 8,
					MaxAllocationLifetime: Duration{5 * time.Minute}, AllocateTimeout: Duration{10 * time.Second},
					ConnectionsPerAllocation: 4, TCPConnectionsTotal: 100, DTLSHandshakesPerIP: 5}
			},
		},
		{
			"drain and alternate server",
			"[server]\nalternate_server = \"[2001:db8::7]:3478\"\ndrain_timeout = \"5m\"\n",
			func(c *Config) {
				c.Server.AlternateServer = "[2001:db8::7]:3478"
				c.Server.DrainTimeout = Duration{5 * time.Minute}
			},
		},
		{
			"fixed procs",
			"[server]\nprocs = 2\n",
			func(c *Config) { c.Server.Procs = 2 },
		},
		{
			"procs auto",
			"[server]\nprocs = \"auto\"\n",
			func(c *Config) { c.Server.Procs = ProcsAuto },
		},
		{
			"server name",
			"[server]\nname = \"turn-1.Example.com.\"\n",
			func(c *Config) { c.Server.Name = "turn-1.Example.com." },
		},
		{
			"drain_timeout 0 exits at once",
			"[server]\nalternate_server = \"203.0.113.7:3478\"\ndrain_timeout = \"0s\"\n",
			func(c *Config) { c.Server.AlternateServer = "203.0.113.7:3478"; c.Server.DrainTimeout = Duration{} },
		},
		{
			"no unauthenticated rate limit",
			"[limits]\nunauthenticated_per_ip_rate = 0\n",
			func(c *Config) { c.Limits.UnauthenticatedPerIPRate = 0 },
		},
		{
			"metrics and admin off",
			"[metrics]\nlisten = \"\"\n[admin]\nlisten = \"\"\n",
			func(c *Config) { c.Metrics.Listen = ""; c.Admin.Listen = "" },
		},
		{
			"metrics and admin on any free port",
			"[metrics]\nlisten = \"[::]:0\"\n[admin]\nlisten = \"[::1]:0\"\n",
			func(c *Config) { c.Metrics.Listen = "[::]:0"; c.Admin.Listen = "[::1]:0" },
		},
		{
			"metrics and admin on the same free port",
			"[metrics]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
			func(c *Config) { c.Metrics.Listen = "127.0.0.1:0"; c.Admin.Listen = "127.0.0.1:0" },
		},
		{
			"metrics on the listener port over UDP only",
			"[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n[metrics]\nlisten = \"0.0.0.0:3478\"\n",
			func(c *Config) { c.Listen = c.Listen[:1]; c.Metrics.Listen = "0.0.0.0:3478" },
		},
		{
			"admin on another loopback address without a token",
			"[admin]\nlisten = \"127.0.0.2:9642\"\n",
			func(c *Config) { c.Admin.Listen = "127.0.0.2:9642" },
		},
		{
			"admin on all addresses with a token",
			"[admin]\nlisten = \"0.0.0.0:9642\"\ntoken = \"s3cr3t-Tok.en_~+/=\"\n",
			func(c *Config) { c.Admin = Admin{Listen: "0.0.0.0:9642", Token: "s3cr3t-Tok.en_~+/="} },
		},
		{
			"a token on loopback",
			"[admin]\ntoken = \"t\"\n",
			func(c *Config) { c.Admin.Token = "t" },
		},
		{
			"sfu",
			"[sfu]\nenabled = true\nhttp = \"[::]:8443\"\ntoken_secret = \"0123456789abcdef\"\nturn_credential_ttl = \"2h\"\ntoken_ttl = \"15m\"\n" +
				"sessions_per_token = 0\nsessions_per_ip = 3\nfeeds_per_token = 4\nfeeds_per_ip = 0\nconnect_timeout = \"1s\"\n" +
				"turn_allocations_per_token = 3\n",
			func(c *Config) {
				c.SFU = SFU{
					Enabled: true, HTTP: "[::]:8443", TokenSecret: "0123456789abcdef",
					TURNCredentialTTL: Duration{2 * time.Hour}, TokenTTL: Duration{15 * time.Minute}, SelfTest: true,
					SessionsPerIP: 3, FeedsPerToken: 4, ConnectTimeout: Duration{time.Second}, TURNAllocationsPerToken: 3,
				}
			},
		},
		{
			"sfu off without an address",
			"[sfu]\nenabled = false\nhttp = \"\"\n",
			func(c *Config) { c.SFU.Enabled = false; c.SFU.HTTP = "" },
		},
		{
			"sfu off keeps an address that would clash",
			"[sfu]\nenabled = false\nhttp = \"127.0.0.1:9641\"\n",
			func(c *Config) { c.SFU.Enabled = false; c.SFU.HTTP = "127.0.0.1:9641" },
		},
		{
			"sfu as dotted keys and an inline table",
			"sfu.enabled = false\nrelay = { min_port = 50000 }\n",
			func(c *Config) { c.SFU.Enabled = false; c.Relay.MinPort = 50000 },
		},
		{
			"sfu as an inline table",
			"sfu = { enabled = true, http = \"127.0.0.1:0\" }\n",
			func(c *Config) { c.SFU.HTTP = "127.0.0.1:0" },
		},
		{
			"sfu, metrics and admin on the same free port",
			"[sfu]\nhttp = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
			func(c *Config) {
				c.SFU.HTTP = "127.0.0.1:0"
				c.Metrics.Listen = "127.0.0.1:0"
				c.Admin.Listen = "127.0.0.1:0"
			},
		},
		{
			"sfu on the listener port over UDP only",
			"[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n[sfu]\nhttp = \"0.0.0.0:3478\"\n",
			func(c *Config) { c.Listen = c.Listen[:1]; c.SFU.HTTP = "0.0.0.0:3478" },
		},
		{
			"sfu token secret of 16 characters, not bytes",
			"[sfu]\ntoken_secret = \"ééééééééééééééé1\"\n",
			func(c *Config) { c.SFU.TokenSecret = "ééééééééééééééé1" },
		},
		{
			"sfu token secret from a file",
			"[sfu]\ntoken_secret_file = \"/etc/ferry/sfu-token-secret\"\n",
			func(c *Config) { c.SFU.TokenSecretFile = "/etc/ferry/sfu-token-secret" },
		},
		{
			"log",
			"[log]\nlevel = \"debug\"\nformat = \"json\"\n",
			func(c *Config) { c.Log = Log{Level: "debug", Format: "json"} },
		},
		{
			"software may be empty",
			"[server]\nsoftware = \"\"\n",
			func(c *Config) { c.Server.Software = "" },
		},
		{
			"CRLF line ends",
			"[relay]\r\nmin_port = 50000\r\n",
			func(c *Config) { c.Relay.MinPort = 50000 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("ferry.toml", []byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if c.File() != "ferry.toml" {
				t.Errorf("File() = %q, want ferry.toml", c.File())
			}
			want := exported(def)
			want.Listen = append([]Listener(nil), def.Listen...)
			tt.want(&want)
			if got := exported(c); !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string // must appear in the error message
	}{
		// Unknown keys.
		{"unknown top-level key", "foo = 1\n", "bad.toml:1: foo: unknown key"},
		{"unknown table", "[server]\nrealm = \"x\"\n\n[mcu]\nenabled = true\n", "bad.toml:4: mcu: unknown key"},
		{"unknown key in relay", "[relay]\nmin_port = 50000\nbind_ipp = \"1.2.3.4\"\n", "bad.toml:3: relay.bind_ipp: unknown key"},
		{"keys match exactly", "[server]\nRealm = \"x\"\n", "bad.toml:2: server.Realm: unknown key"},
		{
			"unknown key in second listen",
			"[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n\n[[listen]]\nproto = \"tcp\"\nport = 3478\n",
			"bad.toml:7: listen[1].port: unknown key",
		},
		{"first unknown key in file order", "[relay]\nzzz = 1\naaa = 2\n", "bad.toml:2: relay.zzz: unknown key"},

		// Syntax and types.
		{"syntax error", "[relay]\nmin_port = = 3\n", "bad.toml:2:12: toml: expected value"},
		{"duplicate key", "[relay]\nmin_port = 3\nmin_port = 4\n", "bad.toml:3:"},
		{"string for integer", "[relay]\nmin_port = \"50000\"\n", "bad.toml:2: relay.min_port: expected an integer, found a string"},
		{"integer for string", "[[listen]]\nproto = \"udp\"\naddr = 3478\n", "bad.toml:3: listen[0].addr: expected a string, found an integer"},
		{"table for string", "[server]\nrealm = { a = 1 }\n", "bad.toml:2: server.realm: expected a string, found a table"},
		{"string for table", "relay = \"x\"\n", "bad.toml:1: relay: expected a table, found a string"},
		{"string for array", "[relay]\ndeny_peers = \"recommended\"\n", "bad.toml:2: relay.deny_peers: expected an array, found a string"},
		{"integer in string array", "[relay]\ndeny_peers = [\"recommended\", 1]\n", "bad.toml:2: relay.deny_peers[1]: expected a string, found an integer"},
		{"string for boolean", "[sfu]\nenabled = \"true\"\n", "bad.toml:2: sfu.enabled: expected a boolean, found a string"},
		{"integer for boolean", "[sfu]\nenabled = 1\n", "bad.toml:2: sfu.enabled: expected a boolean, found an integer"},
		{"boolean for string", "[sfu]\nhttp = false\n", "bad.toml:2: sfu.http: expected a string, found a boolean"},
		{"boolean for integer", "[relay]\nmin_port = true\n", "bad.toml:2: relay.min_port: expected an integer, found a boolean"},
		{"boolean for duration", "[sfu]\ntoken_ttl = true\n", "bad.toml:2: sfu.token_ttl: expected a duration string such as \"24h\", found a boolean"},
		{"bad duration", "[auth]\ncredential_ttl = \"24x\"\n", `bad.toml:2: auth.credential_ttl: invalid duration "24x"`},
		{"integer duration", "[auth]\ncredential_ttl = 86400\n", "bad.toml:2: auth.credential_ttl: expected a duration string"},

		// server
		{"empty realm", "[server]\nrealm = \"\"\n", "bad.toml:2: server.realm: must not be empty"},
		{"long software", "[server]\nsoftware = \"" + strings.Repeat("x", 128) + "\"\n", "bad.toml:2: server.software: is 128 characters long"},

		// listen
		{"no listener", "listen = []\n", "bad.toml:1: listen: at least one"},
		{"unknown proto", "[[listen]]\nproto = \"sctp\"\naddr = \"0.0.0.0:3478\"\n", `bad.toml:2: listen[0].proto: unknown proto "sctp"`},
		{
			"missing proto is not inherited from the default",
			"[[listen]]\naddr = \"0.0.0.0:3478\"\n",
			`bad.toml:1: listen[0].proto: unknown proto ""`,
		},
		{"host name", "[[listen]]\nproto = \"udp\"\naddr = \"localhost:3478\"\n", `bad.toml:3: listen[0].addr: "localhost:3478" is not IP:port`},
		{"IPv6 without brackets", "[[listen]]\nproto = \"udp\"\naddr = \"::1:3478\"\n", "bad.toml:3: listen[0].addr:"},
		{"no port", "[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0\"\n", "bad.toml:3: listen[0].addr:"},
		{"port 0", "[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:0\"\n", "bad.toml:3: listen[0].addr: \"0.0.0.0:0\": port must be 1 to 65535"},
		{"udp with cert", "[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\ncert = \"c.pem\"\n", "bad.toml:4: listen[0].cert: cert and key only apply to tls and dtls"},
		{"tcp with key", "[[listen]]\nproto = \"tcp\"\naddr = \"0.0.0.0:3478\"\nkey = \"k.pem\"\n", "bad.toml:4: listen[0].key: cert and key only apply"},
		{
			"tls without cert",
			"[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n[[listen]]\nproto = \"tls\"\naddr = \"0.0.0.0:5349\"\n",
			"bad.toml:4: listen[1].cert: a tls listener needs cert and key",
		},
		{"dtls without key", "[[listen]]\nproto = \"dtls\"\naddr = \"0.0.0.0:5349\"\ncert = \"c.pem\"\n", "bad.toml:1: listen[0].key: a dtls listener needs cert and key"},
		{
			"duplicate listener",
			"[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n",
			"bad.toml:6: listen[1].addr: udp 0.0.0.0:3478 is already used by listen[0] (udp)",
		},

		// relay addresses
		{"IPv6 bind_ip", "[relay]\nbind_ip = \"::\"\n", `bad.toml:2: relay.bind_ip: "::" is not an IPv4 address`},
		{"host name bind_ip", "[relay]\nbind_ip = \"relay.example\"\n", "bad.toml:2: relay.bind_ip: "},
		{"unspecified public_ip", "[relay]\npublic_ip = \"0.0.0.0\"\n", "bad.toml:2: relay.public_ip: \"0.0.0.0\": want a specific address"},
		{"IPv4 bind_ip6", "[relay]\nbind_ip6 = \"10.0.0.1\"\n", `bad.toml:2: relay.bind_ip6: "10.0.0.1" is not an IPv6 address`},
		{"IPv4-mapped bind_ip6", "[relay]\nbind_ip6 = \"::ffff:10.0.0.1\"\n", "bad.toml:2: relay.bind_ip6: "},
		{"zone in bind_ip6", "[relay]\nbind_ip6 = \"fe80::1%eth0\"\n", "bad.toml:2: relay.bind_ip6: \"fe80::1%eth0\": a zone is not allowed"},
		{"unspecified public_ip6", "[relay]\nbind_ip6 = \"::\"\npublic_ip6 = \"::\"\n", "bad.toml:3: relay.public_ip6: "},
		{"public_ip6 without bind_ip6", "[relay]\npublic_ip6 = \"2001:db8::1\"\n", "bad.toml:2: relay.public_ip6: needs relay.bind_ip6"},

		// relay ports
		{"min_port 0", "[relay]\nmin_port = 0\n", "bad.toml:2: relay.min_port: 0 is not a port"},
		{"max_port too big", "[relay]\n\nmax_port = 70000\n", "bad.toml:3: relay.max_port: 70000 is not a port"},
		{"upside-down ports", "[relay]\nmin_port = 60000\nmax_port = 50000\n", "bad.toml:2: relay.min_port: min_port 60000 is above max_port 50000"},
		{
			"upside-down ports, min_port left at its default",
			"[relay]\nmax_port = 40000\n",
			"bad.toml: relay.min_port: min_port 49152 is above max_port 40000",
		},
		{
			"port range overlaps a default listener",
			"[relay]\nmin_port = 3000\nmax_port = 4000\n",
			"bad.toml:2: relay.min_port: port range 3000-4000 overlaps listen[0] port 3478",
		},
		{
			"port range overlaps a listener",
			"[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:50000\"\n",
			"bad.toml: relay.min_port: port range 49152-65535 overlaps listen[1] port 50000",
		},

		// relay peers
		{"bad CIDR", "[relay]\ndeny_peers = [\"recommended\", \"10.0.0.0/33\"]\n", `bad.toml:2: relay.deny_peers: "10.0.0.0/33" is not "recommended", a CIDR or an IP address`},
		{"host name peer", "[relay]\ndeny_peers = [\"example.com\"]\n", `bad.toml:2: relay.deny_peers: "example.com"`},
		{"zone in peer", "[relay]\nallow_peers = [\"fe80::1%eth0\"]\n", `bad.toml:2: relay.allow_peers: "fe80::1%eth0"`},
		{"recommended is deny only", "[relay]\nallow_peers = [\"recommended\"]\n", `bad.toml:2: relay.allow_peers: "recommended" is not a CIDR or an IP address`},
		{"offload value", "[relay]\noffload = \"on\"\n", `bad.toml:2: relay.offload: "on": want "auto" or "off"`},
		{"offload interface name", "[relay]\noffload_interfaces = [\"eth0\", \"a/b\"]\n", `bad.toml:2: relay.offload_interfaces: "a/b" is not an interface name`},
		{"offload interface twice", "[relay]\noffload = \"off\"\noffload_interfaces = [\"eth0\", \"eth0\"]\n", `bad.toml:3: relay.offload_interfaces: "eth0" is listed twice`},
		{
			"bad entry in a multi-line array",
			"[relay]\nallow_peers = [\n  \"127.0.0.1/32\",\n  \"127.0.0.1/\",\n]\n",
			`bad.toml:2: relay.allow_peers: "127.0.0.1/"`,
		},

		// auth
		{"empty secret", "[auth]\nsecrets = [\"s1\", \"\"]\n", "bad.toml:2: auth.secrets[1]: a secret must not be empty"},
		{"zero ttl", "[auth]\ncredential_ttl = \"0s\"\n", "bad.toml:2: auth.credential_ttl: must be positive, not 0s"},
		{"negative ttl", "[auth]\ncredential_ttl = \"-1h\"\n", "bad.toml:2: auth.credential_ttl: must be positive"},

		// limits
		{"negative per-user limit", "[limits]\nallocations_per_user = -1\n", "bad.toml:2: limits.allocations_per_user: must be 0 (no limit) or more, not -1"},
		{"negative total limit", "[limits]\nallocations_total = -5\n", "bad.toml:2: limits.allocations_total: must be 0"},
		{
			"negative unauthenticated rate",
			"[limits]\nallocations_total = 5\nunauthenticated_per_ip_rate = -1\n",
			"bad.toml:3: limits.unauthenticated_per_ip_rate: must be 0 (no limit) or more, not -1",
		},
		{"negative channel limit", "[limits]\nchannels_per_allocation = -1\n", "bad.toml:2: limits.channels_per_allocation: must be 0 (no limit) or more, not -1"},
		{"negative connection limit", "[limits]\nconnections_per_allocation = -1\n", "bad.toml:2: limits.connections_per_allocation: must be 0 (no limit) or more, not -1"},
		{"negative TCP total", "[limits]\ntcp_connections_total = -2\n",
			"bad.toml:2: limits.tcp_connections_total: must be 0 (a quarter of the open-file limit) or more, not -2"},
		{"negative binding rate", "[limits]\nbinding_per_ip_rate = -3\n", "bad.toml:2: limits.binding_per_ip_rate: must be 0"},
		{"negative dtls handshakes", "[limits]\ndtls_handshakes = -1\n", "bad.toml:2: limits.dtls_handshakes: must be 0 (no limit) or more, not -1"},
		{"negative dtls handshakes per ip", "[limits]\n\ndtls_handshakes_per_ip = -4\n", "bad.toml:3: limits.dtls_handshakes_per_ip: must be 0 (no limit) or more, not -4"},
		{"zero lifetime cap", "[limits]\nmax_allocation_lifetime = \"0s\"\n", "bad.toml:2: limits.max_allocation_lifetime: must be between 1s and 1h0m0s, not 0s"},
		{"lifetime cap over an hour", "[limits]\n\nmax_allocation_lifetime = \"2h\"\n", "bad.toml:3: limits.max_allocation_lifetime: must be between 1s and 1h0m0s, not 2h0m0s"},
		{"sub-second allocate timeout", "[limits]\nallocate_timeout = \"500ms\"\n", "bad.toml:2: limits.allocate_timeout: must be at least 1s, not 500ms"},

		// sfu
		{"unknown key in sfu", "[sfu]\nenabled = true\nport = 8080\n", "bad.toml:3: sfu.port: unknown key"},
		{"sfu on without an address", "[sfu]\nhttp = \"\"\n", "bad.toml:2: sfu.http: must be set when sfu.enabled is true"},
		{"negative sessions per token", "[sfu]\nsessions_per_token = -1\n", "bad.toml:2: sfu.sessions_per_token: must be 0 (no limit) or more, not -1"},
		{"negative sessions per ip", "[sfu]\nenabled = true\nsessions_per_ip = -2\n", "bad.toml:3: sfu.sessions_per_ip: must be 0 (no limit) or more, not -2"},
		{"negative feeds per token", "[sfu]\nfeeds_per_token = -1\n", "bad.toml:2: sfu.feeds_per_token: must be 0 (no limit) or more, not -1"},
		{"negative feeds per ip", "[sfu]\nfeeds_per_ip = -1\n", "bad.toml:2: sfu.feeds_per_ip: must be 0 (no limit) or more, not -1"},
		{"negative TURN allocations per token", "[sfu]\nturn_allocations_per_token = -1\n",
			"bad.toml:2: sfu.turn_allocations_per_token: must be 0 (no limit) or more, not -1"},
		{"sub-second connect timeout", "[sfu]\nconnect_timeout = \"500ms\"\n", "bad.toml:2: sfu.connect_timeout: must be at least 1s, not 500ms"},
		{"no connect timeout", "[sfu]\nconnect_timeout = \"0s\"\n", "bad.toml:2: sfu.connect_timeout: must be at least 1s, not 0s"},
		{"string for a session limit", "[sfu]\nsessions_per_ip = \"10\"\n", "bad.toml:2: sfu.sessions_per_ip: expected an integer, found a string"},
		{"sfu host name", "[sfu]\nhttp = \"localhost:8080\"\n", `bad.toml:2: sfu.http: "localhost:8080" is not IP:port with a literal IP (IPv6 in brackets), e.g. "0.0.0.0:8080"`},
		{"sfu without IP", "[sfu]\nhttp = \":8080\"\n", `bad.toml:2: sfu.http: ":8080" is not IP:port`},
		{"sfu off with a bad address", "[sfu]\nenabled = false\nhttp = \"0.0.0.0\"\n", `bad.toml:3: sfu.http: "0.0.0.0" is not IP:port`},
		{"sfu in the relay port range", "[sfu]\nhttp = \"0.0.0.0:50000\"\n", "bad.toml:2: sfu.http: port 50000 is in the relay port range 49152-65535"},
		{
			"relay port range over the default sfu port",
			"[relay]\nmin_port = 8000\nmax_port = 9000\n",
			"bad.toml: sfu.http: port 8080 is in the relay port range 8000-9000",
		},
		{"sfu on a tcp listener", "[sfu]\nhttp = \"0.0.0.0:3478\"\n", "bad.toml:2: sfu.http: tcp 0.0.0.0:3478 is already used by listen[1] (tcp)"},
		{"sfu on the metrics address", "[sfu]\nhttp = \"127.0.0.1:9641\"\n", "bad.toml:2: sfu.http: tcp 127.0.0.1:9641 is already used by metrics.listen"},
		{
			"sfu on the admin address",
			"[admin]\nlisten = \"[::1]:8080\"\n[sfu]\nhttp = \"[::1]:8080\"\n",
			"bad.toml:4: sfu.http: tcp [::1]:8080 is already used by admin.listen",
		},
		{
			"metrics moved onto the default sfu address",
			"[metrics]\nlisten = \"0.0.0.0:8080\"\n",
			"bad.toml:2: metrics.listen: tcp 0.0.0.0:8080 is already used by sfu.http",
		},
		{
			"admin moved onto the default sfu address",
			"[admin]\nlisten = \"0.0.0.0:8080\"\ntoken = \"t\"\n",
			"bad.toml:2: admin.listen: tcp 0.0.0.0:8080 is already used by sfu.http",
		},
		{
			"tcp listener on the default sfu address",
			"[[listen]]\nproto = \"tcp\"\naddr = \"0.0.0.0:8080\"\n",
			"bad.toml:3: listen[0].addr: tcp 0.0.0.0:8080 is already used by sfu.http",
		},
		{"token secret and file", "[sfu]\ntoken_secret = \"0123456789abcdef\"\ntoken_secret_file = \"/x\"\n", `bad.toml:3: sfu.token_secret_file: set token_secret or token_secret_file, not both`},
		{"short token secret", "[sfu]\ntoken_secret = \"0123456789abcde\"\n", `bad.toml:2: sfu.token_secret: is 15 characters long, at least 16 needed (or "" for a random one at each start)`},
		{"zero turn_credential_ttl", "[sfu]\nturn_credential_ttl = \"0s\"\n", "bad.toml:2: sfu.turn_credential_ttl: must be positive, not 0s"},
		{"negative token_ttl", "[sfu]\ntoken_ttl = \"-1m\"\n", "bad.toml:2: sfu.token_ttl: must be positive, not -1m0s"},
		{"integer token_ttl", "[sfu]\ntoken_ttl = 3600\n", "bad.toml:2: sfu.token_ttl: expected a duration string"},
		{"limits are checked before sfu", "[sfu]\ntoken_ttl = \"0s\"\n[limits]\nallocations_total = -1\n", "bad.toml:4: limits.allocations_total:"},
		{"sfu is checked before metrics", "[metrics]\nlisten = \"x\"\n[sfu]\ntoken_ttl = \"0s\"\n", "bad.toml:4: sfu.token_ttl:"},

		// server.name, server.alternate_server and server.drain_timeout
		{"IP address as name", "[server]\nname = \"203.0.113.7\"\n", `bad.toml:2: server.name: "203.0.113.7" is an IP address: want a host name`},
		{"name with a port", "[server]\nname = \"turn.example.com:3478\"\n", `bad.toml:2: server.name: "turn.example.com:3478" is not a host name: label "com:3478"`},
		{"name with an empty label", "[server]\nname = \"turn..example.com\"\n", `bad.toml:2: server.name: "turn..example.com" is not a host name: label ""`},
		{"name label starting with a hyphen", "[server]\nname = \"-turn.example.com\"\n", `label "-turn" must be 1 to 63 letters`},
		{"name label too long", "[server]\nname = \"" + strings.Repeat("a", 64) + ".example\"\n", `bad.toml:2: server.name: "aaaa`},
		{"name too long", "[server]\nname = \"" + strings.Repeat("abcdefgh.", 29) + "com\"\n", "bad.toml:2: server.name: is 264 characters long, at most 253 allowed"},
		{"URI as name", "[server]\nname = \"turns:turn.example.com\"\n", `bad.toml:2: server.name: "turns:turn.example.com" is not a host name`},
		{
			"host name alternate_server",
			"[server]\nalternate_server = \"turn.example.org:3478\"\n",
			`bad.toml:2: server.alternate_server: "turn.example.org:3478" is not IP:port with a literal IP`,
		},
		{"alternate_server without port", "[server]\nalternate_server = \"203.0.113.7\"\n", `bad.toml:2: server.alternate_server: "203.0.113.7" is not IP:port`},
		{"alternate_server port 0", "[server]\nalternate_server = \"203.0.113.7:0\"\n", `bad.toml:2: server.alternate_server: "203.0.113.7:0": port must be 1 to 65535`},
		{"alternate_server port too big", "[server]\nalternate_server = \"203.0.113.7:65536\"\n", `bad.toml:2: server.alternate_server: "203.0.113.7:65536" is not IP:port`},
		{
			"unspecified alternate_server",
			"[server]\n\nalternate_server = \"[::]:3478\"\n",
			`bad.toml:3: server.alternate_server: "[::]:3478": want a specific address, not the unspecified one`,
		},
		{
			"zone in alternate_server",
			"[server]\nalternate_server = \"[fe80::1%eth0]:3478\"\n",
			`bad.toml:2: server.alternate_server: "[fe80::1%eth0]:3478": a zone is not allowed here`,
		},
		{"negative drain_timeout", "[server]\ndrain_timeout = \"-1s\"\n", "bad.toml:2: server.drain_timeout: must be 0 (exit at once) or more, not -1s"},
		{"integer drain_timeout", "[server]\ndrain_timeout = 30\n", "bad.toml:2: server.drain_timeout: expected a duration string"},
		{"procs 0", "[server]\n\nprocs = 0\n", `bad.toml:3: server.procs: 0: want "auto" or a whole number of 1 or more`},
		{"negative procs", "[server]\nprocs = -2\n", `bad.toml:2: server.procs: -2: want "auto" or a whole number of 1 or more`},
		{"procs as a string number", "[server]\nprocs = \"2\"\n", `bad.toml:2: server.procs: "2": want "auto" or a whole number of 1 or more, e.g. 2`},
		{"procs misspelt", "[server]\nprocs = \"Auto\"\n", `bad.toml:2: server.procs: "Auto": want "auto"`},
		{"fractional procs", "[server]\nprocs = 1.5\n", `bad.toml:2: server.procs: expected "auto" or an integer, found a float`},

		// metrics
		{"metrics host name", "[metrics]\nlisten = \"localhost:9641\"\n", `bad.toml:2: metrics.listen: "localhost:9641" is not IP:port with a literal IP (IPv6 in brackets), e.g. "127.0.0.1:9641"`},
		{"metrics without IP", "[metrics]\nlisten = \":9641\"\n", `bad.toml:2: metrics.listen: ":9641" is not IP:port`},
		{"metrics IPv6 without brackets", "[metrics]\nlisten = \"::1:9641\"\n", `bad.toml:2: metrics.listen: "::1:9641" is not IP:port`},
		{"metrics port too big", "[metrics]\nlisten = \"127.0.0.1:65536\"\n", `bad.toml:2: metrics.listen: "127.0.0.1:65536" is not IP:port`},
		{"metrics not a string", "[metrics]\nlisten = 9641\n", "bad.toml:2: metrics.listen: expected a string, found an integer"},
		{"unknown key in metrics", "[metrics]\nlisten = \"\"\npath = \"/m\"\n", "bad.toml:3: metrics.path: unknown key"},
		{"pprof off loopback", "[debug]\npprof = \"0.0.0.0:6060\"\n", "bad.toml:2: debug.pprof: must be a loopback address, not 0.0.0.0:6060: the profiler has no authentication"},
		{"pprof on the metrics address", "[debug]\npprof = \"127.0.0.1:9641\"\n", "bad.toml:2: debug.pprof: tcp 127.0.0.1:9641 is already used by metrics.listen"},
		{
			"metrics in the relay port range",
			"[metrics]\nlisten = \"127.0.0.1:50000\"\n",
			"bad.toml:2: metrics.listen: port 50000 is in the relay port range 49152-65535",
		},
		{
			"metrics on a tcp listener",
			"[metrics]\nlisten = \"0.0.0.0:3478\"\n",
			"bad.toml:2: metrics.listen: tcp 0.0.0.0:3478 is already used by listen[1] (tcp)",
		},

		// admin
		{"admin host name", "[admin]\nlisten = \"localhost:9642\"\n", `bad.toml:2: admin.listen: "localhost:9642" is not IP:port with a literal IP (IPv6 in brackets), e.g. "127.0.0.1:9642"`},
		{"admin port too big", "[admin]\nlisten = \"[::1]:99999\"\n", `bad.toml:2: admin.listen: "[::1]:99999" is not IP:port`},
		{
			"admin in the relay port range",
			"[relay]\nmin_port = 9000\nmax_port = 9999\n[metrics]\nlisten = \"\"\n",
			"bad.toml: admin.listen: port 9642 is in the relay port range 9000-9999",
		},
		{
			"admin on the metrics address",
			"[metrics]\nlisten = \"127.0.0.1:9000\"\n[admin]\nlisten = \"127.0.0.1:9000\"\n",
			"bad.toml:4: admin.listen: tcp 127.0.0.1:9000 is already used by metrics.listen",
		},
		{
			"admin on all IPv4 addresses without a token",
			"[admin]\nlisten = \"0.0.0.0:9642\"\n",
			"bad.toml: admin.token: must be set when admin.listen (0.0.0.0:9642) is not a loopback address",
		},
		{
			"admin on all IPv6 addresses with an empty token",
			"[admin]\nlisten = \"[::]:0\"\ntoken = \"\"\n",
			"bad.toml:3: admin.token: must be set when admin.listen ([::]:0) is not a loopback address",
		},
		{
			"admin on a public address without a token",
			"[admin]\nlisten = \"192.0.2.1:9642\"\n",
			"bad.toml: admin.token: must be set when admin.listen (192.0.2.1:9642) is not a loopback address",
		},
		{"token with a space", "[admin]\ntoken = \"abc def\"\n", "bad.toml:2: admin.token: must not contain whitespace or control characters (one is at byte 3)"},
		{"token with a newline", "[admin]\ntoken = \"\"\"\nabc\n\"\"\"\n", "bad.toml:2: admin.token: must not contain whitespace or control characters (one is at byte 3)"},
		{"token with a control character", "[admin]\ntoken = \"a\\u0000\"\n", "bad.toml:2: admin.token: must not contain whitespace"},
		{"token with a no-break space", "[admin]\ntoken = \"a\u00a0b\"\n", "bad.toml:2: admin.token: must not contain whitespace"},

		// log
		{"unknown log level", "[log]\nlevel = \"trace\"\n", `bad.toml:2: log.level: unknown level "trace": want debug, info, warn or error`},
		{"log level in capitals", "[log]\nformat = \"json\"\nlevel = \"INFO\"\n", `bad.toml:3: log.level: unknown level "INFO"`},
		{"empty log level", "[log]\nlevel = \"\"\n", `bad.toml:2: log.level: unknown level ""`},
		{"unknown log format", "[log]\nformat = \"logfmt\"\n", `bad.toml:2: log.format: unknown format "logfmt": want text or json`},
		{"unknown key in log", "[log]\nfile = \"/var/log/ferry.log\"\n", "bad.toml:2: log.file: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("bad.toml", []byte(tt.input))
			if err == nil {
				t.Fatalf("no error; parsed %+v", c)
			}
			if c != nil {
				t.Error("Config returned with the error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not an *Error", err)
			}
		})
	}
}

// TestSyntaxErrorKeepsParseError checks that the decoder's error stays
// reachable for callers who want its details (ErrorWithPosition).
func TestSyntaxErrorKeepsParseError(t *testing.T) {
	_, err := Parse("bad.toml", []byte("a = 1\nb = = 2\n"))
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("errors.As(%v, toml.ParseError) = false", err)
	}
	if pe.Position.Line != 2 {
		t.Errorf("ParseError line = %d, want 2", pe.Position.Line)
	}
}

func TestErrorf(t *testing.T) {
	c, err := Parse("ferry.toml", []byte("[relay]\nmin_port = 50000\n\n[[listen]]\nproto = \"udp\"\naddr = \"0.0.0.0:3478\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("address already in use")
	tests := []struct {
		name string
		c    *Config
		key  string
		want string
	}{
		{"key in file", c, "relay.min_port", "ferry.toml:2: relay.min_port: boom: address already in use"},
		{"key with a default value", c, "relay.max_port", "ferry.toml: relay.max_port: boom: address already in use"},
		{"table header", c, "relay", "ferry.toml:1: relay: boom: address already in use"},
		{"listen key", c, "listen[0].addr", "ferry.toml:6: listen[0].addr: boom: address already in use"},
		{"unwritten key of a listener", c, "listen[0].cert", "ferry.toml:4: listen[0].cert: boom: address already in use"},
		{"no such listener", c, "listen[3].addr", "ferry.toml: listen[3].addr: boom: address already in use"},
		{"default config", Default(), "relay.max_port", fmt.Sprintf("(default):%d: relay.max_port: boom", defaultLine(t, "max_port ="))},
		{"key of an unwritten table", c, "limits.allocations_total", "ferry.toml: limits.allocations_total: boom"},
		{"hand-built config", &Config{}, "relay.min_port", "relay.min_port: boom: address already in use"},
		{"nil config", nil, "relay.min_port", "relay.min_port: boom: address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Errorf(tt.key, "boom: %w", cause)
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Errorf = %q, want prefix %q", err, tt.want)
			}
			if !errors.Is(err, cause) {
				t.Error("Errorf dropped the %w error")
			}
		})
	}
}

// defaultLine returns the line of default.toml that starts with prefix.
func defaultLine(t *testing.T, prefix string) int {
	t.Helper()
	for i, l := range strings.Split(string(DefaultTOML()), "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("default.toml has no line starting with %q", prefix)
	return 0
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	missing := filepath.Join(dir, "missing.toml")
	if err := os.WriteFile(good, []byte("[server]\nrealm = \"example.org\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("[server]\nrealm = \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.File() != good || c.Server.Realm != "example.org" {
		t.Errorf("Load(good) = File %q, realm %q", c.File(), c.Server.Realm)
	}

	tests := []struct {
		path string
		want string
	}{
		{missing, missing},
		{bad, bad + ":2: server.realm:"},
	}
	for _, tt := range tests {
		_, err := Load(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%s) error = %v, want it to contain %q", tt.path, err, tt.want)
		}
	}
	if _, err := Load(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an os.ErrNotExist", err)
	}
}
