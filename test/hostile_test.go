package test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// The hostile-client tests each throw one kind of abuse at a live Ferry on loopback,
// bounded in count and time, while a legitimate client relays through the same server:
//
//	s, port := hostileSetup(t, poolSize)
//	f := startFerry(t, s.toml())
//	l := underAttack(t, f, s, port)
//	attack(attackTime, workers, func(ctx context.Context, worker int) { ... until ctx is done })
//	l.check(t)
//
// check then wants the legitimate client to have lost at most maxLegitLoss of its echoes,
// and Ferry's memory and open files to have stayed bounded.
const (
	// maxLegitLoss is the share of the legitimate client's echoes an attack may cost it.
	maxLegitLoss = 0.01
	// minLegitSent is the fewest packets the legitimate client must have sent for its loss
	// to mean something: with fewer, 1 % would be less than one packet. It is half a second
	// of its flow (startFlow sends one every 5 ms).
	minLegitSent = 100
	// maxRSSGrowthKiB bounds how much Ferry's resident memory may grow from the start of an
	// attack to its end. The binary is race-built, which multiplies what Go allocates, and
	// Go hands freed memory back to the kernel only minutes later, so this is a high-water
	// mark. Measured on 2 cores (RSS about 36 MiB before): 7 MiB for the unauthenticated
	// flood, 12 to 18 for the peer and allocation floods, 16 for uclient's negative tests,
	// 21 for the garbage flood (most of it its 400 TCP connections coming and going), 24
	// for the HTTP slow clients, 29 for the stuck streams. A machine that falls behind a
	// flood holds more.
	maxRSSGrowthKiB = 48 << 10
	// maxFDGrowth is how many more descriptors than before an attack Ferry may hold once
	// the attackers are gone and settled has waited for Ferry to notice, besides one relay
	// socket for each allocation an attacker left (they live until they expire).
	maxFDGrowth = 8
	// attackTime is how long each flood lasts.
	attackTime = 4 * time.Second
)

// hostileSetup is newSetup with what underAttack needs: peers on 127.0.0.1 allowed.
func hostileSetup(t *testing.T, poolSize int) (*setup, int) {
	t.Helper()
	s, port := newSetup(t, poolSize)
	s.allowPeers = []string{"127.0.0.1/32"}
	return s, port
}

// legit is the legitimate client of a hostile test: a UDP allocation relaying ChannelData
// to an echo peer on 127.0.0.1, and Ferry's /proc figures from before the attack.
type legit struct {
	f       *ferry
	client  *rawClient // the allocation's client: refresh it if the test caps lifetimes
	flow    *flow
	metrics string // Ferry's metrics address
	before  procStats
	relays  float64 // relay ports in use before the attack
}

// underAttack starts the legitimate client of Ferry f (configured by s, UDP on port) and
// waits for its first echoes. Its peer is on 127.0.0.1, which s.allowPeers must allow
// (hostileSetup does). It allocates now, before any attack, so that a flood from
// 127.0.0.1 that spends the unauthenticated rate cannot lock it out: its ChannelData is
// not rate-limited.
func underAttack(t *testing.T, f *ferry, s *setup, port int) *legit {
	t.Helper()
	if !allowsPeer(s, netip.MustParseAddr("127.0.0.1")) {
		t.Fatalf("underAttack relays to an echo peer on 127.0.0.1, which allow_peers %v does not allow (use hostileSetup)", s.allowPeers)
	}
	c := dialRaw(t, "udp", addrString("127.0.0.1", port), testUser, testPass)
	relayWithChannel(t, c)
	fl := startFlow(t, c, 0x4000)
	fl.moving(t, "the legitimate client's first echoes", 20)
	return &legit{f: f, client: c, flow: fl, metrics: s.metricsAddr, before: f.stats(t),
		relays: scrape(t, s.metricsAddr)[relaysInUse]}
}

func allowsPeer(s *setup, ip netip.Addr) bool {
	for _, p := range s.allowPeers {
		if prefix, err := netip.ParsePrefix(p); err == nil && prefix.Contains(ip) {
			return true
		}
	}
	return false
}

// check ends the legitimate flow and fails the test if it lost more than maxLegitLoss of
// its echoes or sent too few to tell, or if Ferry's RSS grew by more than maxRSSGrowthKiB
// or its descriptors by more than maxFDGrowth. It logs the figures either way.
func (l *legit) check(t *testing.T) {
	t.Helper()
	lost, sent := l.flow.loss()
	after, fdLimit := l.settled(t)
	grown := after.rssKiB - l.before.rssKiB
	t.Logf("legitimate client: %.2f%% of %d packets lost; ferry before the attack: %s, after: %s (RSS %+.1f MiB, %d fds allowed)",
		lost*100, sent, l.before, after, float64(grown)/1024, fdLimit)
	if sent < minLegitSent {
		t.Errorf("the legitimate client sent only %d packets, want at least %d: keep the attack going for half a second at least", sent, minLegitSent)
	}
	if lost > maxLegitLoss {
		t.Errorf("the legitimate client lost %.2f%% of its echoes, want at most %.0f%%", lost*100, maxLegitLoss*100)
	}
	if grown > maxRSSGrowthKiB {
		t.Errorf("ferry's RSS grew by %d KiB under attack, want at most %d", grown, maxRSSGrowthKiB)
	}
	if after.fds > fdLimit {
		t.Errorf("ferry holds %d descriptors after the attack, %d before; want at most %d", after.fds, l.before.fds, fdLimit)
	}
}

// relaysInUse counts the relay ports held by allocations, each a descriptor.
const relaysInUse = "ferry_relay_ports_in_use"

// settled waits up to 5 s for Ferry to close what the attackers left behind, then
// returns its /proc figures and how many descriptors it may hold.
func (l *legit) settled(t *testing.T) (procStats, int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := l.f.stats(t)
		limit := l.before.fds + maxFDGrowth + int(max(0, scrape(t, l.metrics)[relaysInUse]-l.relays))
		if st.fds <= limit || time.Now().After(deadline) {
			return st, limit
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// attack runs hit on workers goroutines for d, and waits for them: each hit returns once
// its ctx is done.
func attack(d time.Duration, workers int, hit func(ctx context.Context, worker int)) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { hit(ctx, i) })
	}
	wg.Wait()
}

// paced calls send once every interval until ctx is done: attackers keep a bounded rate.
func paced(ctx context.Context, interval time.Duration, send func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			send()
		}
	}
}

// logCounters logs what Ferry counted of the requests, errors and drops of an attack.
func logCounters(t *testing.T, s *setup) {
	t.Helper()
	var lines []string
	for series, v := range scrape(t, s.metricsAddr) {
		for _, family := range []string{"ferry_turn_requests_total", "ferry_error_responses_total", "ferry_auth_failures_total", "_dropped_total"} {
			if v != 0 && strings.Contains(series, family) {
				lines = append(lines, fmt.Sprintf("%s %.0f", series, v))
			}
		}
	}
	sort.Strings(lines)
	t.Logf("ferry counted:\n\t%s", strings.Join(lines, "\n\t"))
}

// healthy checks Ferry after an attack: it answers a fresh Binding over UDP and TCP (UDP
// first, whose retransmissions outlast a spent Binding rate), and it never answered 500.
func healthy(t *testing.T, s *setup, port int) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		c := dialRaw(t, network, addrString("127.0.0.1", port), testUser, testPass)
		mustSucceed(t, "Binding over "+network+" after the attack", c.roundTrip(stun.BindingRequest))
	}
	scrape(t, s.metricsAddr).want(t, `ferry_error_responses_total{code="500"}`, 0)
}

// TestHostileUclientNegative runs coturn's negative tests against Ferry while the
// legitimate client relays: -N binds channels with random numbers (three in four are
// outside 0x4000-0x7FFF and must get 400; uclient then gives up), -R overwrites up to nine
// random bytes of one message in ten (uclient then waits for answers that never come,
// retransmitting the damaged message, until it is stopped). Both over UDP and TCP, and
// -R with a wrong password too. The unauthenticated rate is off, so that every message
// reaches the protocol code instead of the limiter.
func TestHostileUclientNegative(t *testing.T) {
	needTool(t, "turnutils_uclient")
	const runs = 3 // at most, per case, within attackTime: -N runs end in milliseconds
	s, port := hostileSetup(t, 150)
	s.perUser = 0    // uclient leaves its allocations to expire
	s.unauthRate = 0 // no limit
	f := startFerry(t, s.toml())
	l := underAttack(t, f, s, port)
	peer := udpPeer(t, "127.0.0.1")

	cases := []struct{ name, args string }{
		{"-N udp", "-N"},
		{"-N tcp", "-N -t"},
		{"-R udp", "-R"},
		{"-R tcp", "-R -t"},
		{"-R udp, wrong password", "-R -w wrong"},
	}
	outputs := make([]string, len(cases))
	attack(attackTime, len(cases), func(ctx context.Context, i int) {
		args := append(strings.Fields("-v -X -m 4 -n 50 -l 100 -z 5 -u "+testUser+" -w "+testPass), strings.Fields(cases[i].args)...)
		args = append(args, "-e", "127.0.0.1", "-r", strconv.Itoa(int(peer.Port())), "-p", strconv.Itoa(port), "127.0.0.1")
		for range runs {
			if ctx.Err() != nil {
				break
			}
			out, _ := exec.CommandContext(ctx, "turnutils_uclient", args...).CombinedOutput() // it fails by design
			outputs[i] += string(out)
		}
	})
	for i, tc := range cases {
		t.Logf("uclient %s: %s", tc.name, uclientSummary(outputs[i]))
	}
	if !strings.Contains(outputs[0]+outputs[1], "channel bind: error 400") {
		t.Errorf("no -N run saw its bad channel number answered 400:\n%s", outputs[0]+outputs[1])
	}
	logCounters(t, s)
	l.check(t)
	healthy(t, s, port)
}

var uclientError = regexp.MustCompile(`error (\d+)`)

// uclientSummary condenses uclient's verbose output: its successes and the error codes it
// was answered with.
func uclientSummary(out string) string {
	codes := map[string]int{}
	for _, m := range uclientError.FindAllStringSubmatch(out, -1) {
		codes[m[1]]++
	}
	var parts []string
	for code, n := range codes {
		parts = append(parts, fmt.Sprintf("%s ×%d", code, n))
	}
	sort.Strings(parts)
	totals := "no totals"
	if m := uclientTotals.FindAllString(out, -1); m != nil {
		totals = m[len(m)-1]
	}
	return fmt.Sprintf("%d successes, errors [%s], %s", strings.Count(out, ": success"), strings.Join(parts, ", "), totals)
}

// Parameters of the unauthenticated flood: 200 source ports, 10 Allocates a second each.
const (
	floodSockets  = 200
	floodWorkers  = 20                    // each sends for its 10 sockets in turn
	floodInterval = 10 * time.Millisecond // per worker: 2000 requests a second in all
)

// TestHostileUnauthenticatedFlood: unauthenticated Allocates from 200 source ports of
// 127.0.0.1, the legitimate client's address too. Ferry answers them 401 at the configured
// rate per source IP, not per port, and counts the rest as dropped; the legitimate
// client, which allocated before, keeps relaying.
func TestHostileUnauthenticatedFlood(t *testing.T) {
	s, port := hostileSetup(t, 4)
	f := startFerry(t, s.toml())
	l := underAttack(t, f, s, port)
	before := scrape(t, s.metricsAddr)

	socks := make([]net.Conn, floodSockets)
	for i := range socks {
		c, err := net.Dial("udp", addrString("127.0.0.1", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		socks[i] = c
	}
	var sent atomic.Int64
	start := time.Now()
	attack(attackTime, floodWorkers, func(ctx context.Context, w int) {
		mine := socks[w*floodSockets/floodWorkers : (w+1)*floodSockets/floodWorkers]
		next := 0
		paced(ctx, floodInterval, func() {
			req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP)
			if _, err := mine[next%len(mine)].Write(req.Raw); err == nil {
				sent.Add(1)
			}
			next++
		})
	})
	elapsed := time.Since(start)
	answers := unauthorizedAnswers(t, socks)

	after := scrape(t, s.metricsAddr)
	received := after[`ferry_turn_requests_total{method="allocate"}`] - before[`ferry_turn_requests_total{method="allocate"}`]
	answered := after[`ferry_error_responses_total{code="401"}`] - before[`ferry_error_responses_total{code="401"}`]
	dropped := after["ferry_unauthenticated_dropped_total"] - before["ferry_unauthenticated_dropped_total"]
	t.Logf("%d Allocates sent from %d ports in %s, %.0f received by ferry: %.0f answered 401 (%d came back), %.0f dropped",
		sent.Load(), floodSockets, elapsed.Round(time.Millisecond), received, answered, answers, dropped)

	// A burst of rate answers, then rate a second: rate × (elapsed + 1), a second's worth of slack either way.
	rate := float64(s.unauthRate)
	if low, high := rate*elapsed.Seconds(), rate*(elapsed.Seconds()+2); float64(answers) < low || float64(answers) > high {
		t.Errorf("%d answers in %s at %d/s per source IP, want %.0f to %.0f", answers, elapsed, s.unauthRate, low, high)
	}
	if answered != float64(answers) || dropped != received-answered {
		t.Errorf("ferry counted %.0f 401s and %.0f drops of %.0f requests; %d answers arrived", answered, dropped, received, answers)
	}
	if received < 0.99*float64(sent.Load()) {
		t.Errorf("ferry read %.0f of %d requests: it fell behind the flood", received, sent.Load())
	}
	l.check(t)
	healthy(t, s, port)
}

// unauthorizedAnswers reads what the flood's sockets were sent back: every answer must be
// a 401.
func unauthorizedAnswers(t *testing.T, socks []net.Conn) int {
	t.Helper()
	n := 0
	buf := make([]byte, 1500)
	time.Sleep(300 * time.Millisecond) // the last answers are on their way
	for _, c := range socks {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond)) // what has come is queued
		for {
			size, err := c.Read(buf)
			if err != nil {
				break
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:size]...)}
			if err := m.Decode(); err != nil {
				t.Fatalf("an answer to the flood is not STUN: %v", err)
			}
			mustCode(t, "an unauthenticated Allocate", m, stun.CodeUnauthorized)
			n++
		}
	}
	return n
}

// Parameters of the garbage flood.
const (
	garbageSockets  = 4                     // UDP sockets sending datagram garbage
	garbageInterval = 2 * time.Millisecond  // per socket: 2000 datagrams a second in all
	streamWorkers   = 2                     // each opens a TCP connection with garbage...
	streamInterval  = 20 * time.Millisecond // ...this often: 100 a second in all
	authedInterval  = 5 * time.Millisecond  // malformed requests signed by a real user
	garbageSeed     = 0xfe77
	// garbageVariants of each kind are made before the attack: making them during it
	// would take the CPU the test's own legitimate client needs.
	garbageVariants = 8
)

// TestHostileGarbage floods Ferry with malformed input while the legitimate client relays:
// every kind of datagramGarbage from several UDP sockets, the same on TCP streams with
// streamGarbage (some of which stall halfway through a 64 KiB frame), and malformed
// requests that carry a valid MESSAGE-INTEGRITY from an authenticated client with an
// allocation. TestMalformedInput sends one of a few kinds each; this is the flood, with
// a relay to protect.
func TestHostileGarbage(t *testing.T) {
	s, port := hostileSetup(t, 4)
	f := startFerry(t, s.toml())
	l := underAttack(t, f, s, port)
	server := addrString("127.0.0.1", port)
	attacker := dialRaw(t, "udp", server, testUser, testPass)
	attacker.allocate()
	go func() { // its answers are of no interest; keep its read loop going
		for range attacker.responses {
		}
	}()

	rng := rand.New(rand.NewPCG(garbageSeed, 0))
	datagrams, streams := datagramCorpus(rng), streamCorpus(rng)

	var sentDatagrams, sentStreams, sentSigned atomic.Int64
	workers := garbageSockets + streamWorkers + 1
	attack(attackTime, workers, func(ctx context.Context, w int) {
		switch {
		case w < garbageSockets:
			sendDatagramGarbage(ctx, t, server, datagrams, w, &sentDatagrams)
		case w < garbageSockets+streamWorkers:
			sendStreamGarbage(ctx, server, streams, w, &sentStreams)
		default:
			sendSignedGarbage(ctx, attacker, rand.New(rand.NewPCG(garbageSeed, 1)), &sentSigned)
		}
	})
	t.Logf("sent %d garbage datagrams, %d garbage TCP streams, %d malformed signed requests",
		sentDatagrams.Load(), sentStreams.Load(), sentSigned.Load())
	logCounters(t, s)
	l.check(t)
	healthy(t, s, port)
}

// datagramCorpus is garbageVariants of every kind of datagramGarbage, the kinds
// interleaved.
func datagramCorpus(rng *rand.Rand) [][]byte {
	var corpus [][]byte
	for range garbageVariants {
		for _, k := range datagramGarbage {
			corpus = append(corpus, k.make(rng))
		}
	}
	return corpus
}

// streamInput is what one garbage TCP connection sends; hold keeps it open until the
// attack ends instead of closing it at once.
type streamInput struct {
	b    []byte
	hold bool
}

// streamCorpus is garbageVariants of every kind of streamGarbage and of datagramGarbage
// (on a stream of its own, framed by its own header: the first bad frame ends a stream),
// the kinds interleaved.
func streamCorpus(rng *rand.Rand) []streamInput {
	var corpus []streamInput
	for range garbageVariants {
		for _, k := range streamGarbage {
			corpus = append(corpus, streamInput{k.make(rng), k.hold})
		}
		for _, k := range datagramGarbage {
			corpus = append(corpus, streamInput{b: k.make(rng)})
		}
	}
	return corpus
}

// sendDatagramGarbage sends the corpus in turn, from its entry next on, from one UDP
// socket.
func sendDatagramGarbage(ctx context.Context, t *testing.T, server string, corpus [][]byte, next int, count *atomic.Int64) {
	c, err := net.Dial("udp", server)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	paced(ctx, garbageInterval, func() {
		if _, err := c.Write(corpus[next%len(corpus)]); err == nil {
			count.Add(1)
		}
		next++
	})
}

// sendStreamGarbage opens a TCP connection for each input of the corpus in turn, from its
// entry next on; the connections an input holds open are closed when the attack ends.
func sendStreamGarbage(ctx context.Context, server string, corpus []streamInput, next int, count *atomic.Int64) {
	var held []net.Conn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	paced(ctx, streamInterval, func() {
		in := corpus[next%len(corpus)]
		next++
		c, err := net.Dial("tcp", server)
		if err != nil {
			return
		}
		count.Add(1)
		_, _ = c.Write(in.b)
		if in.hold {
			held = append(held, c)
			return
		}
		_ = c.Close()
	})
}

// sendSignedGarbage sends malformed requests with a valid MESSAGE-INTEGRITY from a client
// with an allocation: what gets past authentication into the protocol code.
func sendSignedGarbage(ctx context.Context, c *rawClient, rng *rand.Rand, count *atomic.Int64) {
	next := 0
	paced(ctx, authedInterval, func() {
		kind := signedGarbage[next%len(signedGarbage)]
		next++
		m := stun.MustBuild(append(append([]stun.Setter{stun.TransactionID}, kind(rng)...),
			stun.NewUsername(c.user), stun.NewRealm(c.realm), c.nonce,
			stun.NewLongTermIntegrity(c.user, c.realm, c.pass), stun.Fingerprint)...)
		raw := m.Raw
		if next%4 == 0 { // attributes after MESSAGE-INTEGRITY and FINGERPRINT: to be ignored or refused
			raw = appendAttrs(raw, stunAttr(uint16(stun.AttrUsername), []byte("mallory")), stunAttr(uint16(stun.AttrLifetime), []byte{0, 0, 0, 0}))
		}
		if _, err := c.conn.Write(raw); err == nil {
			count.Add(1)
		}
	})
}

// garbageKind makes one kind of malformed input.
type garbageKind struct {
	name string
	make func(rng *rand.Rand) []byte
}

// STUN message types and attributes the garbage is built from.
const (
	stunCookie       = 0x2112a442
	bindingRequest   = 0x0001
	allocateRequest  = 0x0003
	channelBindReq   = 0x0009
	sendIndication   = 0x0016
	dataIndication   = 0x0017
	allocateSuccess  = 0x0103
	optionalUnknown  = 0x8777 // comprehension-optional, unknown: to be ignored
	requiredUnknown  = 0x0777 // comprehension-required, unknown: 420
	oversizedPayload = 65000  // with a header, just under the largest UDP datagram
)

// datagramGarbage is malformed input for a UDP listener (and, framed by its own header,
// for a TCP one).
var datagramGarbage = []garbageKind{
	{"random bytes", func(rng *rand.Rand) []byte { return randomBytes(rng, 1+rng.IntN(1500)) }},
	{"STUN length beyond the datagram", func(rng *rand.Rand) []byte {
		return withLength(stunMessage(rng, allocateRequest, transportAttr(17)), 8+rng.IntN(60000))
	}},
	{"STUN length not a multiple of 4", func(rng *rand.Rand) []byte {
		m := stunMessage(rng, bindingRequest, stunAttr(optionalUnknown, randomBytes(rng, 8)))
		return withLength(m, len(m)-20-1-rng.IntN(3))
	}},
	{"wrong magic cookie", func(rng *rand.Rand) []byte {
		m := stunMessage(rng, allocateRequest, transportAttr(17))
		binary.BigEndian.PutUint32(m[4:], rng.Uint32())
		return m
	}},
	{"truncated signed request", func(rng *rand.Rand) []byte {
		m := credentialed(rng, allocateRequest, transportAttr(17))
		return m[:20+rng.IntN(len(m)-20)]
	}},
	{"oversized STUN message", func(rng *rand.Rand) []byte {
		return stunMessage(rng, bindingRequest, stunAttr(optionalUnknown, make([]byte, oversizedPayload)))
	}},
	{"oversized ChannelData", func(rng *rand.Rand) []byte { return channelData(0x4000, 0xffff, oversizedPayload) }},
	{"ChannelData longer than the datagram", func(rng *rand.Rand) []byte {
		return channelData(0x4000+uint16(rng.IntN(0x4000)), uint16(200+rng.IntN(60000)), rng.IntN(100))
	}},
	{"ChannelData on an unbound channel", func(rng *rand.Rand) []byte {
		size := rng.IntN(1200)
		return channelData(0x4000+uint16(rng.IntN(0x4000)), uint16(size), size)
	}},
	{"reserved first bits", func(rng *rand.Rand) []byte {
		b := randomBytes(rng, 4+rng.IntN(200))
		b[0] |= 0x80
		return b
	}},
	{"thousands of attributes", func(rng *rand.Rand) []byte {
		attrs := make([][]byte, 8000)
		for i := range attrs {
			attrs[i] = stunAttr(optionalUnknown, nil)
		}
		return stunMessage(rng, allocateRequest, append(attrs, transportAttr(17))...)
	}},
	{"MESSAGE-INTEGRITY first", func(rng *rand.Rand) []byte {
		return stunMessage(rng, allocateRequest, stunAttr(uint16(stun.AttrMessageIntegrity), randomBytes(rng, 20)),
			stunAttr(uint16(stun.AttrUsername), []byte(testUser)), stunAttr(uint16(stun.AttrRealm), []byte(testRealm)),
			stunAttr(uint16(stun.AttrNonce), randomBytes(rng, 16)), transportAttr(17))
	}},
	{"MESSAGE-INTEGRITY cut short, twice, FINGERPRINT in the middle", func(rng *rand.Rand) []byte {
		return credentialed(rng, allocateRequest, stunAttr(uint16(stun.AttrFingerprint), randomBytes(rng, 4)),
			stunAttr(uint16(stun.AttrMessageIntegrity), randomBytes(rng, 4)), transportAttr(17))
	}},
	{"MESSAGE-INTEGRITY-SHA256 of the wrong size", func(rng *rand.Rand) []byte {
		return stunMessage(rng, allocateRequest, stunAttr(uint16(stun.AttrUsername), []byte(testUser)),
			stunAttr(uint16(stun.AttrRealm), []byte(testRealm)), stunAttr(uint16(stun.AttrNonce), randomBytes(rng, 16)),
			stunAttr(uint16(stun.AttrMessageIntegritySHA256), randomBytes(rng, 1+rng.IntN(40))))
	}},
	{"wrong credentials", func(rng *rand.Rand) []byte { return credentialed(rng, allocateRequest, transportAttr(17)) }},
	{"unknown comprehension-required attribute", func(rng *rand.Rand) []byte {
		return stunMessage(rng, allocateRequest, transportAttr(17), stunAttr(requiredUnknown, randomBytes(rng, 6)))
	}},
	{"malformed attribute values", func(rng *rand.Rand) []byte {
		return stunMessage(rng, channelBindReq, stunAttr(uint16(stun.AttrChannelNumber), []byte{0x40}),
			stunAttr(uint16(stun.AttrXORPeerAddress), []byte{0, 9, 1}), stunAttr(uint16(stun.AttrLifetime), nil),
			stunAttr(uint16(stun.AttrRequestedTransport), []byte{17}))
	}},
	{"responses and indications from a client", func(rng *rand.Rand) []byte {
		types := []uint16{allocateSuccess, 0x0113, sendIndication, dataIndication}
		return stunMessage(rng, types[rng.IntN(len(types))], stunAttr(uint16(stun.AttrData), randomBytes(rng, rng.IntN(64))))
	}},
	{"any message type", func(rng *rand.Rand) []byte {
		return stunMessage(rng, uint16(rng.IntN(0x4000)), stunAttr(uint16(rng.IntN(0x10000)), randomBytes(rng, rng.IntN(64))))
	}},
}

// streamKind is malformed input for a TCP listener; hold: see streamInput.
type streamKind struct {
	make func(rng *rand.Rand) []byte
	hold bool
}

var streamGarbage = []streamKind{
	{make: func(rng *rand.Rand) []byte { return randomBytes(rng, 1+rng.IntN(4096)) }},
	{make: func(rng *rand.Rand) []byte { return channelData(0x4000, 0xffff, 100) }}, // then closed
	{make: func(rng *rand.Rand) []byte { return channelData(0x4000, 0xffff, 100) }, hold: true},
	{make: func(rng *rand.Rand) []byte { // a 64 KiB STUN frame announced, then stalled
		return withLength(stunMessage(rng, allocateRequest, transportAttr(17)), 0xfffc)
	}, hold: true},
	// Hundreds of empty ChannelData frames on unbound channels. Each costs Ferry a few µs
	// (pion formats an error for it; race-built, about 65 µs), so a few hundred per
	// connection keep the race-built server ahead of the flood.
	{make: func(rng *rand.Rand) []byte {
		var b []byte
		for range 200 {
			b = append(b, channelData(0x4000+uint16(rng.IntN(0x4000)), 0, 0)...)
		}
		return b
	}},
	{make: func(rng *rand.Rand) []byte { // a Binding, then noise
		return append(stunMessage(rng, bindingRequest), randomBytes(rng, 1+rng.IntN(512))...)
	}},
}

// signedGarbage are requests with malformed attributes that a signed, allocated client
// sends: the checks behind authentication.
var signedGarbage = []func(rng *rand.Rand) []stun.Setter{
	func(rng *rand.Rand) []stun.Setter { // a channel number below 0x4000 (pion v5.1.0 binds it)
		return []stun.Setter{stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
			channelNumber(uint16(rng.IntN(0x4000))), testkit.PeerAddr(netip.MustParseAddrPort("127.0.0.1:9"))}
	},
	func(rng *rand.Rand) []stun.Setter { // a channel number and peer address of the wrong size
		return []stun.Setter{stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
			testkit.Attr(stun.AttrChannelNumber, []byte{0x40}), testkit.Attr(stun.AttrXORPeerAddress, randomBytes(rng, 3))}
	},
	func(rng *rand.Rand) []stun.Setter { // an unknown address family
		return []stun.Setter{stun.NewType(stun.MethodCreatePermission, stun.ClassRequest),
			testkit.Attr(stun.AttrXORPeerAddress, append([]byte{0, 9}, randomBytes(rng, 18)...))}
	},
	func(rng *rand.Rand) []stun.Setter { // a hundred denied peers at once, or 300 (3.7 KB: pion drops it unanswered)
		setters := []stun.Setter{stun.NewType(stun.MethodCreatePermission, stun.ClassRequest)}
		for i := range []int{100, 300}[rng.IntN(2)] {
			setters = append(setters, testkit.PeerAddr(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 9)))
		}
		return setters
	},
	func(rng *rand.Rand) []stun.Setter { // a LIFETIME with no value
		return []stun.Setter{stun.NewType(stun.MethodRefresh, stun.ClassRequest), testkit.Attr(stun.AttrLifetime, nil)}
	},
	func(rng *rand.Rand) []stun.Setter { // a second Allocate with a bad transport and token
		return []stun.Setter{stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			testkit.Attr(stun.AttrRequestedTransport, []byte{byte(rng.IntN(256))}),
			testkit.Attr(stun.AttrReservationToken, randomBytes(rng, 3)), testkit.Attr(stun.AttrEvenPort, randomBytes(rng, 2))}
	},
	func(rng *rand.Rand) []stun.Setter { // a Connect on a UDP allocation, to nowhere
		return []stun.Setter{stun.NewType(stun.MethodConnect, stun.ClassRequest), testkit.Attr(stun.AttrXORPeerAddress, nil)}
	},
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// stunAttr is one attribute, padded to 4 bytes.
func stunAttr(typ uint16, value []byte) []byte {
	b := make([]byte, 4+(len(value)+3)&^3)
	binary.BigEndian.PutUint16(b, typ)
	binary.BigEndian.PutUint16(b[2:], uint16(len(value)))
	copy(b[4:], value)
	return b
}

// stunMessage is a well-framed STUN message of type typ with a random transaction ID.
func stunMessage(rng *rand.Rand, typ uint16, attrs ...[]byte) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, typ)
	binary.BigEndian.PutUint32(b[4:], stunCookie)
	copy(b[8:], randomBytes(rng, 12))
	return appendAttrs(b, attrs...)
}

// appendAttrs appends attributes to a message and updates its length.
func appendAttrs(msg []byte, attrs ...[]byte) []byte {
	for _, a := range attrs {
		msg = append(msg, a...)
	}
	return withLength(msg, len(msg)-20)
}

// withLength sets the length field of a STUN message, whatever its real length.
func withLength(msg []byte, n int) []byte {
	binary.BigEndian.PutUint16(msg[2:], uint16(n))
	return msg
}

// credentialed is a message with alice's USERNAME, REALM, a made-up NONCE and a
// MESSAGE-INTEGRITY and FINGERPRINT of random bytes after attrs.
func credentialed(rng *rand.Rand, typ uint16, attrs ...[]byte) []byte {
	attrs = append(attrs, stunAttr(uint16(stun.AttrUsername), []byte(testUser)),
		stunAttr(uint16(stun.AttrRealm), []byte(testRealm)), stunAttr(uint16(stun.AttrNonce), randomBytes(rng, 16)),
		stunAttr(uint16(stun.AttrMessageIntegrity), randomBytes(rng, 20)), stunAttr(uint16(stun.AttrFingerprint), randomBytes(rng, 4)))
	return stunMessage(rng, typ, attrs...)
}

func transportAttr(protocol byte) []byte {
	return stunAttr(uint16(stun.AttrRequestedTransport), []byte{protocol, 0, 0, 0})
}

// channelData is a ChannelData header announcing length, with size bytes of payload.
func channelData(channel, length uint16, size int) []byte {
	b := make([]byte, 4+size)
	binary.BigEndian.PutUint16(b, channel)
	binary.BigEndian.PutUint16(b[2:], length)
	return b
}

// Limits of Ferry's HTTP endpoints (server/http.go, sfu/http.go) and the slack the test
// gives them on a loaded machine.
const (
	httpHeaderTimeout = 5 * time.Second  // server.readHeaderTimeout
	httpBodyTimeout   = 10 * time.Second // server.bodyTimeout, sfu.bodyTimeout
	httpMaxHeader     = 64 << 10         // server.maxHeaderBytes
	httpMaxSDP        = 64 << 10         // sfu.maxSDP
	httpSlack         = 2 * time.Second
	// httpPrompt is how long a normal request may take while the slow clients are held.
	httpPrompt = time.Second
	// slowHeaderClients trickle their header to each endpoint at once.
	slowHeaderClients = 16
)

// httpEndpoint is one of Ferry's HTTP servers: a GET it answers at once, and a request
// whose handler answers without reading the body (so net/http reads it after the handler).
type httpEndpoint struct {
	name, addr, probe, unread string
}

// slowCase is one slow client: what it sends at once (then one more byte each second),
// how long the server may take to close the connection, and the answer it must give
// before that.
type slowCase struct {
	addr, name, head string
	within           time.Duration
	status           int // an HTTP status, noAnswer or any4xx
	quiet            bool
}

const (
	noAnswer = 0  // the server closes without a word, as net/http does on a header timeout
	any4xx   = -1 // the handler's own refusal: 401, 405...
)

// TestHostileHTTPSlowloris holds slow clients on every HTTP endpoint (metrics, admin,
// SFU) while the legitimate client relays: headers trickled a byte a second or never sent
// are cut at the header timeout, bodies trickled are cut at the body timeout (with an
// answer), also where the handler never reads them; a header over the limit gets 431 and
// an offer over the limit 413. Normal requests are served promptly all along, and once the
// slow clients are gone so are their goroutines and descriptors. No admin handler reads a
// body (sessions, kill, reload take none), so the admin endpoint is tried with one its
// handlers refuse.
func TestHostileHTTPSlowloris(t *testing.T) {
	s, port := hostileSetup(t, 4)
	s.sfuAddr = addrString("127.0.0.1", freePort(t, "127.0.0.1"))
	s.tokenSecret = sfuTokenSecret
	f := startFerry(t, s.toml())
	l := underAttack(t, f, s, port)
	goroutines := scrape(t, s.metricsAddr)["go_goroutines"]
	endpoints := []httpEndpoint{
		{"metrics", s.metricsAddr, "GET /healthz", "POST /metrics"},
		{"admin", s.adminAddr, "GET /v1/sessions", "POST /v1/sessions"},
		{"sfu", s.sfuAddr, "GET /", "POST /whip/room"}, // no token: 401
	}
	whip := "POST /whip/room HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
		accessToken(t, "room", true, false, time.Hour) + "\r\nContent-Type: application/sdp\r\n"

	stopProbes := make(chan struct{})
	var probes sync.WaitGroup
	probes.Go(func() { probeEndpoints(t, endpoints, stopProbes) })
	var slow sync.WaitGroup
	for _, c := range append(slowCases(endpoints), slowCase{s.sfuAddr, "sfu: WHIP offer trickled",
		whip + "Content-Length: 1000\r\n\r\n", httpBodyTimeout + httpSlack, http.StatusRequestTimeout, false}) {
		slow.Go(func() { c.run(t) })
	}
	time.Sleep(time.Second) // the slow clients are connected and trickling
	oversized(t, endpoints, s.sfuAddr, whip)
	slow.Wait()
	close(stopProbes)
	probes.Wait()

	waitFor(t, "ferry's goroutines back to where they were", func() bool {
		return scrape(t, s.metricsAddr)["go_goroutines"] <= goroutines+10
	})
	l.check(t)
}

// slowCases are, for each endpoint, slowHeaderClients trickling their header, one that
// sends nothing, and one trickling a body to a handler that does not read it.
func slowCases(endpoints []httpEndpoint) []slowCase {
	var cases []slowCase
	for _, e := range endpoints {
		for i := range slowHeaderClients {
			cases = append(cases, slowCase{e.addr, fmt.Sprintf("%s: header trickled %d", e.name, i),
				e.probe + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", httpHeaderTimeout + httpSlack, noAnswer, i > 0})
		}
		cases = append(cases,
			slowCase{e.addr, e.name + ": silent", "", httpHeaderTimeout + httpSlack, noAnswer, false},
			slowCase{e.addr, e.name + ": body trickled, unread", e.unread +
				" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n", httpBodyTimeout + httpSlack, any4xx, false})
	}
	return cases
}

// run connects, sends head, then a byte a second (if head is not empty), and checks when
// and how the server ends it.
func (c slowCase) run(t *testing.T) {
	conn, err := net.Dial("tcp", c.addr)
	if err != nil {
		t.Errorf("%s: %v", c.name, err)
		return
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan string, 1)
	go func() {
		br := bufio.NewReader(conn)
		status, _ := br.ReadString('\n')
		_, _ = io.Copy(io.Discard, br)
		closed <- strings.TrimSpace(status)
	}()
	if c.head != "" {
		_, _ = conn.Write([]byte(c.head))
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	limit := time.After(2 * c.within) // measure past the bound, but never hang
	for {
		select {
		case status := <-closed:
			c.judge(t, status, time.Since(start))
			return
		case <-tick.C:
			if c.head != "" {
				_, _ = conn.Write([]byte("x"))
			}
		case <-limit:
			t.Errorf("%s: still connected after %s, want closed within %s", c.name, 2*c.within, c.within)
			return
		}
	}
}

func (c slowCase) judge(t *testing.T, status string, after time.Duration) {
	if after > c.within {
		t.Errorf("%s: closed after %s, want within %s", c.name, after.Round(time.Millisecond), c.within)
	}
	code := noAnswer
	if f := strings.Fields(status); len(f) > 1 {
		code, _ = strconv.Atoi(f[1])
	}
	if c.status == any4xx && (code < 400 || code > 499) || c.status != any4xx && code != c.status {
		t.Errorf("%s: answered %q, want %d (%d: nothing, %d: any 4xx)", c.name, status, c.status, noAnswer, any4xx)
	}
	if !c.quiet {
		t.Logf("%s: closed after %s, answer %q", c.name, after.Round(time.Millisecond), status)
	}
}

// probeEndpoints sends each endpoint's normal request every 250 ms until stop, and wants
// each answered 200 within httpPrompt.
func probeEndpoints(t *testing.T, endpoints []httpEndpoint, stop chan struct{}) {
	client := &http.Client{Timeout: 5 * time.Second}
	var slowest time.Duration
	n := 0
	for {
		for _, e := range endpoints {
			path := strings.TrimPrefix(e.probe, "GET ")
			start := time.Now()
			resp, err := client.Get("http://" + e.addr + path)
			took := time.Since(start)
			if err != nil {
				t.Errorf("%s %s while slow clients are held: %v", e.name, e.probe, err)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || took > httpPrompt {
				t.Errorf("%s %s while slow clients are held: %s in %s, want 200 within %s", e.name, e.probe, resp.Status, took, httpPrompt)
			}
			slowest, n = max(slowest, took), n+1
		}
		select {
		case <-stop:
			t.Logf("%d normal requests served while the slow clients were held, the slowest in %s", n, slowest.Round(time.Microsecond))
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// oversized sends a header over the limit to every endpoint (431) and an offer over the
// limit to the SFU (413); whip is the head of an authorized WHIP request.
func oversized(t *testing.T, endpoints []httpEndpoint, sfuAddr, whip string) {
	t.Helper()
	for _, e := range endpoints {
		head := e.probe + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + strings.Repeat("b", 2*httpMaxHeader) + "\r\n\r\n"
		if status := rawHTTP(t, e.addr, head); !strings.Contains(status, " 431 ") {
			t.Errorf("%s: a %d KiB header answered %q, want 431", e.name, 2*httpMaxHeader>>10, status)
		}
	}
	offer := strings.Repeat("a=x\r\n", 2*httpMaxSDP/5)
	status := rawHTTP(t, sfuAddr, whip+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(offer))+offer)
	if !strings.Contains(status, " 413 ") {
		t.Errorf("WHIP with a %d KiB offer: %q, want 413", len(offer)>>10, status)
	}
}

// rawHTTP writes a request as it is and returns the status line of the answer.
func rawHTTP(t *testing.T, addr, request string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte(request)) // the server may stop reading early: the answer tells
	status, _ := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(status)
}
