package turnserver

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
	"github.com/ferry-rtc/ferry/internal/turnwire"
)

// someToken is a RESERVATION-TOKEN no EVEN-PORT handed out.
var someToken = testkit.Attr(stun.AttrReservationToken, []byte("tokentok"))

// TestAllocateErrors: every malformed or unsatisfiable Allocate gets its error code (RFC 8656
// section 7.2, RFC 6062 section 5.1), signed, and leaves no allocation behind.
func TestAllocateErrors(t *testing.T) {
	s := newTestServer(t, 27000, 27009)
	for _, tc := range []struct {
		name    string
		network string
		attrs   []stun.Setter
		code    stun.ErrorCode
	}{
		{"no REQUESTED-TRANSPORT", "udp", nil, stun.CodeBadRequest},
		{"short REQUESTED-TRANSPORT", "udp", []stun.Setter{testkit.Attr(stun.AttrRequestedTransport, []byte{17})}, stun.CodeBadRequest},
		{"TCP relay over UDP", "udp", []stun.Setter{tcpTransport}, stun.CodeBadRequest},
		{"both address family attributes", "udp", []stun.Setter{udpTransport, requestedFamily(turnwire.FamilyIPv4), additionalFamily(turnwire.FamilyIPv6)}, stun.CodeBadRequest},
		{"ADDITIONAL-ADDRESS-FAMILY IPv4", "udp", []stun.Setter{udpTransport, additionalFamily(turnwire.FamilyIPv4)}, stun.CodeBadRequest},
		{"token with EVEN-PORT", "udp", []stun.Setter{udpTransport, someToken, evenPort(false)}, stun.CodeBadRequest},
		{"token with REQUESTED-ADDRESS-FAMILY", "udp", []stun.Setter{udpTransport, someToken, requestedFamily(turnwire.FamilyIPv4)}, stun.CodeBadRequest},
		{"token with ADDITIONAL-ADDRESS-FAMILY", "udp", []stun.Setter{udpTransport, someToken, additionalFamily(turnwire.FamilyIPv6)}, stun.CodeBadRequest},
		{"TCP relay with EVEN-PORT", "tcp", []stun.Setter{tcpTransport, evenPort(false)}, stun.CodeBadRequest},
		{"TCP relay with DONT-FRAGMENT", "tcp", []stun.Setter{tcpTransport, testkit.Attr(stun.AttrDontFragment, nil)}, stun.CodeBadRequest},
		{"TCP relay with ADDITIONAL-ADDRESS-FAMILY", "tcp", []stun.Setter{tcpTransport, additionalFamily(turnwire.FamilyIPv6)}, stun.CodeBadRequest},
		{"transport 99", "udp", []stun.Setter{transport(99)}, stun.CodeUnsupportedTransProto},
		{"IPv6 without IPv6 relays", "udp", []stun.Setter{udpTransport, requestedFamily(turnwire.FamilyIPv6)}, stun.CodeAddrFamilyNotSupported},
		{"TCP relay of IPv6 without IPv6 relays", "tcp", []stun.Setter{tcpTransport, requestedFamily(turnwire.FamilyIPv6)}, stun.CodeAddrFamilyNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newClient(t, s, tc.network).want(t, tc.code, stun.MethodAllocate, tc.attrs...)
		})
	}
	if n := s.Allocations(); n != 0 {
		t.Fatalf("%d allocations after refused Allocates", n)
	}
	if n := s.cfg.Pool.InUse(); n != 0 {
		t.Fatalf("%d pool ports in use after refused Allocates", n)
	}
}

// TestAllocateUnknownAttribute: an unknown comprehension-required attribute is 420 with
// UNKNOWN-ATTRIBUTES listing it once (RFC 8489 section 6.3.1); an unknown
// comprehension-optional one is ignored.
func TestAllocateUnknownAttribute(t *testing.T) {
	s := newTestServer(t, 27010, 27014)
	unknown := testkit.Attr(0x7ffe, []byte{1, 2, 3, 4})
	resp := newClient(t, s, "udp").want(t, stun.CodeUnknownAttribute, stun.MethodAllocate, udpTransport, unknown, unknown)
	var listed stun.UnknownAttributes
	if err := listed.GetFrom(resp); err != nil || len(listed) != 1 || listed[0] != 0x7ffe {
		t.Fatalf("UNKNOWN-ATTRIBUTES %v (%v), want [0x7ffe]", listed, err)
	}
	newClient(t, s, "udp").allocate(t, testkit.Attr(0xfffe, []byte{1, 2, 3, 4}))
}

// TestAllocateRetransmission: the same Allocate again (same transaction ID) gets the very
// same answer and no second allocation; another Allocate on the 5-tuple is 437.
func TestAllocateRetransmission(t *testing.T) {
	s := newTestServer(t, 27015, 27019)
	c := newClient(t, s, "udp")
	req := c.signed(t, stun.MethodAllocate, udpTransport)
	first := c.exchange(t, req)
	wantCode(t, first, 0)
	again := c.exchange(t, req)
	if !bytes.Equal(first.Raw, again.Raw) {
		t.Fatalf("the retransmission got\n% x\nnot the first answer\n% x", again.Raw, first.Raw)
	}
	if n := s.Allocations(); n != 1 {
		t.Fatalf("%d allocations after a retransmitted Allocate", n)
	}
	c.want(t, stun.CodeAllocMismatch, stun.MethodAllocate, udpTransport)
}

// TestAllocateQuota: past the per-user and the total quota an Allocate is 486; deleting an
// allocation gives its place back to both.
func TestAllocateQuota(t *testing.T) {
	s := newTestServer(t, 27020, 27029, withLimits(Limits{AllocationsPerUser: 1, AllocationsTotal: 2}))
	a1 := newClient(t, s, "udp")
	a1.allocate(t)
	a2 := newClient(t, s, "udp")
	a2.want(t, stun.CodeAllocQuotaReached, stun.MethodAllocate, udpTransport) // alice's one
	bob := newClient(t, s, "udp").as(restUser("bob"))
	bob.allocate(t)
	carol := newClient(t, s, "udp").as(restUser("carol"))
	carol.want(t, stun.CodeAllocQuotaReached, stun.MethodAllocate, udpTransport) // two in all

	a1.want(t, 0, stun.MethodRefresh, lifetime(0))
	a2.allocate(t)
	carol.want(t, stun.CodeAllocQuotaReached, stun.MethodAllocate, udpTransport)
	bob.want(t, 0, stun.MethodRefresh, lifetime(0))
	carol.allocate(t)
}

// TestAllocateNoPort: with every pool port in use, and with a RESERVATION-TOKEN the server
// does not know, an Allocate is 508; the quota place it took is given back.
func TestAllocateNoPort(t *testing.T) {
	s := newTestServer(t, 27030, 27030, withLimits(Limits{AllocationsPerUser: 1}))
	first := newClient(t, s, "udp")
	first.allocate(t)
	second := newClient(t, s, "udp").as(restUser("bob"))
	second.want(t, stun.CodeInsufficientCapacity, stun.MethodAllocate, udpTransport)
	second.want(t, stun.CodeInsufficientCapacity, stun.MethodAllocate, udpTransport, someToken)
	first.want(t, 0, stun.MethodRefresh, lifetime(0))
	second.allocate(t) // bob's quota place was not kept by the 508s
}

// TestAllocateDraining: while draining, an Allocate is 508, or 300 with ALTERNATE-SERVER
// once an alternate is set, signed or not as the request was; existing allocations go on.
func TestAllocateDraining(t *testing.T) {
	s := newTestServer(t, 27031, 27034)
	old := newClient(t, s, "udp")
	old.allocate(t)
	unsigned := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	c := newClient(t, s, "udp")

	s.Drain(netip.AddrPort{})
	c.want(t, stun.CodeInsufficientCapacity, stun.MethodAllocate, udpTransport)
	wantCode(t, c.roundTrip(t, unsigned, udpTransport), stun.CodeInsufficientCapacity)

	alternate := netip.MustParseAddrPort("192.0.2.7:3478")
	s.Drain(alternate)
	for _, resp := range []*stun.Message{
		c.want(t, stun.CodeTryAlternate, stun.MethodAllocate, udpTransport),
		c.roundTrip(t, unsigned, udpTransport),
	} {
		wantCode(t, resp, stun.CodeTryAlternate)
		var alt stun.AlternateServer
		if err := alt.GetFrom(resp); err != nil || stun.MappedAddress(alt).String() != alternate.String() {
			t.Fatalf("ALTERNATE-SERVER %v (%v), want %v", alt, err, alternate)
		}
	}
	old.want(t, 0, stun.MethodRefresh)
}

// TestAllocateEvenPort: EVEN-PORT gets an even port; with R it also reserves the next one,
// held by a socket, whose RESERVATION-TOKEN a later Allocate claims, once.
func TestAllocateEvenPort(t *testing.T) {
	// The pool starts on an odd port, the first any Allocate would get.
	s := newTestServer(t, 27035, 27044)
	if even := newClient(t, s, "udp").allocate(t, evenPort(false)); even.Port()%2 != 0 {
		t.Fatalf("EVEN-PORT got port %d", even.Port())
	}
	if n := s.cfg.Pool.InUse(); n != 1 {
		t.Fatalf("%d pool ports in use after one EVEN-PORT allocation, want 1", n)
	}
	resp := newClient(t, s, "udp").want(t, 0, stun.MethodAllocate, udpTransport, evenPort(true))
	first := relayed(t, resp)[0]
	token, err := resp.Get(stun.AttrReservationToken)
	if first.Port()%2 != 0 || err != nil || len(token) != 8 {
		t.Fatalf("EVEN-PORT with R got port %d and RESERVATION-TOKEN % x (%v)", first.Port(), token, err)
	}
	if n := s.cfg.Pool.InUse(); n != 3 {
		t.Fatalf("%d pool ports in use after an EVEN-PORT allocation with R, want 3 (two relays, one reserved)", n)
	}
	next := netip.AddrPortFrom(loopback4, first.Port()+1)
	if c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(next)); err == nil {
		_ = c.Close()
		t.Fatalf("another program could bind the reserved port %v", next)
	}
	claim := testkit.Attr(stun.AttrReservationToken, token)
	if got := newClient(t, s, "udp").allocate(t, claim); got != next {
		t.Fatalf("the token's Allocate got %v, want %v", got, next)
	}
	newClient(t, s, "udp").want(t, stun.CodeInsufficientCapacity, stun.MethodAllocate, udpTransport, claim)
}

// TestAllocateExpiredReservation: a RESERVATION-TOKEN past its lifetime is 508 even before
// the sweep has let it go, and its port goes back to the pool.
func TestAllocateExpiredReservation(t *testing.T) {
	s := newTestServer(t, 27285, 27289)
	resp := newClient(t, s, "udp").want(t, 0, stun.MethodAllocate, udpTransport, evenPort(true))
	token, err := resp.Get(stun.AttrReservationToken)
	if err != nil {
		t.Fatal(err)
	}
	s.reserved.mu.Lock()
	for _, res := range s.reserved.held {
		res.expires = time.Now().Add(-time.Millisecond) // the sweep, once a second, may not have run
	}
	s.reserved.mu.Unlock()
	claim := testkit.Attr(stun.AttrReservationToken, token)
	newClient(t, s, "udp").want(t, stun.CodeInsufficientCapacity, stun.MethodAllocate, udpTransport, claim)
	if n := s.cfg.Pool.InUse(); n != 1 {
		t.Fatalf("%d pool ports in use after the reservation expired, want 1 (the first relay)", n)
	}
}

// TestAllocateLifetime: an Allocate gets the default lifetime without LIFETIME, and no more
// than Limits.MaxLifetime with a longer one.
func TestAllocateLifetime(t *testing.T) {
	s := newTestServer(t, 27045, 27049, withLimits(Limits{MaxLifetime: time.Hour}))
	for _, tc := range []struct {
		attrs []stun.Setter
		want  time.Duration
	}{
		{nil, defaultLifetime},
		{[]stun.Setter{lifetime(1800)}, 30 * time.Minute},
		{[]stun.Setter{lifetime(7200)}, time.Hour},
	} {
		c := newClient(t, s, "udp")
		resp := c.want(t, 0, stun.MethodAllocate, append([]stun.Setter{udpTransport}, tc.attrs...)...)
		if got := lifetimeOf(t, resp); got != tc.want {
			t.Fatalf("LIFETIME %v, want %v", got, tc.want)
		}
		if left := time.Until(c.alloc(s).expiry()); left > tc.want || left < tc.want-5*time.Second {
			t.Fatalf("the allocation expires in %v, want %v", left, tc.want)
		}
	}
}

// fakeShared is a SharedQuota whose other servers hold others[slot], and which records the
// counts it is told.
type fakeShared struct {
	mu      sync.Mutex
	others  map[string]int
	unknown bool
	told    map[string]int
}

func (f *fakeShared) Others(slot string) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.others[slot], !f.unknown
}

func (f *fakeShared) Changed(slot string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.told[slot] = n
}

func (f *fakeShared) count(slot string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.told[slot]
}

// TestAllocateSharedQuota: the allocations other servers hold of a user count against the
// user's limit; when they are not known, the local count alone decides; every change of
// the local count is told, the end of an allocation too.
func TestAllocateSharedQuota(t *testing.T) {
	shared := &fakeShared{others: map[string]int{"bob": 1}, told: map[string]int{}}
	s := newTestServer(t, 27310, 27319, withLimits(Limits{AllocationsPerUser: 2}),
		func(c *Config) { c.Shared = shared })
	b1 := newClient(t, s, "udp").as(restUser("bob"))
	b1.allocate(t)
	if n := shared.count("bob"); n != 1 {
		t.Errorf("told bob holds %d here, want 1", n)
	}
	b2 := newClient(t, s, "udp").as(restUser("bob"))
	b2.want(t, stun.CodeAllocQuotaReached, stun.MethodAllocate, udpTransport) // 1 here + 1 elsewhere
	shared.mu.Lock()
	shared.others["bob"] = 2
	shared.mu.Unlock()
	b1.want(t, 0, stun.MethodRefresh, lifetime(0))
	if n := shared.count("bob"); n != 0 {
		t.Errorf("told bob holds %d here after his allocation ended, want 0", n)
	}
	b2.want(t, stun.CodeAllocQuotaReached, stun.MethodAllocate, udpTransport) // 2 elsewhere
	shared.mu.Lock()
	shared.unknown = true // Redis down: the local count decides
	shared.mu.Unlock()
	b2.allocate(t)
	b3 := newClient(t, s, "udp").as(restUser("bob"))
	b3.allocate(t)
	b4 := newClient(t, s, "udp").as(restUser("bob"))
	b4.want(t, stun.CodeAllocQuotaReached, stun.MethodAllocate, udpTransport)
}
