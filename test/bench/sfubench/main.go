// Command sfubench measures Ferry's SFU under load on one machine. It starts bin/ferry with
// its TURN listener and SFU on 127.0.0.1, publishes one synthetic stream over WHIP (VP8 at
// 2 Mbit/s, 30 frames a second, and Opus in 20 ms frames), attaches N WHEP subscribers
// (pion, in this process) and, once they all receive, measures for a fixed time: Ferry's
// CPU time per RTP packet forwarded, the subscribers' loss, and the latency the path adds.
// Subscribers connect directly or relayed through Ferry's own TURN server, for each N
// given; every run gets a fresh ferry process. It prints a Markdown table.
//
// All traffic stays on 127.0.0.1. `make bench` runs it; it is a program, not a test, so
// that `go test ./...` never runs it:
//
//	go run ./test/bench/sfubench -ferry bin/ferry [-n 10,50,100] [-modes direct,relay] [-duration 20s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// host is the only address the benchmark uses: Ferry, its relays and every client.
const host = "127.0.0.1"

// room is the SFU room of every run.
const room = "bench"

type options struct {
	ferryBin       string
	counts         []int
	modes          []string
	duration       time.Duration
	warmup         time.Duration
	connectTimeout time.Duration
	bitrate        int
	parallel       int
	pprof          string // "" or a loopback address for Ferry's profiler ([debug] pprof)
}

func main() {
	os.Exit(mainStatus())
}

// mainStatus is main with deferred clean-up: ferry and the temporary directory go before
// the exit status is returned.
func mainStatus() int {
	opts, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sfubench:", err)
		return 2
	}
	// Ctrl-C cancels the run: ferry is stopped and what was measured so far is printed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "sfubench:", err)
		return 1
	}
	return 0
}

func parseFlags() (options, error) {
	var opts options
	counts := flag.String("n", "10,50,100", "comma-separated subscriber counts")
	modes := flag.String("modes", "direct,relay", "comma-separated modes: direct, relay (subscribers through Ferry's TURN)")
	flag.StringVar(&opts.ferryBin, "ferry", "bin/ferry", "path of the ferry binary to measure (make build)")
	flag.DurationVar(&opts.duration, "duration", 20*time.Second, "measured time of each run, once every subscriber receives")
	flag.DurationVar(&opts.warmup, "warmup", 2*time.Second, "time between the last subscriber's first packet and the measurement")
	flag.DurationVar(&opts.connectTimeout, "connect-timeout", 90*time.Second, "time the subscribers of a run have to connect")
	flag.IntVar(&opts.bitrate, "bitrate", 2_000_000, "video bit rate of the publisher, bits per second")
	flag.IntVar(&opts.parallel, "parallel", 8, "subscribers connecting at once")
	flag.StringVar(&opts.pprof, "pprof", "", "loopback address where Ferry serves its profiler during each run (e.g. 127.0.0.1:6060), to profile a run with go tool pprof")
	flag.Parse()
	if flag.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	for s := range strings.SplitSeq(*counts, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return opts, fmt.Errorf("-n: %q is not a positive count", s)
		}
		opts.counts = append(opts.counts, n)
	}
	for m := range strings.SplitSeq(*modes, ",") {
		if m != modeDirect && m != modeRelay {
			return opts, fmt.Errorf("-modes: unknown mode %q (want direct or relay)", m)
		}
		opts.modes = append(opts.modes, m)
	}
	switch {
	case opts.duration <= 0 || opts.warmup < 0 || opts.connectTimeout <= 0:
		return opts, errors.New("-duration and -connect-timeout must be positive, -warmup not negative")
	case opts.bitrate < 100_000:
		return opts, fmt.Errorf("-bitrate %d: want at least 100000", opts.bitrate)
	case opts.parallel < 1:
		return opts, fmt.Errorf("-parallel %d: want at least 1", opts.parallel)
	}
	return opts, nil
}

func run(ctx context.Context, opts options) error {
	ferryBin, err := filepath.Abs(opts.ferryBin)
	if err != nil {
		return fmt.Errorf("ferry binary: %w", err)
	}
	if _, err := os.Stat(ferryBin); err != nil {
		return fmt.Errorf("ferry binary (build it with make build): %w", err)
	}
	dir, err := os.MkdirTemp("", "sfubench-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	started := time.Now()
	var results []result
	defer func() { printReport(os.Stdout, opts, results, time.Since(started)) }()
	// For each N the modes run back to back, so that their ratio compares neighbours.
	for _, n := range opts.counts {
		for _, mode := range opts.modes {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("interrupted: %w", err)
			}
			runDir := filepath.Join(dir, fmt.Sprintf("%s-%d", mode, n))
			if err := os.Mkdir(runDir, 0o700); err != nil {
				return fmt.Errorf("run directory: %w", err)
			}
			began := time.Now()
			r := measure(ctx, opts, ferryBin, runDir, mode, n)
			results = append(results, r)
			fmt.Fprintf(os.Stderr, "%s N=%d: %s (%.0fs)\n", mode, n, r.summary(), time.Since(began).Seconds())
		}
	}
	if slices.ContainsFunc(results, func(r result) bool { return r.err != nil }) {
		return errors.New("some runs failed")
	}
	return nil
}
