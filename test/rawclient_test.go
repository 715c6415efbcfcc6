package test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// rawClient is a minimal TURN client that shows every response as it is, for the tests that
// assert error codes and attributes. pion's client hides them (it retries 401 and 438).
type rawClient struct {
	t      *testing.T
	conn   net.Conn
	stream bool // TCP/TLS framing

	user, pass, realm string
	nonce             stun.Nonce

	responses chan *stun.Message
	data      chan dataMsg
}

// dataMsg is relayed data the server delivered: a Data indication or ChannelData.
type dataMsg struct {
	channel uint16 // 0 for a Data indication
	peer    netip.AddrPort
	payload []byte
}

func dialRaw(t *testing.T, network, addr, user, pass string) *rawClient {
	t.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	c := &rawClient{
		t: t, conn: conn, stream: network != "udp" && network != "udp4" && network != "udp6",
		user: user, pass: pass,
		responses: make(chan *stun.Message, 16), data: make(chan dataMsg, 256),
	}
	t.Cleanup(func() { _ = conn.Close() })
	go c.readLoop()
	return c
}

func (c *rawClient) readLoop() {
	buf := make([]byte, 70000)
	for {
		b, err := c.readOne(buf)
		if err != nil {
			close(c.responses)
			return
		}
		c.dispatch(append([]byte(nil), b...))
	}
}

func (c *rawClient) readOne(buf []byte) ([]byte, error) {
	if !c.stream {
		n, err := c.conn.Read(buf)
		return buf[:n], err
	}
	if _, err := io.ReadFull(c.conn, buf[:4]); err != nil {
		return nil, err
	}
	size := int(binary.BigEndian.Uint16(buf[2:4]))
	if buf[0]>>6 == 0 {
		size += 20
	} else {
		size = 4 + (size+3)&^3
	}
	_, err := io.ReadFull(c.conn, buf[4:size])
	return buf[:size], err
}

func (c *rawClient) dispatch(b []byte) {
	if !stun.IsMessage(b) {
		if len(b) >= 4 {
			n := binary.BigEndian.Uint16(b[2:4])
			c.data <- dataMsg{channel: binary.BigEndian.Uint16(b), payload: b[4 : 4+n]}
		}
		return
	}
	m := &stun.Message{Raw: b}
	if m.Decode() != nil {
		return
	}
	if m.Type == stun.NewType(stun.MethodData, stun.ClassIndication) {
		var peer stun.XORMappedAddress
		var payload stun.RawAttribute
		_ = peer.GetFromAs(m, stun.AttrXORPeerAddress)
		if v, err := m.Get(stun.AttrData); err == nil {
			payload.Value = v
		}
		ip, _ := netip.AddrFromSlice(peer.IP)
		c.data <- dataMsg{peer: netip.AddrPortFrom(ip.Unmap(), uint16(peer.Port)), payload: payload.Value}
		return
	}
	c.responses <- m
}

// send writes one message or ChannelData frame.
func (c *rawClient) send(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// roundTrip sends a request built from setters and returns the response to it.
func (c *rawClient) roundTrip(setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		c.t.Fatalf("build request: %v", err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		c.send(req.Raw)
		deadline := time.After(time.Second)
		for {
			select {
			case m, ok := <-c.responses:
				if !ok {
					c.t.Fatalf("connection closed waiting for the response to %s", req.Type)
				}
				if m.TransactionID == req.TransactionID {
					return m
				}
				continue
			case <-deadline:
			}
			break
		}
		if c.stream {
			break // no retransmissions over TCP
		}
	}
	c.t.Fatalf("no response to %s", req.Type)
	return nil
}

// request sends an authenticated request of method. The first call learns realm and nonce
// from a 401; a 438 is retried once with the new nonce, like a real client does.
func (c *rawClient) request(method stun.Method, setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	if c.nonce == nil {
		m := c.roundTrip(append([]stun.Setter{stun.NewType(method, stun.ClassRequest)}, setters...)...)
		if code := errorCode(m); code != stun.CodeUnauthorized {
			c.t.Fatalf("unauthenticated %s: got %v, want 401", method, code)
		}
		c.learnNonce(m)
	}
	m := c.signedRoundTrip(method, c.pass, setters...)
	if errorCode(m) == stun.CodeStaleNonce {
		c.learnNonce(m)
		m = c.signedRoundTrip(method, c.pass, setters...)
	}
	return m
}

func (c *rawClient) learnNonce(m *stun.Message) {
	c.t.Helper()
	var realm stun.Realm
	if err := c.nonce.GetFrom(m); err != nil {
		c.t.Fatalf("%s has no NONCE", m)
	}
	if err := realm.GetFrom(m); err != nil {
		c.t.Fatalf("%s has no REALM", m)
	}
	c.realm = realm.String()
}

// signedRoundTrip sends method with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY made from
// password, which tests may set wrong on purpose.
func (c *rawClient) signedRoundTrip(method stun.Method, password string, setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	all := append([]stun.Setter{stun.NewType(method, stun.ClassRequest)}, setters...)
	all = append(all, stun.NewUsername(c.user), stun.NewRealm(c.realm), c.nonce,
		stun.NewLongTermIntegrity(c.user, c.realm, password), stun.Fingerprint)
	return c.roundTrip(all...)
}

// integrity is the key the client signs with, to check the server's MESSAGE-INTEGRITY.
func (c *rawClient) integrity() stun.MessageIntegrity {
	return stun.NewLongTermIntegrity(c.user, c.realm, c.pass)
}

// allocate makes a UDP allocation and returns its relayed address.
func (c *rawClient) allocate(extra ...stun.Setter) netip.AddrPort {
	c.t.Helper()
	m := c.request(stun.MethodAllocate, append([]stun.Setter{requestedTransportUDP}, extra...)...)
	if m.Type.Class != stun.ClassSuccessResponse {
		c.t.Fatalf("Allocate: %v", errorCode(m))
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
		c.t.Fatalf("Allocate response without XOR-RELAYED-ADDRESS: %v", err)
	}
	ip, _ := netip.AddrFromSlice(relayed.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(relayed.Port))
}

// requestedTransportUDP is REQUESTED-TRANSPORT: UDP (protocol 17).
var requestedTransportUDP = testkit.Attr(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})

// requestedFamily is REQUESTED-ADDRESS-FAMILY (1 = IPv4, 2 = IPv6).
func requestedFamily(family byte) stun.Setter {
	return testkit.Attr(stun.AttrRequestedAddressFamily, []byte{family, 0, 0, 0})
}

// lifetime is the LIFETIME attribute.
func lifetime(d time.Duration) stun.Setter {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(d/time.Second))
	return testkit.Attr(stun.AttrLifetime, v)
}

// channelNumber is CHANNEL-NUMBER.
func channelNumber(n uint16) stun.Setter {
	return testkit.Attr(stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0})
}

// sendIndication relays payload to peer with a Send indication.
func (c *rawClient) sendIndication(peer netip.AddrPort, payload []byte) {
	c.t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		testkit.PeerAddr(peer), testkit.Attr(stun.AttrData, payload))
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(m.Raw)
}

// channelData relays payload on a bound channel.
func (c *rawClient) channelData(channel uint16, payload []byte) {
	size := 4 + len(payload)
	if c.stream {
		size = 4 + (len(payload)+3)&^3
	}
	b := make([]byte, size)
	binary.BigEndian.PutUint16(b, channel)
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
	copy(b[4:], payload)
	c.send(b)
}

// nextData waits for relayed data.
func (c *rawClient) nextData(timeout time.Duration) (dataMsg, error) {
	select {
	case d := <-c.data:
		return d, nil
	case <-time.After(timeout):
		return dataMsg{}, errors.New("no relayed data arrived")
	}
}

// errorCode returns the ERROR-CODE of m, or 0 for a success response.
func errorCode(m *stun.Message) stun.ErrorCode {
	var ec stun.ErrorCodeAttribute
	if m.Type.Class != stun.ClassErrorResponse || ec.GetFrom(m) != nil {
		return 0
	}
	return ec.Code
}

// mustCode fails unless m is an error response with code.
func mustCode(t *testing.T, what string, m *stun.Message, code stun.ErrorCode) {
	t.Helper()
	if got := errorCode(m); got != code {
		t.Fatalf("%s: got %s (code %d), want %d", what, m.Type, got, code)
	}
}

// mustSucceed fails unless m is a success response.
func mustSucceed(t *testing.T, what string, m *stun.Message) {
	t.Helper()
	if m.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("%s: got %s (code %d), want success", what, m.Type, errorCode(m))
	}
}

// udpPeer is a UDP echo peer on ip: every datagram comes back to its sender.
func udpPeer(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func addrString(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
