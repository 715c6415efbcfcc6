package test

import (
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// TestSTUNMessageRules: what RFC 8489 and RFC 6062 say of messages Ferry cannot take. A wrong
// FINGERPRINT is discarded silently (section 7.3); an unknown comprehension-required
// attribute gets 420 with UNKNOWN-ATTRIBUTES (section 6.3.1.1), after the credentials are
// checked; an unknown comprehension-optional one is ignored; a TCP allocation asked for
// over UDP is 400 (RFC 6062 section 5.1).
func TestSTUNMessageRules(t *testing.T) {
	s, port := newSetup(t, 4)
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)

	conn, err := net.Dial("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bad, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	bad.Raw[len(bad.Raw)-1] ^= 0xff
	good, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{bad.Raw, good.Raw} {
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no answer to the good Binding: %v", err)
	}
	resp := &stun.Message{Raw: buf[:n]}
	if err := resp.Decode(); err != nil || resp.TransactionID != good.TransactionID {
		t.Fatalf("first answer is not to the good Binding (bad FINGERPRINT answered?): %v", resp)
	}
	if got := scrape(t, s.metricsAddr)[`ferry_stun_dropped_total{reason="fingerprint"}`]; got != 1 {
		t.Fatalf("fingerprint drops = %v, want 1", got)
	}

	c := dialRaw(t, "udp", server, testUser, testPass)
	unknown := testkit.Attr(0x7777, []byte{1, 2, 3, 4})
	m := c.roundTrip(stun.BindingRequest, unknown)
	mustCode(t, "Binding with 0x7777", m, stun.CodeUnknownAttribute)
	mustListUnknown(t, m, 0x7777)
	mustSucceed(t, "Binding with 0x8777 (comprehension-optional)", c.roundTrip(stun.BindingRequest, testkit.Attr(0x8777, []byte{1})))

	mustCode(t, "Allocate with REQUESTED-TRANSPORT TCP over UDP",
		c.request(stun.MethodAllocate, requestedTransportTCP), stun.CodeBadRequest)
	m = c.request(stun.MethodAllocate, requestedTransportUDP, unknown) // with the nonce the first one learnt
	mustCode(t, "authenticated Allocate with 0x7777", m, stun.CodeUnknownAttribute)
	mustListUnknown(t, m, 0x7777)
	mustHaveIntegrity(t, c, m)
	c.allocate() // nothing was allocated by the refused requests
}

func mustListUnknown(t *testing.T, m *stun.Message, want stun.AttrType) {
	t.Helper()
	var unknown stun.UnknownAttributes
	if err := unknown.GetFrom(m); err != nil || len(unknown) != 1 || unknown[0] != want {
		t.Fatalf("UNKNOWN-ATTRIBUTES = %v (%v), want [%v]", unknown, err, want)
	}
}
