package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// printReport prints the rounds as Markdown: the exchanges' medians with the spread of the
// rounds' medians, the redirect's cost, and the Redis traffic.
func printReport(w io.Writer, o options, rounds []round, took time.Duration) {
	fmt.Fprintf(w, "clusterbench: 3 nodes and redis-server on %s, cluster.ttl %s, %d rounds of %d exchanges of each kind, %s at rest, %d joins/s for %s (%s)\n\n",
		host, o.ttl, len(rounds), o.exchanges, o.rest, o.joinRate, o.joinsFor, took.Round(time.Second))
	fmt.Fprintln(w, "| exchange | to the owner: median (min–max of rounds) | redirected (307, followed) | added by the redirect |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: |")
	for _, method := range []string{"whip", "whep"} {
		owner := roundMedians(rounds, func(r round) time.Duration { return median(r.times[method+" owner"]) })
		redir := roundMedians(rounds, func(r round) time.Duration { return median(r.times[method+" redirected"]) })
		added := roundMedians(rounds, func(r round) time.Duration {
			return median(r.times[method+" redirected"]) - median(r.times[method+" owner"])
		})
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", method, spread(owner), spread(redir), spread(added))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Redis commands per node per second | INFO commandstats | nodes' ferry_cluster_redis_commands_total |")
	fmt.Fprintln(w, "| --- | ---: | ---: |")
	row := func(name string, redis, metric func(round) float64) {
		fmt.Fprintf(w, "| %s | %s | %s |\n", name, spreadF(rounds, redis), spreadF(rounds, metric))
	}
	row("at rest (one room)", func(r round) float64 { return r.restRedis }, func(r round) float64 { return r.restMetrics })
	row(fmt.Sprintf("%d WHEP joins/s", o.joinRate), func(r round) float64 { return r.joinRedis }, func(r round) float64 { return r.joinMetrics })
	fmt.Fprintln(w)
	last := rounds[len(rounds)-1]
	fmt.Fprint(w, "Under joins, by command (last round, per node per second):")
	for _, cmd := range sortedKeys(last.joinCommands) {
		fmt.Fprintf(w, " %s %.1f;", cmd, last.joinCommands[cmd])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	for i, r := range rounds {
		fmt.Fprintf(w, "- round %d: %s\n", i+1, r.summary())
	}
}

func roundMedians(rounds []round, f func(round) time.Duration) []time.Duration {
	var out []time.Duration
	for _, r := range rounds {
		out = append(out, f(r))
	}
	return out
}

func spread(ds []time.Duration) string {
	return fmt.Sprintf("%s (%s–%s)", ms(median(ds)), ms(slices.Min(ds)), ms(slices.Max(ds)))
}

func spreadF(rounds []round, f func(round) float64) string {
	var vs []float64
	for _, r := range rounds {
		vs = append(vs, f(r))
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return fmt.Sprintf("%.2f (%.2f–%.2f)", s[len(s)/2], s[0], s[len(s)-1])
}
