package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/internal/testkit"
)

// The cluster world: three Ferry nodes in namespaces of their own on one bridge, and Redis
// and the clients in the world's root namespace, all in documentation addresses.
//
//	root 198.51.100.1 (redis-server, pion clients) ─ clbr0 bridge ─┬─ ferryA 198.51.100.11
//	                                                               ├─ ferryB 198.51.100.12
//	                                                               └─ ferryC 198.51.100.13
const (
	clusterRootIP = "198.51.100.1"
	clusterTTL    = 3 * time.Second
	clusterAdmin  = "cluster-admin-token"
)

// clusterNode is one Ferry of the cluster world.
type clusterNode struct {
	name, ns, ip string
	f            *ferry
}

func (n *clusterNode) sfu() string     { return "http://" + n.ip + ":8080" }
func (n *clusterNode) metrics() string { return n.ip + ":9641" }
func (n *clusterNode) turn() string    { return n.ip + ":3478" }

// newClusterWorld builds the world and starts Redis and the three nodes.
func newClusterWorld(t *testing.T) (*testkit.Redis, []*clusterNode) {
	t.Helper()
	w := newNetnsWorld(t)
	w.sh("ip", "link", "add", "clbr0", "type", "bridge")
	w.sh("ip", "addr", "add", clusterRootIP+"/24", "dev", "clbr0")
	w.sh("ip", "link", "set", "clbr0", "up")
	redis := testkit.StartRedis(t, clusterRootIP)
	var nodes []*clusterNode
	for i, name := range []string{"a", "b", "c"} {
		n := &clusterNode{name: name, ns: "ferry" + strings.ToUpper(name), ip: fmt.Sprintf("198.51.100.%d", 11+i)}
		w.addNamespace(n.ns)
		port := "veth" + name
		w.sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.ns)
		w.sh("ip", "link", "set", port, "master", "clbr0", "up")
		w.shIn(n.ns, "ip", "addr", "add", n.ip+"/24", "dev", "eth0")
		w.shIn(n.ns, "ip", "link", "set", "eth0", "up")
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.start(t, redis)
	}
	return redis, nodes
}

// start runs the node's Ferry in its namespace.
func (n *clusterNode) start(t *testing.T, redis *testkit.Redis) {
	t.Helper()
	users := filepath.Join(t.TempDir(), "users.toml")
	cfg := fmt.Sprintf(`[server]
realm = %q
drain_timeout = "1s"
[[listen]]
proto = "udp"
addr = "%[2]s:3478"
[[listen]]
proto = "tcp"
addr = "%[2]s:3478"
[relay]
bind_ip = %[2]q
min_port = 20000
max_port = 20199
[auth]
users_file = %[3]q
secrets = [%[4]q]
[limits]
allocations_per_user = 2
[sfu]
http = "%[2]s:8080"
token_secret = %[5]q
self_test = false
[metrics]
listen = "%[2]s:9641"
[admin]
listen = "%[2]s:9642"
token = %[6]q
[cluster]
redis = %[7]q
node = %[8]q
ttl = %[9]q
`, testRealm, n.ip, users, testSecret, sfuTokenSecret, clusterAdmin, redis.URL(), n.name, clusterTTL.String())
	n.f = startFerryVia(t, cfg, "ip", "netns", "exec", n.ns)
}

// noRedirects is an HTTP client that shows a 307 instead of following it.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       5 * time.Second,
}

// post sends an offer-shaped POST with a bearer token without following redirects.
func post(t *testing.T, rawURL, token, body string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := noRedirects.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// waitMetric polls a node's /metrics until cond holds for series.
func waitMetric(t *testing.T, n *clusterNode, series string, timeout time.Duration, cond func(float64) bool) {
	t.Helper()
	waitSeries(t, n.metrics(), series, timeout, cond)
}

// TestCluster: three nodes and one redis-server, each node in its own namespace. A WHIP to
// node A claims room demo; WHIP and WHEP to B and C are answered 307 to A with the token in
// the URL, and subscribers that came through B and C (one relay-only, through A's TURN from
// the Link headers) get A's packets. Per-user allocation quotas count across the nodes. A
// draining A sends Allocates to another live node (300). With Redis stopped, media goes on,
// each node serves rooms on its own and logs the outage once; with Redis back, every node
// registers again and A owns demo again. When A is killed, the next WHIP for demo to
// another node takes the room within the TTL.
func TestCluster(t *testing.T) {
	if !netnsReexec(t) {
		return
	}
	redis, nodes := newClusterWorld(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		waitMetric(t, n, "ferry_cluster_nodes", 2*clusterTTL, func(v float64) bool { return v == 3 })
		waitMetric(t, n, "ferry_cluster_redis_up", time.Second, func(v float64) bool { return v == 1 })
	}
	pubToken := accessToken(t, "demo", true, false, time.Hour)
	subToken := accessToken(t, "demo", false, true, time.Hour)

	// Publish to A: it claims demo.
	pub := newPublisher(t, peerOptions{}, "")
	_, status := signal(t, pub.pc, a.sfu()+"/whip/demo?name=cam", pubToken)
	if status != http.StatusCreated {
		t.Fatalf("WHIP to A: %d", status)
	}
	waitConnected(t, pub.pc)
	pub.run()
	if owner, _ := redis.Do("GET", "ferry:room:demo"); owner != "a" {
		t.Fatalf("ferry:room:demo = %q after the WHIP to A, want a", owner)
	}

	// B and C answer 307 to A, the token in the query and the rest of the URL kept.
	for _, n := range []*clusterNode{b, c} {
		for _, path := range []string{"/whip/demo?name=cam2", "/whep/demo"} {
			token := subToken
			if strings.HasPrefix(path, "/whip") {
				token = pubToken
			}
			resp, err := post(t, n.sfu()+path, token, "v=0\r\n")
			if err != nil {
				t.Fatalf("POST %s to %s: %v", path, n.name, err)
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusTemporaryRedirect || loc == nil || loc.Host != a.ip+":8080" ||
				loc.Query().Get("token") != token || !strings.HasPrefix(path, loc.Path) {
				t.Fatalf("POST %s to %s: %d Location %q, want 307 to A with the token", path, n.name, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
	}

	// A WHEP to B, redirected to A, receives A's packets.
	subB, gotB := newSubscriber(t, peerOptions{})
	if _, status := signal(t, subB, b.sfu()+"/whep/demo", subToken); status != http.StatusCreated {
		t.Fatalf("WHEP to B: %d", status)
	}
	waitConnected(t, subB)
	gotB.waitFor(t, "20 packets through B's redirect", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 20 })

	// Relay-only through C: a first WHEP (redirected) reads the Link headers, which name A's
	// TURN; a relay-only client with them subscribes through C again.
	probe, _ := newSubscriber(t, peerOptions{})
	first, status := signal(t, probe, c.sfu()+"/whep/demo", subToken)
	if status != http.StatusCreated {
		t.Fatalf("first WHEP to C: %d", status)
	}
	servers := iceServersFromLinks(t, first.links)
	var turnURLs []string
	for _, s := range servers {
		if s.Username != "" {
			turnURLs = append(turnURLs, s.URLs...)
		}
	}
	if len(turnURLs) == 0 || !strings.Contains(turnURLs[0], a.turn()) {
		t.Fatalf("the Link headers of a WHEP redirected to A name TURN servers %v, want A's %s", turnURLs, a.turn())
	}
	subC, gotC := newSubscriber(t, peerOptions{relayVia: servers})
	if _, status := signal(t, subC, c.sfu()+"/whep/demo", subToken); status != http.StatusCreated {
		t.Fatalf("relay-only WHEP to C: %d", status)
	}
	waitConnected(t, subC)
	gotC.waitFor(t, "20 packets relayed through A's TURN", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 20 })
	if typ := selectedLocalType(t, subC); typ != webrtc.ICECandidateTypeRelay {
		t.Errorf("the relay-only subscriber's candidate is %s, want relay", typ)
	}
	_ = first.do(t, http.MethodDelete, "", "", "")
	waitMetric(t, c, `ferry_cluster_redirects_total{method="whep"}`, time.Second, func(v float64) bool { return v >= 3 })
	waitMetric(t, b, `ferry_cluster_redirects_total{method="whip"}`, time.Second, func(v float64) bool { return v >= 1 })

	// ferry cluster status lists the three nodes and demo's owner, from Redis.
	out, stderr, err := runFerry(t, "", "cluster", "status", "--redis", redis.URL(), "--json")
	var st struct {
		Nodes []struct{ Name, TURN, SFU string }
		Rooms []struct{ Room, Owner string }
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("ferry cluster status: %v\n%s%s", err, out, stderr)
	}
	if len(st.Nodes) != 3 || st.Nodes[0].SFU != a.sfu() || st.Nodes[2].TURN != c.turn() ||
		len(st.Rooms) != 1 || st.Rooms[0].Room != "demo" || st.Rooms[0].Owner != "a" {
		t.Errorf("ferry cluster status: %s, want nodes a, b, c and room demo owned by a", out)
	}

	// Quotas: bob may hold 2 allocations in the whole cluster.
	bobUser, bobPass := auth.RESTCredential(testSecret, "bob", time.Hour, time.Now())
	onA := dialRaw(t, "udp", a.turn(), bobUser, bobPass)
	onA.allocate()
	dialRaw(t, "udp", b.turn(), bobUser, bobPass).allocate()
	third := dialRaw(t, "udp", c.turn(), bobUser, bobPass)
	mustCode(t, "bob's third Allocate, on C", third.request(stun.MethodAllocate, requestedTransportUDP), stun.CodeAllocQuotaReached)
	mustSucceed(t, "bob's Refresh 0 on A", onA.request(stun.MethodRefresh, lifetime(0)))
	deadline := time.Now().Add(2 * time.Second)
	for {
		m := third.request(stun.MethodAllocate, requestedTransportUDP)
		if m.Type.Class == stun.ClassSuccessResponse {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's Allocate on C after one ended on A: %v", errorCode(m))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Drain A: an Allocate there is sent to another live node, which serves it.
	if out, stderr, err := runFerry(t, "", "drain", "--admin", a.ip+":9642", "--token", clusterAdmin); err != nil {
		t.Fatalf("ferry drain on A: %v\n%s%s", err, out, stderr)
	}
	carolUser, carolPass := auth.RESTCredential(testSecret, "carol", time.Hour, time.Now())
	// The 300 comes before authentication, as on a single draining node.
	m := dialRaw(t, "udp", a.turn(), carolUser, carolPass).roundTrip(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP)
	mustCode(t, "Allocate on draining A", m, stun.CodeTryAlternate)
	var alt stun.AlternateServer
	if err := alt.GetFrom(m); err != nil {
		t.Fatalf("300 without ALTERNATE-SERVER: %v", err)
	}
	altAddr := net.JoinHostPort(alt.IP.String(), fmt.Sprint(alt.Port))
	if altAddr != b.turn() && altAddr != c.turn() {
		t.Fatalf("draining A sends Allocates to %s, want B's or C's TURN", altAddr)
	}
	dialRaw(t, "udp", altAddr, carolUser, carolPass).allocate()
	if out, stderr, err := runFerry(t, "", "drain", "--cancel", "--admin", a.ip+":9642", "--token", clusterAdmin); err != nil {
		t.Fatalf("ferry drain --cancel on A: %v\n%s%s", err, out, stderr)
	}

	// Redis down: media goes on, rooms are served where they are, the outage is logged once.
	redis.Stop()
	for _, n := range nodes {
		waitMetric(t, n, "ferry_cluster_redis_up", 2*clusterTTL, func(v float64) bool { return v == 0 })
	}
	before := len(gotB.snapshot())
	gotB.waitFor(t, "packets go on with Redis down", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= before+50 })
	local, gotLocal := newSubscriber(t, peerOptions{})
	if _, status := signal(t, local, a.sfu()+"/whep/demo", subToken); status != http.StatusCreated {
		t.Fatalf("WHEP to A with Redis down: %d", status)
	}
	waitConnected(t, local)
	gotLocal.waitFor(t, "a new subscriber on A with Redis down", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 10 })
	otherPub := newPublisher(t, peerOptions{}, "")
	if _, status := signal(t, otherPub.pc, b.sfu()+"/whip/other", accessToken(t, "other", true, false, time.Hour)); status != http.StatusCreated {
		t.Fatalf("WHIP to B of a new room with Redis down: %d", status)
	}
	waitConnected(t, otherPub.pc)
	otherPub.run()
	redis.Start()
	for _, n := range nodes {
		waitMetric(t, n, "ferry_cluster_redis_up", 2*clusterTTL, func(v float64) bool { return v == 1 })
		waitMetric(t, n, "ferry_cluster_nodes", 2*clusterTTL, func(v float64) bool { return v == 3 })
		logs := n.f.stderr.String()
		if k := strings.Count(logs, "Redis unreachable"); k != 1 {
			t.Errorf("node %s logged the outage %d times, want once", n.name, k)
		}
		if !strings.Contains(logs, "Redis answers again") {
			t.Errorf("node %s did not log that Redis is back", n.name)
		}
	}
	for room, want := range map[string]string{"demo": "a", "other": "b"} {
		deadline := time.Now().Add(2 * clusterTTL)
		for owner, _ := redis.Do("GET", "ferry:room:"+room); owner != want; owner, _ = redis.Do("GET", "ferry:room:"+room) {
			if time.Now().After(deadline) {
				t.Fatalf("after Redis came back ferry:room:%s = %q, want %s", room, owner, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Kill A: the next WHIP for demo to C takes the room within the TTL.
	_ = a.f.cmd.Process.Kill()
	<-a.f.exited
	killed := time.Now()
	newPub := newPublisher(t, peerOptions{}, "")
	offer, err := newPub.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for {
		resp, err := post(t, c.sfu()+"/whip/demo", pubToken, offer.SDP)
		if err == nil && resp.StatusCode == http.StatusCreated {
			break
		}
		switch {
		case err != nil:
			last = err.Error()
		case resp.StatusCode == http.StatusTemporaryRedirect && strings.Contains(resp.Header.Get("Location"), a.ip):
			last = "307 to dead A"
		case resp.StatusCode == http.StatusServiceUnavailable:
			last = "503 Retry-After " + resp.Header.Get("Retry-After")
		default:
			t.Fatalf("WHIP to C after A was killed: %d", resp.StatusCode)
		}
		// A's last renewal was at most a TTL before its death; a second more for the WHIPs.
		if time.Since(killed) > clusterTTL+time.Second {
			t.Fatalf("C did not take demo within the TTL (%v) of A's death: last answer %s", clusterTTL, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("C took room demo %v after A was killed (TTL %v); before, C answered %s", time.Since(killed).Round(10*time.Millisecond), clusterTTL, last)
	if owner, _ := redis.Do("GET", "ferry:room:demo"); owner != "c" {
		t.Errorf("ferry:room:demo = %q, want c", owner)
	}
}

// snapshot is the counters received so far.
func (r *received) snapshot() []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.counter)
}
