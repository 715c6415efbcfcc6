package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-rtc/ferry/test/bench/benchproc"
)

// round is what one round measured.
type round struct {
	// exchange times by kind: "whep owner", "whep redirected", "whip owner", "whip redirected"
	times map[string][]time.Duration
	// Redis commands per node per second, from INFO commandstats and from the nodes' metrics
	restRedis, restMetrics float64
	joinRedis, joinMetrics float64
	joinsDone, joinsFailed int
	joinCommands           map[string]float64 // per node per second, by command, under joins
	otherCPU               time.Duration      // other processes' CPU during the round
	wall                   time.Duration
}

var kinds = []string{"whep owner", "whep redirected", "whip owner", "whip redirected"}

func (r round) summary() string {
	var b strings.Builder
	for _, k := range kinds {
		fmt.Fprintf(&b, "%s %s, ", k, ms(median(r.times[k])))
	}
	fmt.Fprintf(&b, "Redis cmd/s/node rest %.2f, joins %.1f (%d joins, %d failed), other CPU %.1f s of %.0f s",
		r.restRedis, r.joinRedis, r.joinsDone, r.joinsFailed, r.otherCPU.Seconds(), r.wall.Seconds())
	return b.String()
}

func measureRound(ctx context.Context, o options) (r round, err error) {
	w, err := startWorld(ctx, o)
	if err != nil {
		return r, err
	}
	defer w.stop()
	start, err := cpuSnapshot(w.pids())
	if err != nil {
		return r, err
	}
	pub, err := publishOn(ctx, w.nodes[0])
	if err != nil {
		return r, err
	}
	defer pub.Close()
	if r.times, err = exchanges(ctx, o, w); err != nil {
		return r, err
	}
	if r.restRedis, r.restMetrics, _, err = traffic(ctx, w, o.rest, nil); err != nil {
		return r, err
	}
	joins := func(ctx context.Context) { r.joinsDone, r.joinsFailed = join(ctx, o, w) }
	if r.joinRedis, r.joinMetrics, r.joinCommands, err = traffic(ctx, w, o.joinsFor, joins); err != nil {
		return r, err
	}
	end, err := cpuSnapshot(w.pids())
	if err != nil {
		return r, err
	}
	r.wall = end.wall.Sub(start.wall)
	r.otherCPU = otherCPU(start, end)
	return r, nil
}

// exchanges times o.exchanges exchanges of each kind, the kinds in turn, a redirected one
// going to b and c alternately.
func exchanges(ctx context.Context, o options, w *world) (map[string][]time.Duration, error) {
	times := map[string][]time.Duration{}
	a := w.nodes[0]
	for i := -2; i < o.exchanges; i++ { // two rounds of warm-up: connections, caches
		other := w.nodes[1+(i+2)%2]
		urls := map[string]string{
			"whep owner":      a.sfuURL + "/whep/" + room,
			"whep redirected": other.sfuURL + "/whep/" + room,
			"whip owner":      fmt.Sprintf("%s/whip/%s?name=p%d", a.sfuURL, room, i+2),
			"whip redirected": fmt.Sprintf("%s/whip/%s?name=r%d", other.sfuURL, room, i+2),
		}
		order := slices.Clone(kinds)
		if i%2 != 0 {
			slices.Reverse(order)
		}
		for _, k := range order {
			took, err := timedExchange(ctx, urls[k], strings.HasPrefix(k, "whip"))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if i >= 0 {
				times[k] = append(times[k], took)
			}
		}
	}
	return times, nil
}

// traffic measures the Redis commands per node per second over d while load runs (nil:
// at rest), from redis-server's INFO commandstats (less its own INFO calls) and from the
// nodes' ferry_cluster_redis_commands_total; and, by command, per node per second.
func traffic(ctx context.Context, w *world, d time.Duration, load func(context.Context)) (float64, float64, map[string]float64, error) {
	before, err := w.commandStats(ctx)
	if err != nil {
		return 0, 0, nil, err
	}
	m0, err := nodeCommands(w)
	if err != nil {
		return 0, 0, nil, err
	}
	start := time.Now()
	if load == nil {
		err = sleep(ctx, d)
	} else {
		lctx, cancel := context.WithTimeout(ctx, d)
		load(lctx)
		cancel()
	}
	if err != nil {
		return 0, 0, nil, err
	}
	after, err := w.commandStats(ctx)
	if err != nil {
		return 0, 0, nil, err
	}
	m1, err := nodeCommands(w)
	if err != nil {
		return 0, 0, nil, err
	}
	secs := time.Since(start).Seconds()
	nodes := float64(len(w.nodes))
	by := map[string]float64{}
	total := 0.0
	for cmd, n := range after {
		if cmd == "info" {
			continue
		}
		if delta := float64(n - before[cmd]); delta > 0 {
			by[cmd] = delta / nodes / secs
			total += delta
		}
	}
	return total / nodes / secs, (m1 - m0) / nodes / secs, by, nil
}

// nodeCommands is the sum of the nodes' ferry_cluster_redis_commands_total.
func nodeCommands(w *world) (float64, error) {
	sum := 0.0
	for _, n := range w.nodes {
		v, err := n.metric("ferry_cluster_redis_commands_total")
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// join sends WHEP joins at o.joinRate a second, to the three nodes in turn, until ctx is
// done, each with the same offer (what the SFU does with it is not measured here), and
// ends each session at once. It returns the joins made and failed.
func join(ctx context.Context, o options, w *world) (done, failed int) {
	pc, err := newPC(false)
	if err != nil {
		return 0, 1
	}
	defer pc.Close()
	sdp, err := offer(pc)
	if err != nil {
		return 0, 1
	}
	bearer := token(false)
	var mu sync.Mutex
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(o.joinRate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return done, failed
		case <-tick.C:
		}
		url := w.nodes[i%len(w.nodes)].sfuURL + "/whep/" + room
		wg.Go(func() {
			// Its own deadline: the joins' window ending must not cut one short.
			jctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, resource, err := exchange(jctx, url, bearer, sdp)
			if err == nil {
				err = end(jctx, resource, bearer)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if failed == 0 {
					fmt.Fprintln(os.Stderr, "clusterbench: a join failed:", err)
				}
				failed++
			} else {
				done++
			}
		})
	}
}

// snapshot is the wall clock and the CPU time so far of every process not in ours, by pid.
type snapshot struct {
	wall   time.Time
	others map[string]time.Duration
}

// cpuSnapshot reads the CPU time of every process not in ours (/proc/PID/stat).
func cpuSnapshot(ours []int) (snapshot, error) {
	s := snapshot{wall: time.Now(), others: map[string]time.Duration{}}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return s, err
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fields, err := benchproc.Stat(d.Name())
		if err != nil {
			continue // exited meanwhile
		}
		t, err := benchproc.StatTime(fields, 14, 15)
		if err != nil {
			continue
		}
		if !slices.Contains(ours, pid) {
			s.others[d.Name()] = t
		}
	}
	return s, nil
}

// otherCPU is the CPU time other processes alive at both snapshots used between them.
func otherCPU(a, b snapshot) time.Duration {
	var d time.Duration
	for pid, t := range b.others {
		if t0, ok := a.others[pid]; ok && t > t0 {
			d += t - t0
		}
	}
	return d
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// sortedKeys is m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
