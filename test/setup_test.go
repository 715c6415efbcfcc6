package test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
)

// setup describes a test server; toml renders it as a Ferry config.
type setup struct {
	listeners  []listenSpec
	bindIP     string
	publicIP   string
	bindIP6    string
	minPort    int
	maxPort    int
	allowPeers []string
	usersFile  string
	usersRedis string // auth.users_redis; "" = off
	secrets    []string
	perUser    int
	total      int
	// drainTimeout is [server] drain_timeout: "0s" by default, so stopping a test server
	// with allocations left does not wait.
	drainTimeout    string
	alternateServer string
	// metricsAddr and adminAddr are the HTTP endpoints, each on a free port.
	metricsAddr, adminAddr string
	adminToken             string
	unauthRate             int
	// Per-allocation limits; zero values keep Ferry's defaults.
	permissionsPerAlloc, channelsPerAlloc int
	connsPerAlloc, tcpConnsTotal          int
	maxLifetime, allocateTimeout          string
	// sfuAddr is the SFU's HTTP address; "" turns the SFU off.
	sfuAddr         string
	sfuSelfTest     bool
	tokenSecret     string
	sfuTURNPerToken int // sfu.turn_allocations_per_token; 0 keeps the default
	// offload is [relay] offload ("" keeps the default, auto), denyPeers deny_peers (nil
	// keeps the default).
	offload   string
	denyPeers []string
}

type listenSpec struct{ proto, addr, cert, key string }

const (
	testRealm  = "ferry.test"
	testUser   = "alice"
	testPass   = "alice-password"
	testSecret = "rest-secret-1"
)

// newSetup is a server on 127.0.0.1 with UDP and TCP listeners on one port, a relay pool of
// poolSize ports and the users file holding alice.
func newSetup(t *testing.T, poolSize int) (*setup, int) {
	t.Helper()
	port := freePort(t, "127.0.0.1")
	min, max := relayRange(poolSize)
	s := &setup{
		listeners: []listenSpec{
			{proto: "udp", addr: addrString("127.0.0.1", port)},
			{proto: "tcp", addr: addrString("127.0.0.1", port)},
		},
		bindIP: "127.0.0.1", minPort: min, maxPort: max,
		usersFile: filepath.Join(t.TempDir(), "users.toml"),
		secrets:   []string{testSecret},
		perUser:   10,

		drainTimeout: "0s",
		metricsAddr:  addrString("127.0.0.1", freePort(t, "127.0.0.1")),
		adminAddr:    addrString("127.0.0.1", freePort(t, "127.0.0.1")),
		unauthRate:   20,
	}
	addUser(t, s.usersFile, testUser, testPass)
	return s, port
}

func addUser(t *testing.T, usersFile, name, password string) {
	t.Helper()
	if _, stderr, err := runFerry(t, password+"\n", "user", "add", name, "--realm", testRealm,
		"--users-file", usersFile, "--password-stdin"); err != nil {
		t.Fatalf("ferry user add: %v\n%s", err, stderr)
	}
}

func (s *setup) toml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nrealm = %q\ndrain_timeout = %q\nalternate_server = %q\n",
		testRealm, s.drainTimeout, s.alternateServer)
	for _, l := range s.listeners {
		fmt.Fprintf(&b, "[[listen]]\nproto = %q\naddr = %q\n", l.proto, l.addr)
		if l.cert != "" {
			fmt.Fprintf(&b, "cert = %q\nkey = %q\n", l.cert, l.key)
		}
	}
	fmt.Fprintf(&b, "[relay]\nbind_ip = %q\npublic_ip = %q\nbind_ip6 = %q\nmin_port = %d\nmax_port = %d\nallow_peers = %s\n",
		s.bindIP, s.publicIP, s.bindIP6, s.minPort, s.maxPort, tomlList(s.allowPeers))
	if s.offload != "" {
		fmt.Fprintf(&b, "offload = %q\n", s.offload)
	}
	if s.denyPeers != nil {
		fmt.Fprintf(&b, "deny_peers = %s\n", tomlList(s.denyPeers))
	}
	fmt.Fprintf(&b, "[auth]\nusers_file = %q\nsecrets = %s\nusers_redis = %q\n", s.usersFile, tomlList(s.secrets), s.usersRedis)
	fmt.Fprintf(&b, "[limits]\nallocations_per_user = %d\nallocations_total = %d\nunauthenticated_per_ip_rate = %d\n",
		s.perUser, s.total, s.unauthRate)
	s.writeAllocationLimits(&b)
	fmt.Fprintf(&b, "[metrics]\nlisten = %q\n[admin]\nlisten = %q\ntoken = %q\n", s.metricsAddr, s.adminAddr, s.adminToken)
	fmt.Fprintf(&b, "[sfu]\nenabled = %t\nhttp = %q\nself_test = %t\ntoken_secret = %q\n",
		s.sfuAddr != "", s.sfuAddr, s.sfuSelfTest, s.tokenSecret)
	if s.sfuTURNPerToken != 0 {
		fmt.Fprintf(&b, "turn_allocations_per_token = %d\n", s.sfuTURNPerToken)
	}
	return b.String()
}

func (s *setup) writeAllocationLimits(b *strings.Builder) {
	if s.permissionsPerAlloc != 0 {
		fmt.Fprintf(b, "permissions_per_allocation = %d\n", s.permissionsPerAlloc)
	}
	if s.channelsPerAlloc != 0 {
		fmt.Fprintf(b, "channels_per_allocation = %d\n", s.channelsPerAlloc)
	}
	if s.connsPerAlloc != 0 {
		fmt.Fprintf(b, "connections_per_allocation = %d\n", s.connsPerAlloc)
	}
	if s.tcpConnsTotal != 0 {
		fmt.Fprintf(b, "tcp_connections_total = %d\n", s.tcpConnsTotal)
	}
	if s.maxLifetime != "" {
		fmt.Fprintf(b, "max_allocation_lifetime = %q\n", s.maxLifetime)
	}
	if s.allocateTimeout != "" {
		fmt.Fprintf(b, "allocate_timeout = %q\n", s.allocateTimeout)
	}
}

func tomlList(items []string) string {
	quoted := make([]string, len(items))
	for i, it := range items {
		quoted[i] = fmt.Sprintf("%q", it)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// inPool reports whether ap is a relay address of s.
func (s *setup) inPool(ap netip.AddrPort) bool {
	return int(ap.Port()) >= s.minPort && int(ap.Port()) <= s.maxPort
}
