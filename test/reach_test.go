package test

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// These tests do what the attacker's review did to reach services on Ferry's own host
// through its relays: every peer on the relay IP must be a socket Ferry holds for the same
// protocol.

// requestedTransportTCP is REQUESTED-TRANSPORT: TCP (protocol 6, RFC 6062).
var requestedTransportTCP = testkit.Attr(stun.AttrRequestedTransport, []byte{6, 0, 0, 0})

// allocateTCP makes an RFC 6062 TCP allocation over c (a TCP client) and returns its relayed
// address.
func (c *rawClient) allocateTCP() netip.AddrPort {
	c.t.Helper()
	m := c.request(stun.MethodAllocate, requestedTransportTCP)
	mustSucceed(c.t, "TCP Allocate", m)
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
		c.t.Fatalf("TCP Allocate response without XOR-RELAYED-ADDRESS: %v", err)
	}
	ip, _ := netip.AddrFromSlice(relayed.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(relayed.Port))
}

// tcpService listens on TCP at addr and greets whoever connects, as an SSH or database
// server on the relay host would. It fails the test if the port is taken.
func tcpService(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp4", addr.String())
	if err != nil {
		t.Fatalf("TCP service on %v: %v", addr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte("SSH-2.0-secret-banner\r\n"))
			_ = conn.Close()
		}
	}()
}

var hostCandidatePort = regexp.MustCompile(`a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host`)

// sfuICEPort publishes to the SFU and reads the port of its ICE socket from the answer.
func sfuICEPort(t *testing.T, s *setup) uint16 {
	t.Helper()
	p := newPublisher(t, peerOptions{}, "")
	if _, status := signal(t, p.pc, "http://"+s.sfuAddr+"/whip/reach", accessToken(t, "reach", true, false, time.Hour)); status != 201 {
		t.Fatalf("WHIP: %d", status)
	}
	m := hostCandidatePort.FindStringSubmatch(p.pc.RemoteDescription().SDP)
	if m == nil {
		t.Fatalf("no host candidate on 127.0.0.1 in the answer:\n%s", p.pc.RemoteDescription().SDP)
	}
	port, _ := strconv.Atoi(m[1])
	return uint16(port)
}

// TestOwnAddressByProtocol: a TCP service on the port number of the SFU's ICE socket or of a
// UDP relay, and a UDP service on the port of a TCP relay, are not Ferry's: a Connect to the
// first two is 403 and a ChannelBind or Send indication to the third is refused, while a
// TCP relay stays reachable by Connect and a UDP relay by ChannelBind (coturn#584).
func TestOwnAddressByProtocol(t *testing.T) {
	s, port := sfuSetup(t) // peers on 127.0.0.1 are denied but for Ferry's own sockets
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)
	loop := netip.MustParseAddr("127.0.0.1")

	icePort := sfuICEPort(t, s)
	tcpService(t, netip.AddrPortFrom(loop, icePort))
	udpClient := dialRaw(t, "udp", server, testUser, testPass)
	udpRelay := udpClient.allocate()
	tcpService(t, udpRelay)

	connector := dialRaw(t, "tcp", server, testUser, testPass)
	tcpRelay := connector.allocateTCP()
	for what, peer := range map[string]netip.AddrPort{
		"the SFU's ICE port (held for UDP only)": netip.AddrPortFrom(loop, icePort),
		"a UDP relay's port":                     udpRelay,
	} {
		m := connector.request(stun.MethodConnect, testkit.PeerAddr(peer))
		mustCode(t, "Connect to a TCP service on "+what, m, stun.CodeForbidden)
	}
	other := dialRaw(t, "tcp", server, testUser, testPass)
	m := connector.request(stun.MethodConnect, testkit.PeerAddr(other.allocateTCP()))
	mustSucceed(t, "Connect to another TCP relay", m)

	// A UDP service on the TCP relay's port number.
	service, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(tcpRelay))
	if err != nil {
		t.Fatalf("UDP service on %v: %v", tcpRelay, err)
	}
	defer service.Close()
	mustSucceed(t, "CreatePermission for the own IP", udpClient.request(stun.MethodCreatePermission, testkit.PeerAddr(tcpRelay)))
	mustCode(t, "ChannelBind to a UDP service on a TCP relay's port",
		udpClient.request(stun.MethodChannelBind, channelNumber(0x4001), testkit.PeerAddr(tcpRelay)), stun.CodeForbidden)
	udpClient.sendIndication(tcpRelay, []byte("to the UDP service"))

	// The control: a Send indication to another UDP relay arrives, after the one above.
	receiver := dialRaw(t, "udp", server, testUser, testPass)
	receiverRelay := receiver.allocate()
	mustSucceed(t, "receiver's CreatePermission", receiver.request(stun.MethodCreatePermission, testkit.PeerAddr(udpRelay)))
	mustSucceed(t, "ChannelBind to another UDP relay",
		udpClient.request(stun.MethodChannelBind, channelNumber(0x4002), testkit.PeerAddr(receiverRelay)))
	udpClient.sendIndication(receiverRelay, []byte("to the other relay"))
	expectAtClient(t, receiver, dataMsg{peer: udpRelay, payload: []byte("to the other relay")})
	_ = service.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 64)
	if n, from, err := service.ReadFrom(buf); err == nil {
		t.Fatalf("the UDP service on a TCP relay's port got %q from %v", buf[:n], from)
	}
}

// sfuCredential publishes to the SFU and returns the TURN credential of the answer's Link
// headers: a user limited to the SFU's address.
func sfuCredential(t *testing.T, s *setup) (user, pass string) {
	t.Helper()
	p := newPublisher(t, peerOptions{}, "")
	sess, status := signal(t, p.pc, "http://"+s.sfuAddr+"/whip/cred", accessToken(t, "cred", true, false, time.Hour))
	if status != 201 {
		t.Fatalf("WHIP: %d", status)
	}
	for _, srv := range iceServersFromLinks(t, sess.links) {
		if srv.Username != "" {
			return srv.Username, srv.Credential.(string)
		}
	}
	t.Fatalf("no TURN credential in the Link headers %q", sess.links)
	return "", ""
}

// malformedPeerAddresses are XOR-PEER-ADDRESS values whose length does not fit their
// family, or whose family is unknown. A lenient decoder reads the first ones as a.b.c.0.
var malformedPeerAddresses = map[string][]byte{
	"IPv4 with 1 address byte":  {0, 1, 0x21, 0x13, 0x5e},
	"IPv4 with 2 address bytes": {0, 1, 0x21, 0x13, 0x5e, 0x12},
	"IPv4 with 3 address bytes": {0, 1, 0x21, 0x13, 0x5e, 0x12, 0xa4},
	"IPv4 with 5 address bytes": {0, 1, 0x21, 0x13, 0x5e, 0x12, 0xa4, 0x43, 0x01},
	"IPv6 with 15 address bytes": append([]byte{0, 2, 0x21, 0x13},
		0x5e, 0x12, 0xa4, 0x43, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11),
	"family 3": {0, 3, 0x21, 0x13, 0x5e, 0x12, 0xa4, 0x43},
}

// TestMalformedPeerAddress: a truncated or unknown-family XOR-PEER-ADDRESS is 400 in every
// request that names peers, before any check: read leniently it names a peer the policy
// and the SFU credential's one-peer limit never saw. In a Send indication it is dropped
// and counted.
func TestMalformedPeerAddress(t *testing.T) {
	s, port := sfuSetup(t)
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)
	user, pass := sfuCredential(t, s)

	limited := dialRaw(t, "udp", server, user, pass)
	limited.allocate()
	plain := dialRaw(t, "udp", server, testUser, testPass)
	plain.allocate()
	connector := dialRaw(t, "tcp", server, user, pass)
	connector.allocateTCP()
	for name, value := range malformedPeerAddresses {
		peer := testkit.Attr(stun.AttrXORPeerAddress, value)
		for _, c := range []*rawClient{limited, plain} {
			mustCode(t, c.user+": ChannelBind with "+name,
				c.request(stun.MethodChannelBind, channelNumber(0x4001), peer), stun.CodeBadRequest)
			mustCode(t, c.user+": CreatePermission with "+name,
				c.request(stun.MethodCreatePermission, peer), stun.CodeBadRequest)
		}
		mustCode(t, "Connect with "+name, connector.request(stun.MethodConnect, peer), stun.CodeBadRequest)
	}
	// One malformed address among good ones spoils the request.
	good := testkit.PeerAddr(netip.MustParseAddrPort("198.51.100.7:5000"))
	mustCode(t, "CreatePermission with a good and a malformed address",
		plain.request(stun.MethodCreatePermission, good, testkit.Attr(stun.AttrXORPeerAddress, malformedPeerAddresses["family 3"])),
		stun.CodeBadRequest)

	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		testkit.Attr(stun.AttrXORPeerAddress, malformedPeerAddresses["IPv4 with 3 address bytes"]),
		testkit.Attr(stun.AttrData, []byte("to a.b.c.0")))
	if err != nil {
		t.Fatal(err)
	}
	plain.send(m.Raw)
	waitFor(t, "the malformed Send indication to be counted", func() bool {
		return scrape(t, s.metricsAddr)[`ferry_stun_dropped_total{reason="malformed"}`] == 1
	})
}

// TestSFUCredentialSend: an SFU credential relays to the SFU's ICE address only, by Send
// indication as by ChannelBind: its permission for the relay IP does not let it reach
// another relay (or any other port) there.
func TestSFUCredentialSend(t *testing.T) {
	s, port := sfuSetup(t)
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)
	user, pass := sfuCredential(t, s)

	other := dialRaw(t, "udp", server, testUser, testPass)
	otherRelay := other.allocate()
	mustSucceed(t, "CreatePermission for the own IP", other.request(stun.MethodCreatePermission,
		testkit.PeerAddr(netip.MustParseAddrPort("127.0.0.1:9"))))

	limited := dialRaw(t, "udp", server, user, pass)
	limited.allocate()
	mustSucceed(t, "CreatePermission for the SFU's IP", limited.request(stun.MethodCreatePermission,
		testkit.PeerAddr(otherRelay)))
	mustCode(t, "ChannelBind to another relay", limited.request(stun.MethodChannelBind, channelNumber(0x4001),
		testkit.PeerAddr(otherRelay)), stun.CodeForbidden)
	limited.sendIndication(otherRelay, []byte("past the one-peer limit"))
	waitFor(t, "the Send indication to be denied", func() bool {
		return scrape(t, s.metricsAddr)[`ferry_peer_denied_total{op="send"}`] == 1
	})
	if d, err := other.nextData(100 * time.Millisecond); err == nil {
		t.Fatalf("another relay got %q from an SFU credential", d.payload)
	}
}

// TestConnectionLimits: RFC 6062 peer connections are capped per allocation and in all
// (the attacker's review bound 504 connections of one allocation in 0.3 s and used up every
// descriptor). One Connect past a limit is 508, one peer connecting past it is refused, both
// counted; the connections of an allocation that ends give their places back.
func TestConnectionLimits(t *testing.T) {
	s, port := newSetup(t, 10)
	s.allowPeers = []string{"127.0.0.0/8"}
	s.connsPerAlloc, s.tcpConnsTotal = 3, 5
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)
	// RFC 6062 allows one connection per peer address and allocation (446 for a second).
	peers := make([]netip.AddrPort, 5)
	for i := range peers {
		peers[i] = netip.MustParseAddrPort(tcpEchoPeer(t))
	}
	connect := func(c *rawClient, peer netip.AddrPort) *stun.Message {
		return c.request(stun.MethodConnect, testkit.PeerAddr(peer))
	}

	first := dialRaw(t, "tcp", server, testUser, testPass)
	firstRelay := first.allocateTCP()
	for i := range 3 {
		mustSucceed(t, fmt.Sprintf("Connect %d", i+1), connect(first, peers[i]))
	}
	mustCode(t, "Connect past connections_per_allocation", connect(first, peers[3]), stun.CodeInsufficientCapacity)
	mustSucceed(t, "CreatePermission", first.request(stun.MethodCreatePermission, testkit.PeerAddr(peers[0])))
	in, err := net.Dial("tcp4", firstRelay.String())
	if err == nil {
		_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := in.Read(make([]byte, 1)); err == nil {
			t.Fatalf("a peer connection past the limit was kept (read %d bytes)", n)
		}
		_ = in.Close()
	}
	second := dialRaw(t, "tcp", server, testUser, testPass)
	second.allocateTCP()
	for i := range 2 {
		mustSucceed(t, fmt.Sprintf("second allocation's Connect %d", i+1), connect(second, peers[i]))
	}
	mustCode(t, "Connect past tcp_connections_total", connect(second, peers[2]), stun.CodeInsufficientCapacity)
	m := scrape(t, s.metricsAddr)
	if m["ferry_tcp_peer_connections"] != 5 || m[`ferry_tcp_peer_connections_refused_total{limit="allocation"}`] != 2 ||
		m[`ferry_tcp_peer_connections_refused_total{limit="total"}`] != 1 {
		t.Fatalf("metrics: %v live, refused %v per allocation, %v in all; want 5, 2, 1", m["ferry_tcp_peer_connections"],
			m[`ferry_tcp_peer_connections_refused_total{limit="allocation"}`], m[`ferry_tcp_peer_connections_refused_total{limit="total"}`])
	}

	mustSucceed(t, "Refresh 0", first.request(stun.MethodRefresh, lifetime(0)))
	waitFor(t, "the ended allocation's connections to be given back", func() bool {
		return scrape(t, s.metricsAddr)["ferry_tcp_peer_connections"] == 2
	})
	mustSucceed(t, "Connect after places came back", connect(second, peers[2]))
}
