// Package procs sets how many Ps (GOMAXPROCS) the Go scheduler runs Ferry with: a fixed
// number, or one P while the process is lightly loaded and all of them once it is busy.
//
// Why one P at light load: with two or more Ps, every goroutine the packet path readies
// while another P is idle makes the runtime wake a spinning thread, which steals the
// goroutine or finds nothing and parks again. At a few percent of a core that churn is a
// large part of the SFU's CPU per forwarded packet (one P measured about 15 % cheaper at
// 10 subscribers, BENCHMARKS.md). A busy TURN relay needs every core, so the controller
// hands them back as soon as the one P fills.
package procs

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

const (
	// tick is the measuring window: short, so that a surge waits at most about two windows
	// (one to fill, one to be seen) on the single P.
	tick = 100 * time.Millisecond
	// raiseAt is the load, in cores, at which one P is taken as full: a P busy 70 % of a
	// window already queues the goroutines readied behind the running one (queueing delay
	// grows steeply past that), and a single P cannot show much more than one core.
	raiseAt = 0.7
	// lowerBelow is the load under which all Ps go back to one. Well under raiseAt: the same
	// work costs more CPU with several Ps (the wake-up churn above), so a load just under
	// raiseAt at one P reads above it with all of them; with the gap it does not flap.
	lowerBelow = 0.35
	// quietWindows is how many windows in a row must stay under lowerBelow, 5 s: a bursty
	// load (calls starting and ending) keeps its Ps instead of paying a change per burst.
	quietWindows = int(5 * time.Second / tick)
)

// Options are how the process asked for its Ps.
type Options struct {
	// Fixed is [server] procs: 0 is "auto" (the controller), n >= 1 sets GOMAXPROCS to n once.
	Fixed int
	// Env is the GOMAXPROCS environment variable; when set the operator chose and Ferry
	// changes nothing.
	Env     string
	Log     *slog.Logger
	Metrics *metrics.Set
}

// Controller owns the goroutine that adapts GOMAXPROCS; it is nil-safe to Stop.
type Controller struct {
	log     *slog.Logger
	changes *metrics.Counter
	stop    chan struct{}
	done    chan struct{}
}

// mode is what Start does with the Ps.
type mode int

const (
	leave mode = iota // the environment chose, or there is one P to start with
	fixed             // set Options.Fixed once
	adapt             // run the controller
)

// plan decides the mode from the options and the Ps the runtime chose by default (its
// cgroup-aware default, before any change of ours).
func plan(o Options, most int) mode {
	switch {
	case o.Env != "":
		return leave
	case o.Fixed > 0:
		return fixed
	case most <= 1:
		return leave
	}
	return adapt
}

// Start applies o and, in auto mode, starts the controller, which begins at one P. It
// registers ferry_runtime_procs and ferry_runtime_procs_changes_total in o.Metrics.
func Start(o Options) *Controller {
	most := runtime.GOMAXPROCS(0)
	c := &Controller{log: o.Log, changes: o.Metrics.NewCounter("ferry_runtime_procs_changes_total")}
	o.Metrics.NewGauge("ferry_runtime_procs", func() float64 { return float64(runtime.GOMAXPROCS(0)) })
	switch plan(o, most) {
	case leave:
		if o.Env != "" {
			o.Log.Info("GOMAXPROCS is set in the environment: server.procs is not applied", "gomaxprocs", most)
		}
		return c
	case fixed:
		runtime.GOMAXPROCS(o.Fixed)
		o.Log.Info("GOMAXPROCS fixed by server.procs", "procs", o.Fixed)
		return c
	}
	if _, ok := CPUTime(); !ok {
		o.Log.Info("process CPU time cannot be read here: server.procs \"auto\" keeps every P", "procs", most)
		return c
	}
	c.stop, c.done = make(chan struct{}), make(chan struct{})
	c.set(most, 1, 0)
	go c.run(most)
	return c
}

// Stop ends the controller's goroutine and waits for it. The Ps stay as they are.
func (c *Controller) Stop() {
	if c == nil || c.stop == nil {
		return
	}
	close(c.stop)
	<-c.done
}

// run measures the process's CPU use each tick and applies decide.
func (c *Controller) run(most int) {
	defer close(c.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	cur, quiet := 1, 0
	lastCPU, _ := CPUTime()
	lastWall := time.Now()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			used, _ := CPUTime()
			busy := (used - lastCPU).Seconds() / now.Sub(lastWall).Seconds()
			lastCPU, lastWall = used, now
			var next int
			next, quiet = decide(cur, most, busy, quiet)
			if next != cur {
				c.set(cur, next, busy)
				cur = next
			}
		}
	}
}

// set changes GOMAXPROCS from cur to next, counted and logged at debug: under a bursty load
// it may happen every few seconds.
func (c *Controller) set(cur, next int, busy float64) {
	runtime.GOMAXPROCS(next)
	c.changes.Inc()
	c.log.Debug("GOMAXPROCS changed", "from", cur, "to", next, "busy_cores", busy)
}

// decide is the controller's rule, a pure function of its state: given the Ps in use (cur),
// the most it may use, the load of the window just ended in cores, and how many windows in
// a row before it were quiet, it returns the Ps to use next and the new quiet count. One
// busy window raises to most at once; only quietWindows quiet windows in a row lower to one.
func decide(cur, most int, busy float64, quiet int) (next, quietNow int) {
	if cur < most {
		if busy >= raiseAt {
			return most, 0
		}
		return cur, 0
	}
	if busy >= lowerBelow {
		return cur, 0
	}
	if quiet+1 >= quietWindows {
		return 1, 0
	}
	return cur, quiet + 1
}

// MetricsHelp is the HELP text of the families Start registers.
func MetricsHelp() map[string]string {
	return map[string]string{
		"ferry_runtime_procs":               "Ps the Go scheduler runs with (GOMAXPROCS); server.procs \"auto\" moves it between 1 and all.",
		"ferry_runtime_procs_changes_total": "Changes of GOMAXPROCS by server.procs \"auto\".",
	}
}
