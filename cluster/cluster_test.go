package cluster

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

const testTTL = 3 * time.Second

// node is a Cluster under test with the load and rooms the test gives it.
type node struct {
	*Cluster
	mu    sync.Mutex
	rooms []string
	load  Load
	lost  []string
}

func (n *node) publish(rooms ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rooms = rooms
}

func (n *node) lostRooms() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.lost)
}

// join makes node name join the cluster at url; it leaves with the test unless crashed.
func join(t *testing.T, url, name string) *node {
	t.Helper()
	n := &node{}
	c, err := New(Config{
		URL: url, Node: name, TTL: testTTL, Version: "test",
		TURN: netip.MustParseAddrPort("198.51.100.1:3478"), SFU: "http://" + name + ".example:8080",
		State: func() (Load, bool) {
			n.mu.Lock()
			defer n.mu.Unlock()
			return n.load, false
		},
		Published: func() []string {
			n.mu.Lock()
			defer n.mu.Unlock()
			return slices.Clone(n.rooms)
		},
		Lost: func(room, _ string) {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.lost = append(n.lost, room)
		},
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Cluster = c
	t.Cleanup(func() {
		select {
		case <-c.stop:
		default:
			_ = c.Close()
		}
	})
	return n
}

// crash stops the node as kill -9 would: no refresh, no goodbye.
func (n *node) crash() {
	close(n.stop)
	n.done.Wait()
	_ = n.rdb.Close()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// eventually polls cond every 20 ms until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func names(nodes []Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return out
}

// TestRegistry: nodes see each other with their addresses and load; a node that leaves is
// gone at once, one that crashes within the TTL; the least-loaded other node is chosen.
func TestRegistry(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	a, b, c := join(t, r.URL(), "a"), join(t, r.URL(), "b"), join(t, r.URL(), "c")
	b.mu.Lock()
	b.load = Load{Allocations: 10, Sessions: 5, CPU: 0.5}
	b.mu.Unlock()
	eventually(t, 2*testTTL, "a sees a, b and c with b's load", func() bool {
		nodes := a.Nodes()
		return slices.Equal(names(nodes), []string{"a", "b", "c"}) && nodes[1].Sessions == 5 && nodes[1].SFU == "http://b.example:8080"
	})
	if best, ok := a.LeastLoaded(); !ok || best.Name != "c" {
		t.Errorf("least loaded for a: %v %v, want c", best.Name, ok)
	}
	_ = c.Close()
	if v, _ := r.Do("EXISTS", "ferry:node:c"); v != "0" {
		t.Errorf("c's record is still there after it left")
	}
	eventually(t, 2*testTTL, "a no longer sees c", func() bool { return slices.Equal(names(a.Nodes()), []string{"a", "b"}) })
	start := time.Now()
	b.crash()
	eventually(t, 3*testTTL, "a no longer sees b, which crashed", func() bool { return slices.Equal(names(a.Nodes()), []string{"a"}) })
	if took := time.Since(start); took > testTTL+a.refresh+time.Second {
		t.Errorf("a crashed node stayed %v in the registry, TTL %v", took, testTTL)
	}
	if _, ok := a.LeastLoaded(); ok {
		t.Error("a alone found another node")
	}
}

// TestRooms: the first claim of a room wins; others are routed to its owner; a room whose
// publisher has left is released; a crashed owner's room is free after the TTL.
func TestRooms(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	a, b := join(t, r.URL(), "a"), join(t, r.URL(), "b")
	ctx := context.Background()
	eventually(t, 2*testTTL, "b sees a", func() bool { return len(b.Nodes()) == 2 })
	if rt, err := a.Claim(ctx, "demo"); err != nil || !rt.Here {
		t.Fatalf("a's claim: %+v %v", rt, err)
	}
	a.publish("demo")
	for _, op := range []func(context.Context, string) (Route, error){b.Claim, b.Owner} {
		rt, err := op(ctx, "demo")
		if err != nil || rt.Here || rt.Owner != "a" || rt.Node.SFU != "http://a.example:8080" {
			t.Errorf("b's route to demo: %+v %v, want a's", rt, err)
		}
	}
	if rt, _ := b.Owner(ctx, "nobody"); !rt.Here || rt.Owner != "" {
		t.Errorf("route to a room nobody owns: %+v", rt)
	}
	time.Sleep(testTTL + time.Second) // longer than the TTL: the claim is renewed
	if rt, _ := b.Claim(ctx, "demo"); rt.Owner != "a" {
		t.Errorf("after a TTL a's claim was not renewed: b's route %+v", rt)
	}
	a.publish()
	eventually(t, testTTL/2, "a released demo before its claim expired", func() bool { v, _ := r.Do("GET", "ferry:room:demo"); return v == "" })
	if rt, _ := b.Claim(ctx, "demo"); !rt.Here {
		t.Fatalf("b could not claim the released room: %+v", rt)
	}
	b.publish("demo")
	b.crash()
	start := time.Now()
	eventually(t, 3*testTTL, "a takes demo after b crashed", func() bool { rt, _ := a.Claim(ctx, "demo"); return rt.Here })
	if took := time.Since(start); took > testTTL+time.Second {
		t.Errorf("a crashed owner's room was taken after %v, TTL %v", took, testTTL)
	}
}

// TestRedisRestart: with Redis stopped, requests are decided here (ErrDown) at once and
// counted; once Redis is back (empty), every node registers again and renews its rooms.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	a, b := join(t, r.URL(), "a"), join(t, r.URL(), "b")
	ctx := context.Background()
	if rt, _ := a.Claim(ctx, "demo"); !rt.Here {
		t.Fatal("a could not claim demo")
	}
	a.publish("demo")
	r.Stop()
	eventually(t, 2*testTTL, "a and b see Redis down", func() bool { return !a.Up() && !b.Up() })
	start := time.Now()
	rt, err := b.Claim(ctx, "other")
	if err != ErrDown || !rt.Here || time.Since(start) > 50*time.Millisecond {
		t.Errorf("claim with Redis down: %+v %v after %v, want here at once", rt, err, time.Since(start))
	}
	if n := a.meters.errors.Get(); n == 0 {
		t.Error("no Redis error counted")
	}
	if n := a.meters.outages.Get(); n != 1 {
		t.Errorf("%d outages counted, want 1", n)
	}
	refreshes := a.meters.refreshes.Get()
	r.Start()
	eventually(t, 2*testTTL, "a and b registered again, a renewed demo", func() bool {
		v, _ := r.Do("GET", "ferry:room:demo")
		return a.Up() && b.Up() && len(a.Nodes()) == 2 && v == "a"
	})
	if a.meters.refreshes.Get() <= refreshes {
		t.Error("no refresh counted once Redis was back")
	}
	if rt, _ := b.Owner(ctx, "demo"); rt.Owner != "a" {
		t.Errorf("b's route to demo after the restart: %+v", rt)
	}
}

// proxy forwards TCP connections to target until cut, which closes them all and refuses
// new ones until restored: a node cut from Redis while Redis serves the others.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() { _ = ln.Close(); p.setCut(true); p.wg.Wait() })
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
		p.wg.Go(func() { _, _ = io.Copy(c, up); _ = c.Close() })
	}
}

func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// TestSplit: a node cut from Redis keeps its room until its claim expires, so no other node
// takes the room before the TTL; after it another node may, and when the cut node is back
// it learns that it lost the room (its sessions end) instead of claiming it too.
func TestSplit(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	p := newProxy(t, r.Addr)
	a, b := join(t, "redis://"+p.ln.Addr().String()+"/0", "a"), join(t, r.URL(), "b")
	ctx := context.Background()
	if rt, _ := a.Claim(ctx, "demo"); !rt.Here {
		t.Fatal("a could not claim demo")
	}
	a.publish("demo")
	eventually(t, 2*testTTL, "b sees a", func() bool { return len(b.Nodes()) == 2 })
	p.setCut(true)
	cut := time.Now()
	for time.Since(cut) < testTTL-500*time.Millisecond {
		if rt, _ := b.Claim(ctx, "demo"); rt.Here {
			t.Fatalf("b took demo %v after a was cut off, TTL %v", time.Since(cut), testTTL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, 2*testTTL, "b takes demo after the TTL", func() bool { rt, _ := b.Claim(ctx, "demo"); return rt.Here })
	b.publish("demo")
	if a.Owns("demo") {
		t.Error("a still counts its lapsed claim on demo")
	}
	p.setCut(false)
	eventually(t, 2*testTTL, "a learns that it lost demo", func() bool { return slices.Equal(a.lostRooms(), []string{"demo"}) })
	if v, _ := r.Do("GET", "ferry:room:demo"); v != "b" {
		t.Errorf("demo is owned by %q, want b", v)
	}
}

// TestQuotaCounts: a node's counts reach the others at once and vanish when it crashes; with
// Redis down the others are unknown.
func TestQuotaCounts(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	a, b := join(t, r.URL(), "a"), join(t, r.URL(), "b")
	eventually(t, 2*testTTL, "a and b see each other", func() bool { return len(a.Nodes()) == 2 && len(b.Nodes()) == 2 })
	a.Changed("bob", 2)
	eventually(t, 300*time.Millisecond, "b sees bob's 2 on a", func() bool { n, ok := b.Others("bob"); return ok && n == 2 })
	if n, ok := a.Others("bob"); !ok || n != 0 {
		t.Errorf("a's others for bob: %d %v, want 0", n, ok)
	}
	a.Changed("bob", 1)
	eventually(t, 300*time.Millisecond, "b sees bob's 1 on a", func() bool { n, _ := b.Others("bob"); return n == 1 })
	a.crash()
	eventually(t, 3*testTTL, "a's count expired with it", func() bool { n, _ := b.Others("bob"); return n == 0 })
	r.Stop()
	eventually(t, 2*testTTL, "b sees Redis down", func() bool { _, ok := b.Others("bob"); return !ok })
}
