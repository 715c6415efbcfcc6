// Command turnbench compares Ferry with Debian's coturn on one machine: the same
// turnutils_uclient relay loads, an allocation-rate load, the memory of idle allocations and
// STUN Binding throughput. Every run gets a fresh server process, the two servers take turns
// (coturn, Ferry, coturn, Ferry, ...) over several rounds and never run at once, and the
// server's CPU time and memory are read from /proc. It prints per-run tables, medians and
// Ferry/coturn ratios, plain and then as Markdown for BENCHMARKS.md.
//
// All traffic stays on 127.0.0.1. `make bench` runs it; it is a program, not a test, so that
// `go test ./...` never runs it:
//
//	go run ./test/bench/turnbench -ferry bin/ferry [-rounds 3] [-only uclient,alloc,idle,binding]
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
	"slices"
	"strings"
	"syscall"
	"time"
)

// host is the only address the benchmark uses: servers, relays and clients all live on it.
const host = "127.0.0.1"

// scenario is one load of a part; load drives it against a started server and returns the
// values of the part's metrics, in their order.
type scenario struct {
	name string
	load func(ctx context.Context, s *server) ([]float64, error)
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
	ferryBin       string
	rounds         int
	only           []string
	uclientTimeout time.Duration
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
	only := flag.String("only", "uclient,alloc,idle,binding", "comma-separated parts to run: uclient, alloc, idle, binding")
	flag.StringVar(&opts.ferryBin, "ferry", "bin/ferry", "path of the ferry binary to measure")
	flag.IntVar(&opts.rounds, "rounds", 3, "rounds; each round runs every scenario once against each server")
	flag.DurationVar(&opts.uclientTimeout, "uclient-timeout", 120*time.Second, "a turnutils_uclient run taking longer is killed and counted as failed")
	flag.Parse()
	if flag.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if opts.rounds < 1 {
		return opts, fmt.Errorf("-rounds %d: want at least 1", opts.rounds)
	}
	known := []string{"uclient", "alloc", "idle", "binding"}
	for name := range strings.SplitSeq(*only, ",") {
		if !slices.Contains(known, name) {
			return opts, fmt.Errorf("-only: unknown part %q (want some of %s)", name, strings.Join(known, ","))
		}
		opts.only = append(opts.only, name)
	}
	return opts, nil
}

func run(ctx context.Context, opts options) error {
	for _, tool := range []string{"turnserver", "turnutils_uclient"} {
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

	parts := selectParts(opts)
	started := time.Now()
	results := make(map[string][]result)
	for _, p := range parts {
		for _, sc := range p.scenarios {
			rs, err := runScenario(ctx, e, opts.rounds, p, sc)
			results[p.name] = append(results[p.name], rs...)
			if err != nil {
				// Interrupted: report what was measured, then fail.
				printReport(e, opts, parts, results, time.Since(started))
				return err
			}
		}
	}
	printReport(e, opts, parts, results, time.Since(started))
	return nil
}

// selectParts returns the parts named by -only, in the order of the full run.
func selectParts(opts options) []*part {
	all := []*part{uclientPart(opts.uclientTimeout), allocPart(), idlePart(), bindingPart()}
	var parts []*part
	for _, p := range all {
		if slices.Contains(opts.only, p.name) {
			parts = append(parts, p)
		}
	}
	return parts
}

// runScenario runs sc rounds times against each server in turn, a fresh server process
// per run. It stops early, with the context's error, when the run is interrupted.
func runScenario(ctx context.Context, e *env, rounds int, p *part, sc scenario) ([]result, error) {
	var results []result
	for round := 1; round <= rounds; round++ {
		for _, kind := range serverKinds {
			if err := ctx.Err(); err != nil {
				return results, fmt.Errorf("interrupted: %w", err)
			}
			if err := waitQuiet(ctx); err != nil {
				return results, fmt.Errorf("interrupted: %w", err)
			}
			began := time.Now()
			r := result{server: kind.name, scenario: sc.name, round: round}
			r.values, r.err = measure(ctx, e, kind, sc)
			results = append(results, r)
			fmt.Fprintf(os.Stderr, "%s %s round %d/%d %s: %s (%.0fs)\n",
				p.name, sc.name, round, rounds, kind.name, r.summary(p), time.Since(began).Seconds())
		}
	}
	return results, nil
}

// measure starts a fresh server of kind, runs the load against it and stops it, so that
// its peak RSS belongs to this run alone.
func measure(ctx context.Context, e *env, kind serverKind, sc scenario) ([]float64, error) {
	s, err := startServer(ctx, e, kind)
	if err != nil {
		return nil, err
	}
	values, err := sc.load(ctx, s)
	if stopErr := s.stop(); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	return values, err
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
