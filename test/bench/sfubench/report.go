package main

import (
	"fmt"
	"io"
	"runtime"
	"time"
)

// printReport writes the results as Markdown: one row per run, then the relayed/direct
// ratio of Ferry's CPU time per packet for each N, then what the figures mean.
func printReport(w io.Writer, opts options, results []result, took time.Duration) {
	fmt.Fprintf(w, "## SFU load (sfubench)\n\n")
	fmt.Fprintf(w, "%s, %d CPUs, %s; %s measured per run after %s of warm-up; total %s.\n\n",
		time.Now().Format("2006-01-02"), runtime.NumCPU(), opts.ferryBin, opts.duration, opts.warmup, took.Round(time.Second))
	fmt.Fprintln(w, "| mode | N | connected | packets forwarded | packets/s | ferry CPU | ferry µs/packet | loss % (all / worst subscriber) | latency p50 | latency p99 | sfubench CPU |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "| %s | %d | %d | failed: %s | | | | | | | |\n", r.mode, r.n, r.connected, r.err)
			continue
		}
		wall := r.wall.Seconds()
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.0f | %.0f%% | %.2f | %.3f / %.3f | %s | %s | %.0f%% |\n",
			r.mode, r.n, r.connected, r.forwarded, float64(r.forwarded)/wall, 100*r.ferryCPU.Seconds()/wall,
			r.usPerPacket(), r.lossPercent(), 100*r.worstLoss, ms(r.p50), ms(r.p99), 100*r.benchCPU.Seconds()/wall)
	}
	printRatios(w, opts, results)
	fmt.Fprintf(w, `
- One publisher (WHIP, direct): VP8 at %d bit/s, %d frames/s, a keyframe every %s (and on
  PLI) %d times an interframe's size, payloads up to %d bytes; Opus, %s frames of %d bytes.
- N WHEP subscribers (pion, in sfubench) receive video and audio, without NACKs; relay: each
  one relay-only through Ferry's TURN (UDP), with the credentials of a WHEP answer's Link
  headers. Every run has a fresh ferry process; all traffic is on 127.0.0.1.
- packets forwarded: distinct RTP packets the subscribers received in the window (not
  Ferry's counters, whose metrics endpoint is off). ferry CPU: its utime+stime from
  /proc/PID/stat over the window, as a share of one CPU; µs/packet divides it by the
  packets forwarded (receiving the publisher's packets and RTCP included; relay: the TURN
  relaying too).
- loss: by sequence numbers, per subscriber and track. latency: publisher send to
  subscriber receive, from a send time in the last 8 bytes of each payload (one clock),
  so pion's send and receive paths count too.
- sfubench shares the machine: its CPU column shows how much it took from Ferry.
`, opts.bitrate, fps, keyframeEvery, keyframeScale, maxPayload, opusFrame, opusBytes)
}

// printRatios writes, for each N measured in both modes, Ferry's CPU time per packet
// relayed over direct.
func printRatios(w io.Writer, opts options, results []result) {
	find := func(mode string, n int) (result, bool) {
		for _, r := range results {
			if r.mode == mode && r.n == n && r.err == nil && r.forwarded > 0 {
				return r, true
			}
		}
		return result{}, false
	}
	header := false
	for _, n := range opts.counts {
		direct, ok1 := find(modeDirect, n)
		relay, ok2 := find(modeRelay, n)
		if !ok1 || !ok2 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\n| N | direct µs/packet | relay µs/packet | CPU relay/direct |")
			fmt.Fprintln(w, "| ---: | ---: | ---: | ---: |")
			header = true
		}
		fmt.Fprintf(w, "| %d | %.2f | %.2f | %.2f |\n", n, direct.usPerPacket(), relay.usPerPacket(),
			relay.usPerPacket()/direct.usPerPacket())
	}
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
