package test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// exposition is one scrape of /metrics: every sample by its series ("name{labels}").
type exposition map[string]float64

// scrape reads /metrics and checks the text format on the way: one TYPE line per family,
// before its samples, and each family's samples together.
func scrape(t *testing.T, addr string) exposition {
	t.Helper()
	body, status := httpGet(t, "http://"+addr+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	samples := exposition{}
	typed, done := map[string]bool{}, map[string]bool{}
	current := ""
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			family := strings.Fields(rest)[0]
			if typed[family] {
				t.Fatalf("second TYPE line for %s", family)
			}
			typed[family] = true
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ') // label values may hold spaces
		if sp < 0 {
			t.Fatalf("bad sample line %q", line)
		}
		series, value := line[:sp], line[sp+1:]
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		samples[series] = v
		family := familyOf(series)
		if family != current {
			if done[family] {
				t.Fatalf("samples of %s are split by other families", family)
			}
			done[current], current = true, family
		}
	}
	return samples
}

// familyOf is the metric family of a series: histogram samples belong to their histogram.
func familyOf(series string) string {
	name, _, _ := strings.Cut(series, "{")
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && strings.HasSuffix(base, "_seconds") {
			return base
		}
	}
	return name
}

func httpGet(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(body), resp.StatusCode
}

// want checks one series.
func (e exposition) want(t *testing.T, series string, value float64) {
	t.Helper()
	got, ok := e[series]
	if !ok {
		t.Fatalf("no series %s in the scrape", series)
	}
	if got != value {
		t.Fatalf("%s = %v, want %v", series, got, value)
	}
}

// atLeast checks that a series has reached min.
func (e exposition) atLeast(t *testing.T, series string, min float64) float64 {
	t.Helper()
	got, ok := e[series]
	if !ok || got < min {
		t.Fatalf("%s = %v (present: %v), want at least %v", series, got, ok, min)
	}
	return got
}

const (
	toPeerPackets   = `ferry_relay_packets_total{direction="client_to_peer"}`
	toPeerBytes     = `ferry_relay_bytes_total{direction="client_to_peer"}`
	fromPeerPackets = `ferry_relay_packets_total{direction="peer_to_client"}`
	fromPeerBytes   = `ferry_relay_bytes_total{direction="peer_to_client"}`
	activeUDP4      = `ferry_allocations_active{transport="udp",family="ipv4"}`
	createdUDP4     = `ferry_allocations_created_total{transport="udp",family="ipv4"}`
)

// flow keeps data moving through an allocation on a channel: the client sends ChannelData
// every few milliseconds, an echo peer returns it, and the echoes are counted.
type flow struct {
	sent, received atomic.Int64
	stopSend       chan struct{}
	stop           chan struct{}
	wg             sync.WaitGroup
}

func startFlow(t *testing.T, c *rawClient, channel uint16) *flow {
	t.Helper()
	payload := []byte("flowing through ferry")
	frame := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint16(frame, channel)
	binary.BigEndian.PutUint16(frame[2:], uint16(len(payload)))
	copy(frame[4:], payload)
	f := &flow{stopSend: make(chan struct{}), stop: make(chan struct{})}
	f.wg.Add(2)
	go func() { // the test goroutine owns t: errors here only stop the flow
		defer f.wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-f.stopSend:
				return
			case <-tick.C:
				if _, err := c.conn.Write(frame); err == nil {
					f.sent.Add(1)
				}
			}
		}
	}()
	go func() {
		defer f.wg.Done()
		for {
			select {
			case <-f.stop:
				return
			case d := <-c.data:
				if d.channel == channel {
					f.received.Add(1)
				}
			}
		}
	}()
	t.Cleanup(f.end)
	return f
}

func (f *flow) end() {
	select {
	case <-f.stop:
	default:
		f.stopSending()
		close(f.stop)
		f.wg.Wait()
	}
}

func (f *flow) stopSending() {
	select {
	case <-f.stopSend:
	default:
		close(f.stopSend)
	}
}

// loss stops sending, waits for the echoes still on their way, ends the flow and returns
// the fraction of echoes that never came back.
func (f *flow) loss() (lost float64, sent int64) {
	f.stopSending()
	time.Sleep(500 * time.Millisecond)
	f.end()
	sent = f.sent.Load()
	if sent == 0 {
		return 1, 0
	}
	return 1 - float64(f.received.Load())/float64(sent), sent
}

// moving waits until at least n more echoes have come back.
func (f *flow) moving(t *testing.T, what string, n int64) {
	t.Helper()
	start := f.received.Load()
	deadline := time.Now().Add(5 * time.Second)
	for f.received.Load() < start+n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: relayed data stopped (%d echoes before, %d now)", what, start, f.received.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// relayWithChannel allocates for c, binds channel 0x4000 to a new echo peer and returns
// the relayed address and the peer.
func relayWithChannel(t *testing.T, c *rawClient) (relayed, peer netip.AddrPort) {
	t.Helper()
	peer = udpPeer(t, "127.0.0.1")
	relayed = c.allocate()
	mustSucceed(t, "ChannelBind", c.request(stun.MethodChannelBind, channelNumber(0x4000), testkit.PeerAddr(peer)))
	return relayed, peer
}

// TestMetricsLive reads /metrics while an allocation relays: the counters move during the
// allocation, not when it ends, and the active gauge is back to 0 after it.
func TestMetricsLive(t *testing.T) {
	s, port := newSetup(t, 10)
	s.allowPeers = []string{"127.0.0.1/32"}
	startFerry(t, s.toml())

	if body, status := httpGet(t, "http://"+s.metricsAddr+"/healthz"); status != http.StatusOK {
		t.Fatalf("/healthz: %d %s", status, body)
	}
	if body, status := httpGet(t, "http://"+s.metricsAddr+"/readyz"); status != http.StatusOK {
		t.Fatalf("/readyz: %d %s", status, body)
	}
	before := scrape(t, s.metricsAddr)
	before.want(t, activeUDP4, 0)
	before.want(t, toPeerPackets, 0)

	c := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	mustSucceed(t, "Binding", c.roundTrip(stun.BindingRequest))
	relayed, _ := relayWithChannel(t, c)
	mustCode(t, "CreatePermission to a private peer",
		c.request(stun.MethodCreatePermission, testkit.PeerAddr(netip.MustParseAddrPort("10.1.2.3:5000"))), stun.CodeForbidden)
	f := startFlow(t, c, 0x4000)
	f.moving(t, "first packets", 20)

	during := scrape(t, s.metricsAddr)
	during.want(t, activeUDP4, 1)
	during.want(t, createdUDP4, 1)
	during.want(t, "ferry_stun_binding_requests_total", 1)
	during.atLeast(t, `ferry_turn_requests_total{method="allocate"}`, 2) // the 401 round and the real one
	during.atLeast(t, `ferry_error_responses_total{code="401"}`, 1)
	during.want(t, `ferry_error_responses_total{code="403"}`, 1)
	during.want(t, `ferry_peer_denied_total{op="create_permission"}`, 1)
	during.want(t, "ferry_relay_ports_in_use", 1)
	during.want(t, "ferry_relay_ports_free", 9)
	sent := during.atLeast(t, toPeerPackets, 20)
	during.atLeast(t, fromPeerPackets, 20)
	during.atLeast(t, toPeerBytes, 20*21)
	during.atLeast(t, fromPeerBytes, 20*21)

	f.moving(t, "more packets", 20)
	later := scrape(t, s.metricsAddr)
	later.atLeast(t, toPeerPackets, sent+20)
	later.want(t, activeUDP4, 1)
	f.end()

	// A wrong password is an auth failure by reason.
	bad := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, "wrong")
	mustCode(t, "Allocate with a wrong password", bad.request(stun.MethodAllocate, requestedTransportUDP), stun.CodeUnauthorized)

	mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
	waitFor(t, "the allocation to end in the metrics", func() bool { return scrape(t, s.metricsAddr)[activeUDP4] == 0 })
	after := scrape(t, s.metricsAddr)
	after.want(t, "ferry_allocation_lifetime_seconds_count", 1)
	after.want(t, `ferry_auth_failures_total{reason="bad_integrity"}`, 1)
	after.want(t, "ferry_relay_ports_in_use", 0)
	after.atLeast(t, toPeerPackets, later[toPeerPackets]) // ended relays stay counted
	// The test binary is built without the Makefile's flags: version dev, and the commit Go's
	// build information has (or "unknown").
	var buildInfo []string
	for series, v := range after {
		if strings.HasPrefix(series, `ferry_build_info{version="dev+`) && v == 1 {
			buildInfo = append(buildInfo, series)
		}
	}
	if len(buildInfo) != 1 {
		t.Errorf("ferry_build_info: %v, want one series with version dev+COMMIT", buildInfo)
	}
	after.atLeast(t, "go_goroutines", 1)
	after.atLeast(t, "process_resident_memory_bytes", 1)
	_ = relayed
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestUnauthenticatedRate: 401s to one source IP are capped; the dropped requests are
// counted.
func TestUnauthenticatedRate(t *testing.T) {
	s, port := newSetup(t, 4)
	s.unauthRate = 2
	startFerry(t, s.toml())
	conn, err := net.Dial("udp", addrString("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const sent = 50
	for range sent {
		req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP)
		if _, err := conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
	}
	answers := 0
	buf := make([]byte, 1500)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := conn.Read(buf); err != nil {
			break
		}
		answers++
	}
	// A burst of 2 and 2 per second: the 50 requests take well under a second to send.
	if answers < 2 || answers > 5 {
		t.Fatalf("%d answers to %d unauthenticated requests at a rate of 2/s", answers, sent)
	}
	m := scrape(t, s.metricsAddr)
	m.want(t, "ferry_unauthenticated_dropped_total", float64(sent-answers))
	m.want(t, `ferry_error_responses_total{code="401"}`, float64(answers))
}

// sessionsJSON runs `ferry sessions list --json` against the test server and returns its
// TURN allocations.
func sessionsJSON(t *testing.T, s *setup, extra ...string) []session {
	t.Helper()
	return sessionsAll(t, s, extra...).TURN
}

// sessionsAll runs `ferry sessions list --json` against the test server.
func sessionsAll(t *testing.T, s *setup, extra ...string) sessionList {
	t.Helper()
	args := append([]string{"sessions", "list", "--json", "--admin", s.adminAddr}, extra...)
	stdout, stderr, err := runFerry(t, "", args...)
	if err != nil {
		t.Fatalf("ferry sessions list: %v\n%s", err, stderr)
	}
	var out sessionList
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.TURN == nil || out.SFU == nil {
		t.Fatalf("sessions list output: %v\n%s", err, stdout)
	}
	return out
}

// sessionList is `ferry sessions list --json`.
type sessionList struct {
	TURN []session    `json:"turn"`
	SFU  []sfuSummary `json:"sfu"`
}

// session is the part of the admin API's session the tests read.
type session struct {
	ID, User, Client, Transport, Relay string
	ToPeerPackets                      uint64 `json:"to_peer_packets"`
	FromPeerPackets                    uint64 `json:"from_peer_packets"`
	ToPeerBytes                        uint64 `json:"to_peer_bytes"`
	Expires                            time.Time
	Permissions                        []string
	Channels                           []struct {
		Number uint16
		Peer   string
	}
}

// TestSessionsAPI lists a relaying allocation with moving counts and ends it; the client's
// next Refresh gets 437.
func TestSessionsAPI(t *testing.T) {
	s, port := newSetup(t, 10)
	s.allowPeers = []string{"127.0.0.1/32"}
	s.adminToken = "admin-secret"
	startFerry(t, s.toml())

	c := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	relayed, peer := relayWithChannel(t, c)
	f := startFlow(t, c, 0x4000)
	f.moving(t, "first packets", 10)

	if _, stderr, err := runFerry(t, "", "sessions", "list", "--admin", s.adminAddr); exitCode(err) != 1 ||
		!strings.Contains(stderr, "401") {
		t.Fatalf("sessions list without the token: err %v, stderr %q; want exit 1 and 401", err, stderr)
	}
	// A web page in the operator's browser cannot use the API, token or not.
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.adminAddr+"/v1/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	req.Header.Set("Origin", "http://attacker.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin API request with an Origin: %s, want 403", resp.Status)
	}
	first := sessionsJSON(t, s, "--token", s.adminToken)
	if len(first) != 1 {
		t.Fatalf("%d sessions, want 1: %+v", len(first), first)
	}
	got := first[0]
	if got.User != testUser || got.Transport != "udp" || got.Relay != relayed.String() ||
		got.Client != c.conn.LocalAddr().String() {
		t.Fatalf("session %+v; want user %s, udp, relay %s, client %s", got, testUser, relayed, c.conn.LocalAddr())
	}
	if len(got.Permissions) != 1 || got.Permissions[0] != "127.0.0.1" ||
		len(got.Channels) != 1 || got.Channels[0].Number != 0x4000 || got.Channels[0].Peer != peer.String() {
		t.Fatalf("session permissions %v, channels %+v; want 127.0.0.1 and 0x4000 → %s", got.Permissions, got.Channels, peer)
	}
	if got.ToPeerPackets == 0 || got.FromPeerPackets == 0 || got.ToPeerBytes == 0 {
		t.Fatalf("session counts %+v did not move", got)
	}
	// The flow's allocation asked for no LIFETIME: it has the 10-minute default, less its age.
	if left := time.Until(got.Expires); left <= 9*time.Minute || left > 10*time.Minute {
		t.Fatalf("session expires in %v, want just under 10 minutes", left)
	}
	f.moving(t, "more packets", 10)
	second := sessionsJSON(t, s, "--token", s.adminToken)[0]
	if second.ID != got.ID || second.ToPeerPackets <= got.ToPeerPackets || second.FromPeerPackets <= got.FromPeerPackets {
		t.Fatalf("counts did not move between two lists: %+v then %+v", got, second)
	}
	f.end()

	if _, stderr, err := runFerry(t, "", "sessions", "kill", "999", "--admin", s.adminAddr, "--token", s.adminToken); exitCode(err) != 1 ||
		!strings.Contains(stderr, "404") {
		t.Fatalf("killing an unknown session: err %v, stderr %q; want exit 1 and 404", err, stderr)
	}
	if _, stderr, err := runFerry(t, "", "sessions", "kill", got.ID, "--admin", s.adminAddr, "--token", s.adminToken); err != nil {
		t.Fatalf("ferry sessions kill %s: %v\n%s", got.ID, err, stderr)
	}
	mustCode(t, "Refresh after kill", c.request(stun.MethodRefresh, lifetime(time.Minute)), stun.CodeAllocMismatch)
	waitFor(t, "the killed session to go", func() bool { return len(sessionsJSON(t, s, "--token", s.adminToken)) == 0 })
	// Its relay port is free again.
	waitFor(t, "the relay port back in the pool", func() bool { return scrape(t, s.metricsAddr)["ferry_relay_ports_in_use"] == 0 })
}
