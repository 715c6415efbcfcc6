// Command turnbench compares Ferry with Debian's coturn on one machine: the same
// turnutils_uclient relay loads, client to client and to an external echo peer
// (turnutils_peer), an allocation-rate load, the memory of idle allocations and STUN Binding
// throughput. Every run gets a fresh server process, the two servers take turns (coturn,
// Ferry, coturn, Ferry, ...) over several rounds and never run at once, and the server's CPU
// time and memory are read from /proc. A round in which other processes took more than a
// share of a run's wall time is run again. It prints per-run tables, medians and
// Ferry/coturn ratios, plain and then as Markdown for BENCHMARKS.md; with -contention the
// runs compete with busy processes, and the headings say so.
//
// All traffic stays on 127.0.0.1. `make bench` runs it; it is a program, not a test, so that
// `go test ./...` never runs it:
//
//	go run ./test/bench/turnbench -ferry bin/ferry [-rounds 3] [-only uclient,peer,alloc,idle,binding]
//	    [-max-other 0.1] [-tries 3] [-contention N]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// host is the only address the benchmark uses: servers, relays and clients all live on it.
const host = "127.0.0.1"

// scenario is one load of a part; load drives it against a started server and returns the
// values of the part's metrics, in their order, and the usage of its measured window.
type scenario struct {
	name string
	load func(ctx context.Context, s *server) ([]float64, usage, error)
}

// part is a family of scenarios measured with the same metrics, selected by name with -only.
type part struct {
	name    string
	title   string
	metrics []metric
	// key names the metric whose Ferry/coturn ratio sums the part up.
	key            string
	higherIsBetter bool
	scenarios      []scenario
	// notes describe the load (command lines, sizes) under the part's tables.
	notes []string
}

type options struct {
	ferryBin string
	rounds   int
	// parts are the parts and scenarios -only selects, in the order of the full run.
	parts          []*part
	uclientTimeout time.Duration
	// maxOther is the share of a run's wall time that other processes may use before its
	// round is run again, up to tries times in all.
	maxOther float64
	tries    int
	// contention is the number of busy processes that compete with every run.
	contention int
}

func main() {
	os.Exit(mainStatus())
}

// mainStatus is main with deferred clean-up: the servers and the temporary directory go
// before the exit status is returned.
func mainStatus() int {
	opts, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "turnbench:", err)
		return 2
	}
	// Ctrl-C cancels the run: the current load is killed, the server stopped, and what was
	// measured so far is still printed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "turnbench:", err)
		return 1
	}
	return 0
}

func parseFlags() (options, error) {
	var opts options
	only := flag.String("only", "uclient,peer,alloc,idle,binding",
		"comma-separated parts (uclient, peer, alloc, idle, binding) or scenarios (e.g. channeldata-200B-peer) to run")
	flag.StringVar(&opts.ferryBin, "ferry", "bin/ferry", "path of the ferry binary to measure")
	flag.IntVar(&opts.rounds, "rounds", 3, "rounds; each round runs every scenario once against each server")
	flag.DurationVar(&opts.uclientTimeout, "uclient-timeout", 120*time.Second, "a turnutils_uclient run taking longer is killed and counted as failed")
	flag.Float64Var(&opts.maxOther, "max-other", 0.1, "a round is run again when a run's other CPU exceeds this share of its wall time")
	flag.IntVar(&opts.tries, "tries", 3, "tries of a round at most, the first included; 1 never runs a round again")
	flag.IntVar(&opts.contention, "contention", 0, "busy processes (one CPU each) that compete with every run; 0 for none")
	flag.Parse()
	if flag.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if opts.rounds < 1 {
		return opts, fmt.Errorf("-rounds %d: want at least 1", opts.rounds)
	}
	if opts.maxOther <= 0 {
		return opts, fmt.Errorf("-max-other %g: want a share above 0", opts.maxOther)
	}
	if opts.tries < 1 {
		return opts, fmt.Errorf("-tries %d: want at least 1", opts.tries)
	}
	// More busy processes than a few per CPU add nothing but a longer run.
	if limit := 4 * runtime.NumCPU(); opts.contention < 0 || opts.contention > limit {
		return opts, fmt.Errorf("-contention %d: want 0 to %d", opts.contention, limit)
	}
	var err error
	opts.parts, err = selectParts(allParts(opts), strings.Split(*only, ","))
	return opts, err
}

// run measures every selected scenario and prints the report, also when it is
// interrupted; the contention processes and the temporary directory go before it returns.
func run(ctx context.Context, opts options) (err error) {
	for _, tool := range []string{"turnserver", "turnutils_uclient", "turnutils_peer"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install -y coturn): %w", tool, err)
		}
	}
	ferryBin, err := filepath.Abs(opts.ferryBin)
	if err != nil {
		return fmt.Errorf("ferry binary: %w", err)
	}
	if _, err := os.Stat(ferryBin); err != nil {
		return fmt.Errorf("ferry binary (build it with make build): %w", err)
	}
	warnStrayTurnservers()

	dir, err := os.MkdirTemp("", "turnbench-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	e, err := newEnv(ctx, ferryBin, dir)
	if err != nil {
		return err
	}
	if e.busy, err = startContention(opts.contention, dir); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, e.busy.stop()) }()

	started := time.Now()
	results := make(map[string][]result)
	for _, p := range opts.parts {
		for _, sc := range p.scenarios {
			rs, err := runScenario(ctx, e, opts, p, sc)
			results[p.name] = append(results[p.name], rs...)
			if err != nil {
				// Interrupted: report what was measured, then fail.
				printReport(e, opts, results, time.Since(started))
				return err
			}
		}
	}
	printReport(e, opts, results, time.Since(started))
	return nil
}

// allParts are every part of the full run, in its order.
func allParts(opts options) []*part {
	parts := []*part{uclientPart(opts.uclientTimeout), peerPart(opts.uclientTimeout), allocPart(), idlePart(), bindingPart()}
	if opts.contention > 0 {
		// Tables of a run under contention are pasted beside those of a quiet one: each
		// says which it is.
		for _, p := range parts {
			p.title += " " + contentionMode(opts.contention)
		}
	}
	return parts
}

// selectParts keeps the parts named in only, whole, and the scenarios named in only, each
// in its part; the order stays that of all.
func selectParts(all []*part, only []string) ([]*part, error) {
	var known []string
	for _, p := range all {
		known = append(known, p.name)
		for _, sc := range p.scenarios {
			known = append(known, sc.name)
		}
	}
	for _, name := range only {
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("-only: unknown part or scenario %q (want some of %s)", name, strings.Join(known, ","))
		}
	}
	var parts []*part
	for _, p := range all {
		if slices.Contains(only, p.name) {
			parts = append(parts, p)
			continue
		}
		picked := *p
		picked.scenarios = slices.DeleteFunc(slices.Clone(p.scenarios), func(sc scenario) bool {
			return !slices.Contains(only, sc.name)
		})
		if len(picked.scenarios) > 0 {
			parts = append(parts, &picked)
		}
	}
	return parts, nil
}

// Other work on the machine competes with the run for the two CPUs and skews it, so each
// run waits, for a while, until the machine is quiet.
const (
	quietBusy = 0.1 // CPU-seconds per second used by others, at most
	quietWait = 30 * time.Second
)

// waitQuiet waits until the CPU time used by other processes over a second falls below
// quietBusy, or quietWait has passed; it returns only the context's error.
func waitQuiet(ctx context.Context) error {
	deadline := time.Now().Add(quietWait)
	for {
		busy, err := othersBusy(ctx, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "WARNING: cannot tell whether the machine is quiet: %v\n", err)
			return nil
		}
		if busy < quietBusy {
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "WARNING: other processes use %.2f CPUs; running anyway after waiting %s\n", busy, quietWait)
			return nil
		}
	}
}

// warnStrayTurnservers warns about turnserver processes this run did not start: they share
// the CPUs and would skew every figure. They are not ours to kill.
func warnStrayTurnservers() {
	out, err := exec.Command("pgrep", "-x", "turnserver").Output()
	if err == nil && len(out) > 0 {
		fmt.Fprintf(os.Stderr, "WARNING: turnserver is already running (pids %s); its CPU use skews the results\n",
			strings.Join(strings.Fields(string(out)), " "))
	}
}
