package test

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/testkit"
)

// TestRelaySendAndChannelData relays both ways with Send/Data indications and with
// ChannelData, over UDP and TCP client transports, and checks the peer sees the relayed
// address.
func TestRelaySendAndChannelData(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s, port := newSetup(t, 10)
			s.allowPeers = []string{"127.0.0.1/32"}
			startFerry(t, s.toml())

			peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

			c := dialRaw(t, network, addrString("127.0.0.1", port), testUser, testPass)
			relayed := c.allocate()
			if relayed.Addr() != netip.MustParseAddr("127.0.0.1") || !s.inPool(relayed) {
				t.Fatalf("relayed address %v is not 127.0.0.1 with a pool port", relayed)
			}
			mustSucceed(t, "CreatePermission", c.request(stun.MethodCreatePermission, testkit.PeerAddr(peerAddr)))

			c.sendIndication(peerAddr, []byte("via send"))
			expectAtPeer(t, peer, relayed, "via send")
			sendFromPeer(t, peer, relayed, "data indication")
			expectAtClient(t, c, dataMsg{peer: peerAddr, payload: []byte("data indication")})

			mustSucceed(t, "ChannelBind", c.request(stun.MethodChannelBind, channelNumber(0x4001), testkit.PeerAddr(peerAddr)))
			c.channelData(0x4001, []byte("via channel"))
			expectAtPeer(t, peer, relayed, "via channel")
			sendFromPeer(t, peer, relayed, "channel data")
			expectAtClient(t, c, dataMsg{channel: 0x4001, payload: []byte("channel data")})
		})
	}
}

func expectAtPeer(t *testing.T, peer *net.UDPConn, from netip.AddrPort, want string) {
	t.Helper()
	buf := make([]byte, 1500)
	_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, src, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("peer waiting for %q: %v", want, err)
	}
	if src != from || string(buf[:n]) != want {
		t.Fatalf("peer got %q from %v, want %q from %v", buf[:n], src, want, from)
	}
}

func sendFromPeer(t *testing.T, peer *net.UDPConn, to netip.AddrPort, payload string) {
	t.Helper()
	if _, err := peer.WriteToUDPAddrPort([]byte(payload), to); err != nil {
		t.Fatal(err)
	}
}

func expectAtClient(t *testing.T, c *rawClient, want dataMsg) {
	t.Helper()
	got, err := c.nextData(3 * time.Second)
	if err != nil {
		t.Fatalf("client waiting for %q: %v", want.payload, err)
	}
	if got.channel != want.channel || got.peer != want.peer || !bytes.Equal(got.payload, want.payload) {
		t.Fatalf("client got %+v, want %+v", got, want)
	}
}

// TestPublicIPAdvertised checks 1:1 NAT: the relayed address carries public_ip while the
// socket is bound on bind_ip. Nothing is sent to the public address.
func TestPublicIPAdvertised(t *testing.T) {
	s, port := newSetup(t, 4)
	s.publicIP = "203.0.113.9"
	startFerry(t, s.toml())
	c := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	relayed := c.allocate()
	if relayed.Addr() != netip.MustParseAddr("203.0.113.9") || !s.inPool(relayed) {
		t.Fatalf("relayed address %v, want 203.0.113.9 with a pool port", relayed)
	}
	// The socket is really bound on bind_ip: the port is taken there.
	if pc, err := net.ListenPacket("udp4", addrString("127.0.0.1", int(relayed.Port()))); err == nil {
		pc.Close()
		t.Fatalf("relay port %d is not bound on 127.0.0.1", relayed.Port())
	}
}

func TestBinding(t *testing.T) {
	s, port := newSetup(t, 2)
	startFerry(t, s.toml())
	for _, network := range []string{"udp", "tcp"} {
		c := dialRaw(t, network, addrString("127.0.0.1", port), "", "")
		m := c.roundTrip(stun.BindingRequest)
		if m.Type != stun.BindingSuccess {
			t.Fatalf("%s: got %s", network, m.Type)
		}
		var mapped stun.XORMappedAddress
		if err := mapped.GetFrom(m); err != nil {
			t.Fatalf("%s: no XOR-MAPPED-ADDRESS: %v", network, err)
		}
		local := c.conn.LocalAddr().String()
		if got := net.JoinHostPort(mapped.IP.String(), strconv.Itoa(mapped.Port)); got != local {
			t.Errorf("%s: XOR-MAPPED-ADDRESS %s, want %s", network, got, local)
		}
		var software stun.Software
		if err := software.GetFrom(m); err != nil || software.String() != "ferry" {
			t.Errorf("%s: SOFTWARE %q (%v), want ferry", network, software, err)
		}
		if err := stun.Fingerprint.Check(m); err != nil {
			t.Errorf("%s: FINGERPRINT: %v", network, err)
		}
	}
}

// TestErrorCodes provokes each error a client can meet and checks the code and the
// attributes that come with it.
func TestErrorCodes(t *testing.T) {
	s, port := newSetup(t, 3)
	s.perUser = 2
	addUser(t, s.usersFile, "bob", "bob-password")
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)

	t.Run("401 without credentials, with a nonce", func(t *testing.T) {
		c := dialRaw(t, "udp", server, testUser, testPass)
		m := c.roundTrip(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP)
		mustCode(t, "Allocate", m, stun.CodeUnauthorized)
		mustHaveNonceAndRealm(t, m)
	})
	t.Run("401 with a wrong password or user, with a fresh nonce", func(t *testing.T) {
		for _, who := range [][2]string{{testUser, "wrong"}, {"mallory", "x"}} {
			c := dialRaw(t, "udp", server, who[0], who[1])
			m := c.request(stun.MethodAllocate, requestedTransportUDP)
			mustCode(t, "Allocate as "+who[0], m, stun.CodeUnauthorized)
			mustHaveNonceAndRealm(t, m)
		}
	})
	t.Run("438 for a nonce Ferry did not issue, then success", func(t *testing.T) {
		c := dialRaw(t, "udp", server, testUser, testPass)
		c.realm, c.nonce = testRealm, stun.NewNonce("not-a-ferry-nonce")
		m := c.signedRoundTrip(stun.MethodAllocate, testPass, requestedTransportUDP)
		mustCode(t, "Allocate", m, stun.CodeStaleNonce)
		mustHaveNonceAndRealm(t, m)
		c.learnNonce(m)
		mustSucceed(t, "Allocate with the new nonce", c.signedRoundTrip(stun.MethodAllocate, testPass, requestedTransportUDP))
		mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
	})
	t.Run("437 after the allocation ended or expired", func(t *testing.T) {
		c := dialRaw(t, "udp", server, testUser, testPass)
		c.allocate()
		mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
		peer := netip.MustParseAddrPort("198.51.100.1:9")
		for _, method := range []stun.Method{stun.MethodRefresh, stun.MethodCreatePermission} {
			m := c.request(method, testkit.PeerAddr(peer))
			mustCode(t, method.String()+" after Refresh 0", m, stun.CodeAllocMismatch)
			mustHaveIntegrity(t, c, m)
		}
		c.allocate(lifetime(time.Second))
		time.Sleep(2500 * time.Millisecond)
		mustCode(t, "Refresh after expiry", c.request(stun.MethodRefresh), stun.CodeAllocMismatch)
		mustCode(t, "ChannelBind after expiry", c.request(stun.MethodChannelBind, channelNumber(0x4000), testkit.PeerAddr(peer)), stun.CodeAllocMismatch)
	})
	t.Run("441 for another user's allocation", func(t *testing.T) {
		c := dialRaw(t, "udp", server, testUser, testPass)
		c.allocate()
		c.user, c.pass = "bob", "bob-password"
		mustCode(t, "Refresh as bob", c.request(stun.MethodRefresh), stun.CodeWrongCredentials)
		c.user, c.pass = testUser, testPass
		mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
	})
	t.Run("403 for denied peers", func(t *testing.T) {
		c := dialRaw(t, "udp", server, testUser, testPass)
		c.allocate()
		for _, ip := range []string{"10.1.2.3", "127.0.0.2", "0.0.0.0", "169.254.1.1", "224.0.0.1", "::ffff:10.1.2.3",
			"64:ff9b::7f00:1", "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"} {
			m := c.request(stun.MethodCreatePermission, testkit.PeerAddr(netip.AddrPortFrom(netip.MustParseAddr(ip), 9)))
			mustCode(t, "CreatePermission to "+ip, m, stun.CodeForbidden)
		}
		// Ferry's own relay IP is permitted, but only its pool ports are reachable.
		mustSucceed(t, "CreatePermission to the relay IP", c.request(stun.MethodCreatePermission, testkit.PeerAddr(netip.MustParseAddrPort("127.0.0.1:22"))))
		m := c.request(stun.MethodChannelBind, channelNumber(0x4000), testkit.PeerAddr(netip.MustParseAddrPort("127.0.0.1:22")))
		mustCode(t, "ChannelBind to 127.0.0.1:22", m, stun.CodeForbidden)
		mustHaveIntegrity(t, c, m)
		m = c.request(stun.MethodChannelBind, channelNumber(0x4000), testkit.PeerAddr(netip.MustParseAddrPort("10.0.0.1:3478")))
		mustCode(t, "ChannelBind to 10.0.0.1", m, stun.CodeForbidden)
		mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
	})
	t.Run("440 for an address family without relays", func(t *testing.T) {
		c := dialRaw(t, "udp", server, testUser, testPass)
		mustCode(t, "Allocate IPv6", c.request(stun.MethodAllocate, requestedTransportUDP, requestedFamily(2)), stun.CodeAddrFamilyNotSupported)
	})
	t.Run("486 per user, slot back when an allocation ends", func(t *testing.T) {
		a := dialRaw(t, "udp", server, testUser, testPass)
		b := dialRaw(t, "tcp", server, testUser, testPass)
		a.allocate()
		b.allocate()
		c := dialRaw(t, "udp", server, testUser, testPass)
		mustCode(t, "third Allocate", c.request(stun.MethodAllocate, requestedTransportUDP), stun.CodeAllocQuotaReached)
		mustSucceed(t, "Refresh 0", a.request(stun.MethodRefresh, lifetime(0)))
		mustSucceed(t, "third Allocate after one ended", c.request(stun.MethodAllocate, requestedTransportUDP))
		for _, x := range []*rawClient{b, c} {
			mustSucceed(t, "Refresh 0", x.request(stun.MethodRefresh, lifetime(0)))
		}
	})
	t.Run("508 when the pool is empty", func(t *testing.T) {
		var clients []*rawClient
		for i, user := range []string{testUser, testUser, "bob"} {
			pass := testPass
			if user == "bob" {
				pass = "bob-password"
			}
			c := dialRaw(t, "udp", server, user, pass)
			if r := c.allocate(); !s.inPool(r) {
				t.Fatalf("allocation %d: %v outside the pool", i, r)
			}
			clients = append(clients, c)
		}
		c := dialRaw(t, "udp", server, "bob", "bob-password")
		mustCode(t, "Allocate with an empty pool", c.request(stun.MethodAllocate, requestedTransportUDP), stun.CodeInsufficientCapacity)
		for _, x := range clients {
			mustSucceed(t, "Refresh 0", x.request(stun.MethodRefresh, lifetime(0)))
		}
	})
}

// TestTotalQuota: allocations_total caps the whole server, whoever asks; 486 as coturn.
func TestTotalQuota(t *testing.T) {
	s, port := newSetup(t, 4)
	s.total = 1
	addUser(t, s.usersFile, "bob", "bob-password")
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)
	alice := dialRaw(t, "udp", server, testUser, testPass)
	alice.allocate()
	bob := dialRaw(t, "tcp", server, "bob", "bob-password")
	mustCode(t, "second allocation of the server", bob.request(stun.MethodAllocate, requestedTransportUDP), stun.CodeAllocQuotaReached)
	mustSucceed(t, "Refresh 0", alice.request(stun.MethodRefresh, lifetime(0)))
	mustSucceed(t, "Allocate once the first ended", bob.request(stun.MethodAllocate, requestedTransportUDP))
}

func mustHaveNonceAndRealm(t *testing.T, m *stun.Message) {
	t.Helper()
	var nonce stun.Nonce
	var realm stun.Realm
	if nonce.GetFrom(m) != nil || len(nonce) == 0 {
		t.Fatalf("%s: no NONCE", m)
	}
	if realm.GetFrom(m) != nil || realm.String() != testRealm {
		t.Fatalf("%s: REALM %q, want %q", m, realm, testRealm)
	}
}

// mustHaveIntegrity checks the response is signed with the client's key.
func mustHaveIntegrity(t *testing.T, c *rawClient, m *stun.Message) {
	t.Helper()
	if err := c.integrity().Check(m); err != nil {
		t.Fatalf("%s: MESSAGE-INTEGRITY: %v", m, err)
	}
}

// TestPoolFillAndDrain fills the pool to its last port, checks the next Allocate gets 508,
// ends every allocation and fills it again.
func TestPoolFillAndDrain(t *testing.T) {
	const size = 8
	s, port := newSetup(t, size)
	s.perUser = 0
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)

	for round := range 2 {
		ports := map[uint16]bool{}
		var clients []*rawClient
		for range size {
			c := dialRaw(t, "udp", server, testUser, testPass)
			r := c.allocate()
			if !s.inPool(r) || ports[r.Port()] {
				t.Fatalf("round %d: relayed %v is outside the pool or handed out twice", round, r)
			}
			ports[r.Port()] = true
			clients = append(clients, c)
		}
		extra := dialRaw(t, "udp", server, testUser, testPass)
		mustCode(t, "Allocate beyond the pool", extra.request(stun.MethodAllocate, requestedTransportUDP), stun.CodeInsufficientCapacity)
		for _, c := range clients {
			mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
		}
	}
}

// TestRESTCredentials covers the TURN REST API: a credential of the signing secret, one of
// an older secret still listed (rotation), an expired one, one of an unknown secret, and
// per-user quotas counted by the USER part.
func TestRESTCredentials(t *testing.T) {
	s, port := newSetup(t, 6)
	s.secrets = []string{"new-secret", "old-secret"}
	s.perUser = 1
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)
	now := time.Now()

	cases := []struct {
		name   string
		secret string
		user   string
		ttl    time.Duration
		want   stun.ErrorCode
	}{
		{"first secret", "new-secret", "carol", time.Hour, 0},
		{"rotated secret", "old-secret", "dave", time.Hour, 0},
		{"expired", "new-secret", "erin", -time.Minute, stun.CodeUnauthorized},
		{"unknown secret", "other-secret", "frank", time.Hour, stun.CodeUnauthorized},
		{"quota counts the user part", "old-secret", "carol", 2 * time.Hour, stun.CodeAllocQuotaReached},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			username, password := auth.RESTCredential(tc.secret, tc.user, tc.ttl, now)
			c := dialRaw(t, "udp", server, username, password)
			m := c.request(stun.MethodAllocate, requestedTransportUDP)
			if tc.want == 0 {
				mustSucceed(t, "Allocate", m)
				mustHaveIntegrity(t, c, m)
				return
			}
			mustCode(t, "Allocate", m, tc.want)
		})
	}
}

// TestNonceAcrossRestart: a nonce of a previous Ferry process is stale (438) and the client
// recovers with the nonce that comes with it.
func TestNonceAcrossRestart(t *testing.T) {
	s, port := newSetup(t, 4)
	config := s.toml()
	first := startFerry(t, config)
	c := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	c.allocate()
	first.stop()

	startFerry(t, config)
	m := c.signedRoundTrip(stun.MethodAllocate, testPass, requestedTransportUDP)
	mustCode(t, "Allocate with the old nonce", m, stun.CodeStaleNonce)
	c.learnNonce(m)
	mustSucceed(t, "Allocate with the new nonce", c.signedRoundTrip(stun.MethodAllocate, testPass, requestedTransportUDP))
}
