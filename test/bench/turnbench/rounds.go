package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// runScenario runs sc opts.rounds times against each server in turn, a fresh server
// process per run. It stops early, with the context's error, when the run is interrupted.
func runScenario(ctx context.Context, e *env, opts options, p *part, sc scenario) ([]result, error) {
	var results []result
	for round := 1; round <= opts.rounds; round++ {
		rs, err := runRound(ctx, e, opts, p, sc, round)
		results = append(results, rs...)
		if err != nil {
			return results, err
		}
	}
	return results, nil
}

// runRound runs one round of sc: each server once, in the usual order. When other
// processes took more than opts.maxOther of a run's wall time, the whole round runs again,
// both servers in the same order, up to opts.tries times in all, and the try whose noisier
// run was the quietest is kept, unless a try has a failed run: that one is kept. Rerunning the round rather than the noisy run alone keeps
// the two runs of a ratio back to back and in the same order, as in every other round: a
// lone rerun would pair runs taken minutes apart, and put one server's run after its rival's
// in some rounds only.
func runRound(ctx context.Context, e *env, opts options, p *part, sc scenario, round int) ([]result, error) {
	var kept []result
	keptNoise := 0.0
	try := 0
	for try < opts.tries {
		try++
		rs, err := runPair(ctx, e, opts, p, sc, round, try)
		if err != nil {
			// Interrupted: a complete earlier try is worth more than this partial one.
			if kept == nil {
				kept = rs
			}
			return withTries(kept, try), err
		}
		// A failure is a finding, not noise: its try is kept and ends the round, so that
		// no other try hides it.
		failed := slices.ContainsFunc(rs, func(r result) bool { return r.err != nil })
		noise := roundNoise(rs)
		if failed || kept == nil || noise < keptNoise {
			kept, keptNoise = rs, noise
		}
		if failed || noise <= opts.maxOther {
			break
		}
		if try < opts.tries {
			fmt.Fprintf(os.Stderr, "%s %s round %d: other processes took %.0f%% of a run's wall time, above %.0f%%: running the round again\n",
				p.name, sc.name, round, 100*noise, 100*opts.maxOther)
		}
	}
	return withTries(kept, try), nil
}

// withTries records in each result how many times its round ran.
func withTries(rs []result, tries int) []result {
	for i := range rs {
		rs[i].tries = tries
	}
	return rs
}

// runPair runs sc once against each server in turn. It stops early, with the context's
// error, when the run is interrupted.
func runPair(ctx context.Context, e *env, opts options, p *part, sc scenario, round, try int) ([]result, error) {
	var results []result
	for _, kind := range serverKinds {
		if err := ctx.Err(); err != nil {
			return results, fmt.Errorf("interrupted: %w", err)
		}
		if err := waitQuiet(ctx); err != nil {
			return results, fmt.Errorf("interrupted: %w", err)
		}
		began := time.Now()
		r := result{server: kind.name, scenario: sc.name, round: round}
		r.values, r.window, r.err = measure(ctx, e, kind, sc)
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "%s %s round %d/%d try %d/%d %s: %s (%.0fs)\n",
			p.name, sc.name, round, opts.rounds, try, opts.tries, kind.name, r.summary(p), time.Since(began).Seconds())
	}
	return results, nil
}

// roundNoise is the largest share of a run's wall time that other processes took, over
// the runs of a round; failed runs have no window and count as quiet.
func roundNoise(rs []result) float64 {
	noise := 0.0
	for _, r := range rs {
		if r.err == nil {
			noise = max(noise, r.window.otherShare())
		}
	}
	return noise
}

// measure starts a fresh server of kind, runs the load against it and stops it, so that
// its peak RSS belongs to this run alone.
func measure(ctx context.Context, e *env, kind serverKind, sc scenario) ([]float64, usage, error) {
	s, err := startServer(ctx, e, kind)
	if err != nil {
		return nil, usage{}, err
	}
	values, u, err := sc.load(ctx, s)
	if stopErr := s.stop(); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	return values, u, err
}
