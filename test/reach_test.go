package test

import (
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
