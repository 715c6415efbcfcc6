// Package cluster lets several Ferry nodes behave as one service through Redis: a registry
// of live nodes (each refreshes a record with its addresses and load, which expires when it
// stops), a directory of rooms (the first publisher's node claims a room; the claim expires
// unless its owner renews it), and allocation counts per node that quotas add up across
// nodes. Redis is the only shared state and the only arbiter: there is no consensus of
// Ferry's own. When Redis cannot be reached a node goes on with what it has, and registers
// again when Redis is back.
//
// The keys, all under the prefix "ferry:":
//
//	ferry:node:NAME          a node's record (JSON), expiring TTL after its last refresh
//	ferry:nodes              sorted set: node name → when its record expires (unix ms), so
//	                         that nodes are listed without SCAN
//	ferry:room:ROOM          the name of the node that owns the room, expiring TTL after
//	                         its owner's last renewal
//	ferry:alloc:SLOT:NODE    a node's live allocations of a quota slot (user or group),
//	                         expiring TTL after the node's last refresh
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/go-redis/v9"
)

const prefix = "ferry:"

func nodeKey(name string) string        { return prefix + "node:" + name }
func roomKey(room string) string        { return prefix + "room:" + room }
func allocKey(slot, node string) string { return prefix + "alloc:" + slot + ":" + node }

const nodesKey = prefix + "nodes"

// opTimeout bounds one exchange with Redis on a request's path (a WHIP, an Allocate): past
// it the node decides alone, as when Redis is down.
const opTimeout = 300 * time.Millisecond

// Load is what a node reports of its work at each refresh.
type Load struct {
	Allocations int     `json:"allocations"`  // live TURN allocations
	Sessions    int     `json:"sfu_sessions"` // live SFU sessions (publishers and subscribers)
	CPU         float64 `json:"cpu"`          // the process's CPU time over the last interval, per core of the machine (0 to 1)
}

// Node is a node's record in the registry.
type Node struct {
	Name     string    `json:"name"`
	Instance string    `json:"instance"` // random for each run of the process
	TURN     string    `json:"turn"`     // IP:port clients are sent to by 300 Try Alternate
	SFU      string    `json:"sfu"`      // base URL WHIP and WHEP requests are redirected to
	Draining bool      `json:"draining"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"`
	Load
}

// score orders nodes by load for the least-loaded choice: CPU first, then the sessions and
// allocations it holds.
func (n Node) score() float64 {
	return n.CPU*1000 + float64(n.Sessions) + float64(n.Allocations)/10
}

// Config is what a node needs to join a cluster.
type Config struct {
	URL     string // redis:// or rediss://
	Node    string // this node's name
	TURN    netip.AddrPort
	SFU     string // base URL of this node's SFU; "" without one
	TTL     time.Duration
	Version string
	// State returns this node's load and whether it drains; it is called at each refresh.
	State func() (Load, bool)
	// Published returns the rooms with a publisher on this node: their claims are renewed.
	Published func() []string
	// Lost is told that a room this node owned is owned by another node now: it was cut
	// from Redis for longer than the TTL, and the room was claimed elsewhere meanwhile.
	Lost func(room, owner string)
	// Refreshed, if set, is called after each refresh that reached Redis.
	Refreshed func()
	Log       *slog.Logger
	Meters    *Meters // nil keeps the metrics private
}

// Cluster is this node's membership of a cluster.
type Cluster struct {
	cfg      Config
	log      *slog.Logger
	rdb      *redis.Client
	instance string
	started  time.Time
	refresh  time.Duration
	meters   *Meters

	up         atomic.Bool // Redis answered the last exchange
	downLogged atomic.Bool // the outage under way has been logged
	lastLoad   atomic.Pointer[Load]

	mu     sync.Mutex
	nodes  map[string]Node      // live nodes at the last refresh, this one included
	claims map[string]time.Time // rooms this node claimed → when its claim lapses if not renewed

	qmu    sync.Mutex
	counts map[string]int      // this node's allocations of each quota slot (none: 0)
	dirty  map[string]struct{} // slots whose count has changed since it was written
	wake   chan struct{}

	stop chan struct{}
	done sync.WaitGroup
}

// ErrDown is returned while Redis cannot be reached: the caller decides alone.
var ErrDown = errors.New("cluster: Redis unreachable")

// New joins the cluster: it registers this node (waiting up to a second for Redis; a node
// that cannot reach Redis starts all the same, serves on its own, and registers once Redis
// answers) and starts the refresh loop. Close leaves.
func New(cfg Config) (*Cluster, error) {
	rdb, err := newClient(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{
		cfg: cfg, log: cfg.Log, rdb: rdb, instance: randomID(), started: time.Now(),
		refresh: cfg.TTL / 3, nodes: map[string]Node{}, claims: map[string]time.Time{}, stop: make(chan struct{}),
		counts: map[string]int{}, dirty: map[string]struct{}{}, wake: make(chan struct{}, 1),
	}
	c.meters = cfg.Meters
	if c.meters == nil {
		c.meters = NewMeters(metrics.NewSet())
	}
	c.meters.cluster.Store(c)
	c.rdb.AddHook(commandCounter{c.meters})
	c.lastLoad.Store(&Load{})
	c.checkName()
	c.tick()
	if c.up.Load() {
		c.log.Info("cluster: joined", "redis", redactedURL(cfg.URL), "node", cfg.Node, "nodes", len(c.Nodes()),
			"turn", cfg.TURN.String(), "sfu", cfg.SFU, "ttl", cfg.TTL)
	}
	c.done.Go(c.loop)
	c.done.Go(c.writer)
	return c, nil
}

// Name is this node's name.
func (c *Cluster) Name() string { return c.cfg.Node }

// Up reports whether Redis answered the last exchange.
func (c *Cluster) Up() bool { return c.up.Load() }

// Close stops refreshing and leaves: this node's record and room claims are removed, so
// that other nodes take its rooms at once rather than after the TTL.
func (c *Cluster) Close() error {
	close(c.stop)
	c.done.Wait()
	if c.up.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.mu.Lock()
		rooms := make([]string, 0, len(c.claims))
		for r := range c.claims {
			rooms = append(rooms, r)
		}
		c.mu.Unlock()
		c.qmu.Lock()
		slots := slices.Collect(maps.Keys(c.counts))
		c.qmu.Unlock()
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range rooms {
				releaseScript.Eval(ctx, p, []string{roomKey(r)}, c.cfg.Node)
			}
			p.Del(ctx, nodeKey(c.cfg.Node))
			for _, slot := range slots {
				p.Del(ctx, allocKey(slot, c.cfg.Node))
			}
			p.ZRem(ctx, nodesKey, c.cfg.Node)
			return nil
		})
		if err != nil {
			c.log.Warn("cluster: leaving: could not remove this node's record; it expires by itself", "err", err, "ttl", c.cfg.TTL)
		}
	}
	return c.rdb.Close()
}

// loop refreshes this node's record, claims and counts every TTL/3 until Close.
func (c *Cluster) loop() {
	tick := time.NewTicker(c.refresh)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
			c.tick()
		}
	}
}

// tick is one refresh: this node's record (with its load), its room claims and its quota
// counts go to Redis in one pipeline, then the live nodes are read back.
func (c *Cluster) tick() {
	ctx, cancel := context.WithTimeout(context.Background(), c.refresh)
	defer cancel()
	now := time.Now()
	load, draining := c.cfg.State()
	c.lastLoad.Store(&load)
	rec, err := json.Marshal(Node{Name: c.cfg.Node, Instance: c.instance, TURN: c.cfg.TURN.String(), SFU: c.cfg.SFU,
		Draining: draining, Version: c.cfg.Version, Started: c.started, Updated: now, Load: load})
	if err != nil {
		c.log.Error("cluster: encoding this node's record", "err", err)
		return
	}
	rooms := c.cfg.Published()
	c.qmu.Lock()
	quotas := maps.Clone(c.counts)
	c.qmu.Unlock()
	ttl := c.cfg.TTL
	var renewals []*redis.Cmd
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, nodeKey(c.cfg.Node), rec, ttl)
		p.ZAdd(ctx, nodesKey, redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: c.cfg.Node})
		p.ZRemRangeByScore(ctx, nodesKey, "-inf", fmt.Sprint(now.UnixMilli()))
		for _, r := range rooms {
			renewals = append(renewals, claimScript.Eval(ctx, p, []string{roomKey(r)}, c.cfg.Node, ttl.Milliseconds()))
		}
		for slot, n := range quotas {
			p.Set(ctx, allocKey(slot, c.cfg.Node), n, ttl)
		}
		return nil
	})
	if err != nil {
		c.failed("refresh", err)
		c.lapse(now)
		return
	}
	c.answered()
	c.meters.refreshes.Inc()
	c.renewed(now, rooms, renewals)
	c.releaseIdle(ctx, now, rooms)
	c.readNodes(ctx, now)
	if c.cfg.Refreshed != nil {
		c.cfg.Refreshed()
	}
}

// renewed records the outcome of the room renewals of a refresh sent at sent: a room whose
// key names another node was lost (claimed elsewhere while this node was cut off).
func (c *Cluster) renewed(sent time.Time, rooms []string, renewals []*redis.Cmd) {
	var lost [][2]string
	c.mu.Lock()
	for i, r := range rooms {
		owner, err := renewals[i].Text()
		switch {
		case err != nil:
			continue
		case owner == c.cfg.Node:
			// The claim lapses TTL after the renewal was sent at the latest: Redis started
			// its own clock later.
			c.claims[r] = sent.Add(c.cfg.TTL)
		default:
			delete(c.claims, r)
			lost = append(lost, [2]string{r, owner})
		}
	}
	c.mu.Unlock()
	for _, l := range lost {
		c.meters.lost.Inc()
		c.log.Warn("cluster: a room of this node is owned by another node now (this node was cut from Redis past the TTL): its sessions here end",
			"room", l[0], "owner", l[1])
		if c.cfg.Lost != nil {
			c.cfg.Lost(l[0], l[1])
		}
	}
}

// releaseIdle gives up the claims of rooms that no longer have a publisher here, once the
// claim is a refresh old (a claim is made before its publisher's session exists).
func (c *Cluster) releaseIdle(ctx context.Context, now time.Time, published []string) {
	var idle []string
	c.mu.Lock()
	for r, until := range c.claims {
		if !slices.Contains(published, r) && until.Sub(now) < c.cfg.TTL-c.refresh/2 {
			idle = append(idle, r)
			delete(c.claims, r)
		}
	}
	c.mu.Unlock()
	if len(idle) == 0 {
		return
	}
	if _, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range idle {
			releaseScript.Eval(ctx, p, []string{roomKey(r)}, c.cfg.Node)
		}
		return nil
	}); err != nil {
		c.failed("release", err)
	}
}

// lapse forgets the claims whose lease has run out while Redis could not be reached:
// another node may own those rooms by now.
func (c *Cluster) lapse(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for r, until := range c.claims {
		if now.After(until) {
			delete(c.claims, r)
			c.log.Warn("cluster: this node's claim on a room lapsed while Redis was unreachable: its local sessions go on, another node may take the room",
				"room", r)
		}
	}
}

// readNodes reads the live nodes' records into the cache.
func (c *Cluster) readNodes(ctx context.Context, now time.Time) {
	nodes, err := liveNodes(ctx, c.rdb, now)
	if err != nil {
		c.failed("nodes", err)
		return
	}
	c.mu.Lock()
	c.nodes = nodes
	c.mu.Unlock()
}

// liveNodes reads the records of the nodes whose registration had not expired at now.
func liveNodes(ctx context.Context, rdb *redis.Client, now time.Time) (map[string]Node, error) {
	names, err := rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: nodesKey, Start: now.UnixMilli(), Stop: "+inf", ByScore: true}).Result()
	if err != nil {
		return nil, err
	}
	nodes := map[string]Node{}
	if len(names) == 0 {
		return nodes, nil
	}
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = nodeKey(n)
	}
	vals, err := rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired between the two reads
		}
		var n Node
		if json.Unmarshal([]byte(s), &n) == nil {
			nodes[n.Name] = n
		}
	}
	return nodes, nil
}

// Nodes returns the live nodes as of the last refresh, this one included, by name.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// node returns a live node's record: from the last refresh, else read now.
func (c *Cluster) node(ctx context.Context, name string) (Node, bool) {
	c.mu.Lock()
	n, ok := c.nodes[name]
	c.mu.Unlock()
	if ok {
		return n, true
	}
	s, err := c.rdb.Get(ctx, nodeKey(name)).Result()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			c.failed("node", err)
		}
		return Node{}, false
	}
	if json.Unmarshal([]byte(s), &n) != nil {
		return Node{}, false
	}
	return n, true
}

// LeastLoaded is the live node, other than this one and not draining, with the least load
// as of the last refresh; false if there is none.
func (c *Cluster) LeastLoaded() (Node, bool) {
	var best Node
	found := false
	for _, n := range c.Nodes() {
		if n.Name == c.cfg.Node || n.Draining {
			continue
		}
		if !found || n.score() < best.score() {
			best, found = n, true
		}
	}
	return best, found
}

// failed notes a failed exchange with Redis: the first failure of an outage is logged.
func (c *Cluster) failed(op string, err error) {
	c.meters.errors.Inc()
	c.up.Store(false)
	if !c.downLogged.Swap(true) {
		c.meters.outages.Inc()
		c.log.Warn("cluster: Redis unreachable: this node serves its own rooms and counts its own quotas until Redis answers again",
			"op", op, "err", err)
	}
}

// answered notes that Redis answered: after an outage this node has just registered again.
func (c *Cluster) answered() {
	c.up.Store(true)
	if c.downLogged.Swap(false) {
		c.log.Info("cluster: Redis answers again: this node is registered and has renewed its rooms", "node", c.cfg.Node)
	}
}

// checkName warns when a live record of this node's name belongs to another process: a
// restart within the TTL, or two nodes given one name.
func (c *Cluster) checkName() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := c.rdb.Get(ctx, nodeKey(c.cfg.Node)).Result()
	if err != nil {
		return
	}
	var n Node
	if json.Unmarshal([]byte(s), &n) == nil && n.Instance != c.instance {
		c.log.Warn("cluster: a live record of this node's name exists (a restart within the TTL, or two nodes with one name: each needs its own cluster.node)",
			"node", c.cfg.Node, "its_turn", n.TURN, "its_sfu", n.SFU, "updated", n.Updated)
	}
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newClient is a Redis client for url with the timeouts of a node: an exchange that does
// not answer within a second fails, and the caller decides without Redis.
func newClient(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	quietLibrary.Do(func() { redis.SetLogger(debugLogger{}) })
	opts.DialTimeout = time.Second
	opts.ReadTimeout = time.Second
	opts.WriteTimeout = time.Second
	opts.MaxRetries = 0 // a failed exchange is retried by the next refresh, or decided locally
	opts.PoolSize = 16
	opts.MinIdleConns = 1
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}

// redactedURL is a Redis URL without its password, for logs.
func redactedURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if at := strings.LastIndex(s, "@"); at > i {
			return s[:i+3] + "xxxxx" + s[at:]
		}
	}
	return s
}

// quietLibrary silences go-redis's own logger once: it prints every failed dial of its
// pool to standard error, while this package logs an outage once (see failed).
var quietLibrary sync.Once

type debugLogger struct{}

func (debugLogger) Printf(context.Context, string, ...any) {}
