package turnserver

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/dtlsgate"
	"github.com/ferry-rtc/ferry/internal/promhist"
	"github.com/ferry-rtc/ferry/relay"
)

// labelledCodes are the error codes with their own label value; any other code counts as
// "other".
var labelledCodes = []int{300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 446, 447, 486, 500, 508}

// Peer-policy denials, by the operation that was refused; inbound counts datagrams and
// connections to relays from denied sources.
const (
	deniedCreatePermission = iota
	deniedChannelBind
	deniedConnect
	deniedSend
	deniedInbound
)

// Why a message was dropped unanswered, for ferry_stun_dropped_total.
const (
	dropMalformed        = iota // does not parse, or an indication's XOR-PEER-ADDRESS does not
	dropFingerprint             // a FINGERPRINT that does not match (RFC 8489 section 7.3)
	dropUnknownAttribute        // an indication with an unknown comprehension-required attribute
	dropUnrelayable             // ChannelData or a Send indication without an allocation, channel or permission
	dropNoPermission            // a peer's datagram or connection to a relay without a permission for it
)

// Which way a write of the data plane failed, for ferry_relay_write_errors_total.
const (
	toPeerWrite = iota
	toClientWrite
)

// Which per-allocation limit refused a request, for ferry_allocation_limit_rejections_total.
const (
	limitPermissions = iota
	limitChannels
)

// Which limit refused an RFC 6062 peer connection, for
// ferry_tcp_peer_connections_refused_total.
const (
	refusedPerAllocation = iota
	refusedTotal
)

// authReasons label auth failures by the Authenticator's errors.
var authReasons = []struct {
	err    error
	reason string
}{
	{auth.ErrUnknownUser, "unknown_user"},
	{auth.ErrBadIntegrity, "bad_integrity"},
	{auth.ErrExpired, "expired"},
	{auth.ErrWrongRealm, "wrong_realm"},
	{auth.ErrRevoked, "revoked"},
}

// allocKey labels allocations by client transport and relay address family.
type allocKey struct {
	transport string
	ipv6      bool
}

// meters are the server's metrics. Every counter exists from the start (a scrape shows 0,
// not a missing series) and the maps and slices are read-only after newMeters, so the data
// path reads them without locks.
type meters struct {
	bindings        *metrics.Counter
	requests        labelled[stun.Method]
	errors          labelled[int]
	authFailures    []*metrics.Counter // indexed like authReasons
	staleNonces     *metrics.Counter
	peerDenied      []*metrics.Counter // by denied* op
	quota           *metrics.Counter
	unauthDropped   *metrics.Counter
	bindingDropped  *metrics.Counter
	limitRejections []*metrics.Counter // by limit*
	dropped         []*metrics.Counter // by drop* reason
	writeErrors     []*metrics.Counter // by *Write direction
	tcpRefused      []*metrics.Counter // by refused* limit
	created         map[allocKey]*metrics.Counter
	active          map[allocKey]*metrics.Gauge
	lifetime        *promhist.Histogram
	dtls            *dtlsgate.Meters
	ended           struct { // what ended allocations carried
		sync.Mutex
		relay.Usage
	}
}

func newMeters(set *metrics.Set, s *Server) *meters {
	m := &meters{
		bindings:        set.NewCounter("ferry_stun_binding_requests_total"),
		requests:        labelled[stun.Method]{map[stun.Method]*metrics.Counter{}, set.NewCounter(`ferry_turn_requests_total{method="other"}`)},
		errors:          labelled[int]{map[int]*metrics.Counter{}, set.NewCounter(`ferry_error_responses_total{code="other"}`)},
		staleNonces:     set.NewCounter(`ferry_auth_failures_total{reason="stale_nonce"}`),
		quota:           set.NewCounter("ferry_quota_rejections_total"),
		unauthDropped:   set.NewCounter("ferry_unauthenticated_dropped_total"),
		bindingDropped:  set.NewCounter("ferry_stun_binding_dropped_total"),
		peerDenied:      counters(set, "ferry_peer_denied_total", "op", "create_permission", "channel_bind", "connect", "send", "inbound"),
		limitRejections: counters(set, "ferry_allocation_limit_rejections_total", "limit", "permissions", "channels"),
		dropped:         counters(set, "ferry_stun_dropped_total", "reason", "malformed", "fingerprint", "unknown_attribute", "unrelayable", "no_permission"),
		writeErrors:     counters(set, "ferry_relay_write_errors_total", "direction", "client_to_peer", "peer_to_client"),
		tcpRefused:      counters(set, "ferry_tcp_peer_connections_refused_total", "limit", "allocation", "total"),
		created:         map[allocKey]*metrics.Counter{},
		active:          map[allocKey]*metrics.Gauge{},
		// Allocation lifetimes, from a failed call to a day-long one.
		lifetime: promhist.New("ferry_allocation_lifetime_seconds",
			1, 10, 30, 60, 300, 600, 1800, 3600, 3*3600, 6*3600, 12*3600, 24*3600),
		dtls: dtlsgate.NewMeters(set),
	}
	for method, h := range methods {
		m.requests.own[method] = set.NewCounter(fmt.Sprintf("ferry_turn_requests_total{method=%q}", h.label))
	}
	for _, code := range labelledCodes {
		m.errors.own[code] = set.NewCounter(fmt.Sprintf(`ferry_error_responses_total{code="%d"}`, code))
	}
	for _, r := range authReasons {
		m.authFailures = append(m.authFailures, set.NewCounter(fmt.Sprintf("ferry_auth_failures_total{reason=%q}", r.reason)))
	}
	for _, t := range []string{"udp", "tcp", "tls", "dtls"} { // the listener protos
		for _, family := range []string{"ipv4", "ipv6"} {
			k := allocKey{transport: t, ipv6: family == "ipv6"}
			labels := fmt.Sprintf("{transport=%q,family=%q}", t, family)
			m.created[k] = set.NewCounter("ferry_allocations_created_total" + labels)
			m.active[k] = set.NewGauge("ferry_allocations_active"+labels, nil)
		}
	}
	set.NewGauge("ferry_tcp_peer_connections", func() float64 { return float64(s.table.connCount()) })
	set.RegisterMetricsWriter(func(w io.Writer) {
		m.lifetime.WritePrometheus(w)
		m.writeRelayTotals(w, s.table)
	})
	return m
}

// counters makes a counter of family for each value of label, in the order given.
func counters(set *metrics.Set, family, label string, values ...string) []*metrics.Counter {
	out := make([]*metrics.Counter, len(values))
	for i, v := range values {
		out[i] = set.NewCounter(fmt.Sprintf("%s{%s=%q}", family, label, v))
	}
	return out
}

// writeRelayTotals writes the relayed traffic: what the ended allocations carried and what
// the live ones have so far. Each allocation counts its own (no cache line shared between
// cores on the data path); the totals are summed only when scraped.
func (m *meters) writeRelayTotals(w io.Writer, t *table) {
	m.ended.Lock()
	u := m.ended.Usage
	m.ended.Unlock()
	for _, a := range t.all() {
		u = u.Add(a.usage())
	}
	metrics.WriteMetadataIfNeeded(w, "ferry_relay_packets_total", "counter")
	fmt.Fprintf(w, "ferry_relay_packets_total{direction=\"client_to_peer\"} %d\n", u.ToPeerPackets)
	fmt.Fprintf(w, "ferry_relay_packets_total{direction=\"peer_to_client\"} %d\n", u.FromPeerPackets)
	metrics.WriteMetadataIfNeeded(w, "ferry_relay_bytes_total", "counter")
	fmt.Fprintf(w, "ferry_relay_bytes_total{direction=\"client_to_peer\"} %d\n", u.ToPeerBytes)
	fmt.Fprintf(w, "ferry_relay_bytes_total{direction=\"peer_to_client\"} %d\n", u.FromPeerBytes)
}

// keyOf labels an allocation's metrics: its listener's proto and its (first) relay's
// family.
func keyOf(a *allocation) allocKey {
	addrs := a.relayedAddrs()
	return allocKey{transport: a.transport, ipv6: len(addrs) > 0 && addrs[0].Addr().Is6()}
}

// allocationCreated and allocationEnded count an allocation under its labels.
func (m *meters) allocationCreated(a *allocation) {
	k := keyOf(a)
	if c, ok := m.created[k]; ok {
		c.Inc()
		m.active[k].Inc()
	}
}

func (m *meters) allocationEnded(a *allocation) {
	if g, ok := m.active[keyOf(a)]; ok {
		g.Dec()
	}
	m.lifetime.Observe(time.Since(a.created).Seconds())
	u := a.usage()
	m.ended.Lock()
	m.ended.Usage = m.ended.Add(u)
	m.ended.Unlock()
}

// labelled is a counter family with a label value of its own for some keys; the others
// count as "other".
type labelled[K comparable] struct {
	own   map[K]*metrics.Counter
	other *metrics.Counter
}

func (l labelled[K]) inc(k K) {
	if c, ok := l.own[k]; ok {
		c.Inc()
	} else {
		l.other.Inc()
	}
}

// errorResponse counts an error response on its way to a client, whoever built it.
func (m *meters) errorResponse(code int) {
	m.errors.inc(code)
	if code == int(stun.CodeStaleNonce) {
		m.staleNonces.Inc()
	}
}

func (m *meters) authFailure(err error) {
	for i, r := range authReasons {
		if errors.Is(err, r.err) {
			m.authFailures[i].Inc()
			return
		}
	}
}

// MetricsHelp returns the HELP text of each of the server's metric families.
func MetricsHelp() map[string]string {
	return map[string]string{
		"ferry_stun_binding_requests_total":        "STUN Binding requests received.",
		"ferry_stun_binding_dropped_total":         "Binding requests dropped unanswered by limits.binding_per_ip_rate.",
		"ferry_stun_dropped_total":                 "STUN messages, ChannelData and peer datagrams dropped unanswered, by reason (malformed, fingerprint, unknown_attribute, unrelayable, no_permission).",
		"ferry_relay_write_errors_total":           "Relayed datagrams and frames whose write failed, by direction (client_to_peer, peer_to_client).",
		"ferry_turn_requests_total":                "TURN requests received, by method.",
		"ferry_error_responses_total":              "STUN and TURN error responses sent, by error code.",
		"ferry_auth_failures_total":                "Requests refused for their credentials, by reason.",
		"ferry_unauthenticated_dropped_total":      "Requests without valid credentials dropped unanswered by limits.unauthenticated_per_ip_rate.",
		"ferry_quota_rejections_total":             "Allocate requests refused by a quota (486).",
		"ferry_allocation_limit_rejections_total":  "Requests refused (508) by a per-allocation limit, by limit (permissions, channels).",
		"ferry_allocations_created_total":          "Allocations created, by client transport and relay address family.",
		"ferry_allocations_active":                 "Live allocations, by client transport and relay address family.",
		"ferry_allocation_lifetime_seconds":        "How long the allocations that ended lived.",
		"ferry_relay_packets_total":                "Packets relayed, by direction.",
		"ferry_relay_bytes_total":                  "Bytes relayed, by direction.",
		"ferry_peer_denied_total":                  "Operations the peer policy refused, by operation; inbound counts datagrams and connections from denied sources at relays.",
		"ferry_tcp_peer_connections":               "Live RFC 6062 peer connections.",
		"ferry_tcp_peer_connections_refused_total": "RFC 6062 peer connections refused, by limit (connections_per_allocation: allocation, tcp_connections_total: total).",
	}
}
