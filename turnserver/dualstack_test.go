package turnserver

import (
	"net"
	"testing"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/ferry-rtc/ferry/internal/turnwire"
)

// TestDualStack: an Allocate with ADDITIONAL-ADDRESS-FAMILY gets an IPv4 and an IPv6
// relayed address (RFC 8656 section 7.2), and data goes both ways through each: between the
// raw client and two pion/turn clients on the same server, one with an IPv4 relay and one
// with an IPv6 relay, each side with permissions for the other's relay.
func TestDualStack(t *testing.T) {
	s := newTestServer(t, 27160, 27179, withIPv6(t))
	c := newClient(t, s, "udp")
	addrs := relayed(t, c.want(t, 0, stun.MethodAllocate, udpTransport, additionalFamily(turnwire.FamilyIPv6)))
	if len(addrs) != 2 || !addrs[0].Addr().Is4() || !addrs[1].Addr().Is6() {
		t.Fatalf("relayed addresses %v, want an IPv4 and an IPv6 one", addrs)
	}
	peers := []net.PacketConn{pionRelay(t, s, turn.RequestedAddressFamilyIPv4), pionRelay(t, s, turn.RequestedAddressFamilyIPv6)}
	c.want(t, 0, stun.MethodCreatePermission, peerAt(peers[0].LocalAddr()), peerAt(peers[1].LocalAddr()))
	for i, p := range peers {
		mine, theirs := addrs[i], addrPortOf(p.LocalAddr())
		if _, err := p.WriteTo([]byte("to the dual client"), net.UDPAddrFromAddrPort(mine)); err != nil {
			t.Fatal(err)
		}
		c.expectData(t, theirs, "to the dual client")
		c.write(t, sendIndication(t, theirs, "from the dual client"))
		expectFrom(t, p, "from the dual client", mine)
	}
}

// TestDualStackWithoutIPv6Relays: with no IPv6 relays, ADDITIONAL-ADDRESS-FAMILY still gets
// the IPv4 relay, and ADDRESS-ERROR-CODE 440 for IPv6.
func TestDualStackWithoutIPv6Relays(t *testing.T) {
	s := newTestServer(t, 27180, 27184)
	resp := newClient(t, s, "udp").want(t, 0, stun.MethodAllocate, udpTransport, additionalFamily(turnwire.FamilyIPv6))
	if addrs := relayed(t, resp); len(addrs) != 1 || !addrs[0].Addr().Is4() {
		t.Fatalf("relayed addresses %v, want one IPv4 address", addrs)
	}
	wantAddressError(t, resp, stun.CodeAddrFamilyNotSupported)
}

// TestDualStackIPv6OutOfPorts: when the IPv6 relay gets no port, the IPv4 relay stands and
// ADDRESS-ERROR-CODE says 508 Insufficient Capacity: 440 is for a family the server does
// not support (RFC 8656 sections 7.2 and 18.12).
func TestDualStackIPv6OutOfPorts(t *testing.T) {
	s := newTestServer(t, 27185, 27185, withIPv6(t)) // one port: the IPv4 relay takes it
	resp := newClient(t, s, "udp").want(t, 0, stun.MethodAllocate, udpTransport, additionalFamily(turnwire.FamilyIPv6))
	if addrs := relayed(t, resp); len(addrs) != 1 || !addrs[0].Addr().Is4() {
		t.Fatalf("relayed addresses %v, want one IPv4 address", addrs)
	}
	wantAddressError(t, resp, stun.CodeInsufficientCapacity)
}

// TestDualStackEvenPort: EVEN-PORT with R and ADDITIONAL-ADDRESS-FAMILY is 400 (RFC 8656
// section 7.2, step 8); EVEN-PORT without R and ADDITIONAL-ADDRESS-FAMILY on a server without
// IPv6 relays gets an even IPv4 port and ADDRESS-ERROR-CODE 440, like any dual Allocate.
func TestDualStackEvenPort(t *testing.T) {
	s := newTestServer(t, 27187, 27196)
	t.Run("R", func(t *testing.T) {
		newClient(t, s, "udp").want(t, stun.CodeBadRequest, stun.MethodAllocate, udpTransport, evenPort(true), additionalFamily(turnwire.FamilyIPv6))
	})
	t.Run("no IPv6 relays", func(t *testing.T) {
		resp := newClient(t, s, "udp").want(t, 0, stun.MethodAllocate, udpTransport, evenPort(false), additionalFamily(turnwire.FamilyIPv6))
		if addrs := relayed(t, resp); len(addrs) != 1 || !addrs[0].Addr().Is4() || addrs[0].Port()%2 != 0 {
			t.Fatalf("relayed addresses %v, want one even IPv4 port", addrs)
		}
		wantAddressError(t, resp, stun.CodeAddrFamilyNotSupported)
	})
}

// pionRelay allocates a relay of family with a pion/turn client over UDP, as alice.
func pionRelay(t *testing.T, s *Server, family turn.RequestedAddressFamily) net.PacketConn {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	server := s.Addrs()[0].String()
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: alice, Password: alicePass, Realm: testRealm,
		RequestedAddressFamily: family, LoggerFactory: lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("pion Allocate of family %v: %v", family, err)
	}
	t.Cleanup(func() { _ = relayConn.Close(); client.Close(); _ = conn.Close() })
	return relayConn
}

// wantAddressError checks the ADDRESS-ERROR-CODE of a dual Allocate's answer: family IPv6
// and code.
func wantAddressError(t *testing.T, resp *stun.Message, code stun.ErrorCode) {
	t.Helper()
	v, err := resp.Get(turnwire.AttrAddressErrorCode)
	if err != nil || len(v) < 4 {
		t.Fatalf("no ADDRESS-ERROR-CODE in %v", resp)
	}
	if got := stun.ErrorCode(int(v[2]&7)*100 + int(v[3])); v[0] != turnwire.FamilyIPv6 || got != code {
		t.Fatalf("ADDRESS-ERROR-CODE for family %d with code %d, want family %d with %d", v[0], got, turnwire.FamilyIPv6, code)
	}
}
