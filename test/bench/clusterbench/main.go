// Command clusterbench measures what a Ferry cluster costs on one machine: three ferry
// processes and one redis-server on 127.0.0.1. It reports
//
//   - the time of a WHIP and of a WHEP exchange (POST of the offer until the 201 with the
//     answer) sent to the room's owner, and sent to another node that answers 307 to the
//     owner (the client follows it), alternating the two, in rounds;
//   - the commands each node sends to Redis per second at rest (one published room) and
//     under a given rate of WHEP joins spread over the three nodes, from redis-server's
//     INFO commandstats and from each node's ferry_cluster_redis_commands_total.
//
// Each round reports the CPU that other processes used meanwhile ("other CPU": the
// machine's busy time less this tool's, the three ferries' and redis-server's). It prints
// Markdown. All traffic stays on 127.0.0.1; it is a program, not a test:
//
//	go run ./test/bench/clusterbench -ferry bin/ferry [-rounds 3] [-exchanges 30] [-rest 20s] [-joins 100] [-joins-for 10s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// host is the only address the benchmark uses.
const host = "127.0.0.1"

// room is the room the publisher claims on node a.
const room = "bench"

type options struct {
	ferryBin  string
	rounds    int
	exchanges int
	rest      time.Duration
	joinRate  int
	joinsFor  time.Duration
	ttl       time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.ferryBin, "ferry", "bin/ferry", "the ferry binary")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each starts fresh processes")
	flag.IntVar(&o.exchanges, "exchanges", 30, "WHIP and WHEP exchanges of each kind (owner, redirected) per round")
	flag.DurationVar(&o.rest, "rest", 20*time.Second, "window of the Redis traffic at rest")
	flag.IntVar(&o.joinRate, "joins", 100, "WHEP joins per second for the traffic under load")
	flag.DurationVar(&o.joinsFor, "joins-for", 10*time.Second, "how long the joins go on")
	flag.DurationVar(&o.ttl, "ttl", 10*time.Second, "cluster.ttl of the nodes (they refresh every ttl/3)")
	flag.Parse()
	if o.rounds < 1 || o.exchanges < 1 || o.joinRate < 1 {
		fmt.Fprintln(os.Stderr, "clusterbench: -rounds, -exchanges and -joins must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if _, err := os.Stat(o.ferryBin); err != nil {
		return fmt.Errorf("ferry binary: %w (make build)", err)
	}
	var rounds []round
	start := time.Now()
	for i := range o.rounds {
		r, err := measureRound(ctx, o)
		if err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
		fmt.Fprintf(os.Stderr, "round %d: %s\n", i+1, r.summary())
		rounds = append(rounds, r)
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
	}
	printReport(os.Stdout, o, rounds, time.Since(start))
	return nil
}
