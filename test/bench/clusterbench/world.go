package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferry-rtc/ferry/test/bench/benchproc"
)

const (
	tokenSecret = "clusterbench-token-secret-0123456789"
	turnSecret  = "clusterbench-turn-secret-0123456789"
)

// node is one ferry of the cluster.
type node struct {
	name    string
	proc    *benchproc.Process
	sfuURL  string // http://127.0.0.1:port
	metrics string // 127.0.0.1:port
}

// world is redis-server and three nodes, a (which owns the room), b and c.
type world struct {
	dir   string
	redis *benchproc.Process
	rdb   *redis.Client
	nodes []*node
}

// startWorld starts redis-server and the three ferries in a new directory, and waits until
// every node sees the three.
func startWorld(ctx context.Context, o options) (*world, error) {
	dir, err := os.MkdirTemp("", "clusterbench-")
	if err != nil {
		return nil, err
	}
	w := &world{dir: dir}
	if err := w.startRedis(ctx); err != nil {
		w.stop()
		return nil, err
	}
	for _, name := range []string{"a", "b", "c"} {
		n, err := w.startNode(ctx, o, name)
		if err != nil {
			w.stop()
			return nil, err
		}
		w.nodes = append(w.nodes, n)
	}
	for _, n := range w.nodes {
		if err := n.proc.WaitReady(ctx, "three nodes in its registry", func() error {
			v, err := n.metric("ferry_cluster_nodes")
			if err == nil && v != 3 {
				err = fmt.Errorf("%v nodes", v)
			}
			return err
		}); err != nil {
			w.stop()
			return nil, err
		}
	}
	return w, nil
}

func (w *world) startRedis(ctx context.Context) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server: %w (apt-get install -y redis-server)", err)
	}
	port, err := benchproc.FreePort(host)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "--bind", host, "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", w.dir, "--daemonize", "no")
	if w.redis, err = benchproc.Start("redis-server", cmd, filepath.Join(w.dir, "redis.log")); err != nil {
		return err
	}
	w.rdb = redis.NewClient(&redis.Options{Addr: net.JoinHostPort(host, strconv.Itoa(port))})
	return w.redis.WaitReady(ctx, "PING", func() error { return w.rdb.Ping(ctx).Err() })
}

func (w *world) redisURL() string { return "redis://" + w.rdb.Options().Addr + "/0" }

func (w *world) startNode(ctx context.Context, o options, name string) (*node, error) {
	var ports [3]int
	for i := range ports {
		p, err := benchproc.FreePort(host)
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	n := &node{name: name, sfuURL: fmt.Sprintf("http://%s:%d", host, ports[1]), metrics: fmt.Sprintf("%s:%d", host, ports[2])}
	// Each node a relay range of its own (they share the address), below Linux's ephemeral
	// range, where FreePort finds the listeners' ports.
	minPort := 20000 + 1000*int(name[0]-'a')
	f := benchproc.FerrySFU{Host: host, TURNPort: ports[0], HTTPPort: ports[1], MinRelay: minPort, MaxRelay: minPort + 999,
		TURNSecret: turnSecret, TokenSecret: tokenSecret, Metrics: n.metrics}
	config := f.Config() + fmt.Sprintf("\n[cluster]\nredis = %q\nnode = %q\nttl = %q\n", w.redisURL(), name, o.ttl.String())
	path := filepath.Join(w.dir, name+".toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return nil, err
	}
	proc, err := benchproc.Start("ferry "+name, exec.Command(o.ferryBin, "serve", "--config", path), filepath.Join(w.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	n.proc = proc
	return n, nil
}

// metric is the value of one series of the node's /metrics.
func (n *node) metric(series string) (float64, error) {
	resp, err := http.Get("http://" + n.metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", n.name, series)
}

// pids are the processes of the world.
func (w *world) pids() []int {
	pids := []int{os.Getpid(), w.redis.Pid()}
	for _, n := range w.nodes {
		pids = append(pids, n.proc.Pid())
	}
	return pids
}

func (w *world) stop() {
	for _, n := range w.nodes {
		_ = n.proc.Stop()
	}
	if w.rdb != nil {
		_ = w.rdb.Close()
	}
	if w.redis != nil {
		_ = w.redis.Stop()
	}
	_ = os.RemoveAll(w.dir)
}

// commandStats is INFO commandstats: calls by command.
func (w *world) commandStats(ctx context.Context) (map[string]int64, error) {
	info, err := w.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	calls := map[string]int64{}
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("INFO commandstats %q: %w", line, err)
		}
		calls[name] = n
	}
	return calls, nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
