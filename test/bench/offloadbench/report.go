package main

import (
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// spread formats a median with the smallest and largest values.
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "–"
	}
	if len(v) == 1 {
		return fmt.Sprintf(format, v[0])
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", median(v), slices.Min(v), slices.Max(v))
}

func (b *bench) report(elapsed time.Duration) {
	o := b.o
	kernel, _ := exec.Command("uname", "-r").Output()
	fmt.Printf("\noffloadbench: %d rounds, %s, Linux %s, %d cores; server on core %d, load on core %d; %s\n",
		o.rounds, runtime.Version(), strings.TrimSpace(string(kernel)), b.acct.ncpu, o.serverCPU, o.loadCPU, elapsed.Round(time.Second))
	if len(b.cpu) > 0 {
		b.reportCPU()
	}
	if len(b.latency) > 0 {
		b.reportLatency()
	}
	if len(b.rate) > 0 {
		b.reportRate()
	}
	if len(b.hook) > 0 {
		b.reportHook()
	}
}

func (b *bench) reportHook() {
	o := b.o
	fmt.Printf("\n### TC or XDP on veth: the same forwarder (IPv4 UDP from s0 out of s1) at each hook, %d-byte datagrams, %s a step; medians over %d rounds (min–max)\n\n",
		o.sizes[0]+4, o.rateStep, o.rounds)
	fmt.Println("| hook | p0 has XDP (NAPI) | s0's receive on the server core (RPS) | rate/s | all cores busy µs/datagram | server core busy % | load core busy % | loss % | other CPU s per round |")
	fmt.Println("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, v := range hookVariants {
		for _, rate := range o.hookRates {
			var per, srv, load, loss []float64
			var other []string
			for _, st := range b.hook {
				if st.hook == v.hook && st.peerXDP == v.peerXDP && st.rps == v.rps && st.rate == rate {
					u := st.u
					per = append(per, st.perMsg())
					srv = append(srv, 100*u.busy[o.serverCPU]/u.wall)
					load = append(load, 100*u.busy[o.loadCPU]/u.wall)
					loss = append(loss, st.lossPct())
					other = append(other, fmt.Sprintf("%.2f", u.otherAll))
				}
			}
			fmt.Printf("| %s | %v | %v | %d | %s | %s | %s | %s | %s |\n", v.hook, v.peerXDP, v.rps, rate, spread(per, "%.2f"),
				spread(srv, "%.0f"), spread(load, "%.0f"), spread(loss, "%.2f"), strings.Join(other, " / "))
		}
	}
}

func (b *bench) reportCPU() {
	o := b.o
	fmt.Printf("\n### CPU per message: runs (%d uclient clients × %d messages, -z 0, to turnutils_peer and back)\n\n", o.clients, o.msgs)
	fmt.Println("| size | round | try | server | sent | recv | loss % | wall s | machine-wide CPU s | server core CPU s (in no process) | server process CPU s | load processes CPU s | other CPU s, all cores (% of wall) | of it on the server core s |")
	fmt.Println("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range b.cpu {
		u := r.u
		fmt.Printf("| %d | %d | %d | %s | %d | %d | %.2f | %.2f | %.3f | %.3f (%.3f) | %.3f | %.3f | %.3f (%.1f %%) | %.3f |\n",
			r.size, r.round, r.try, r.server, r.sent, r.recv, r.lossPct(), u.wall, u.machine, u.serverCore, u.unowned[o.serverCPU],
			u.serverProc, u.loadProc, u.otherAll, 100*u.otherAll/u.wall, u.otherServer)
	}
	fmt.Printf("\n### CPU per message: medians over %d rounds (min–max), per message received back (relayed to the peer and back); ratios to coturn taken per round\n\n", o.rounds)
	fmt.Println("| size | server | machine-wide CPU µs/msg | vs coturn | server core CPU µs/msg | vs coturn | of it in no process µs/msg | server process CPU µs/msg | vs coturn | loss % |")
	fmt.Println("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, size := range o.sizes {
		byRound := func(name string, f func(cpuResult) float64) map[int]float64 {
			m := map[int]float64{}
			for _, r := range b.cpu {
				if r.size == size && r.server == name {
					m[r.round] = f(r)
				}
			}
			return m
		}
		values := func(m map[int]float64) []float64 {
			var v []float64
			for _, x := range m {
				v = append(v, x)
			}
			return v
		}
		ratios := func(name string, f func(cpuResult) float64) string {
			m, c := byRound(name, f), byRound("coturn", f)
			var v []float64
			for round, x := range m {
				if c[round] > 0 {
					v = append(v, x/c[round])
				}
			}
			return spread(v, "%.3f")
		}
		machine := func(r cpuResult) float64 { return r.perMsg(r.u.machine) }
		side := func(r cpuResult) float64 { return r.perMsg(r.u.serverCore) }
		proc := func(r cpuResult) float64 { return r.perMsg(r.u.serverProc) }
		soft := func(r cpuResult) float64 { return r.perMsg(r.u.unowned[o.serverCPU]) }
		loss := func(r cpuResult) float64 { return r.lossPct() }
		for _, name := range serverNames {
			col := func(f func(cpuResult) float64, format string) string { return spread(values(byRound(name, f)), format) }
			fmt.Printf("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", size, name,
				col(machine, "%.2f"), ratios(name, machine), col(side, "%.2f"), ratios(name, side),
				col(soft, "%.2f"), col(proc, "%.2f"), ratios(name, proc), col(loss, "%.2f"))
		}
	}
}

func (b *bench) reportLatency() {
	fmt.Printf("\n### Latency: medians over %d rounds (min–max) of each run's percentiles (pion/turn client, %d round trips of 200 bytes, one at a time, 1 ms apart)\n\n", b.o.rounds, b.o.pings)
	fmt.Println("| server | p50 µs | p99 µs | lost | p50 / p99 µs by round | other CPU s by round (% of wall) |")
	fmt.Println("| --- | ---: | ---: | ---: | --- | --- |")
	for _, name := range serverNames {
		var p50, p99 []float64
		var runs, others []string
		lost := 0
		for _, r := range b.latency {
			if r.server == name {
				p50 = append(p50, float64(r.p50.Microseconds()))
				p99 = append(p99, float64(r.p99.Microseconds()))
				lost += r.lost
				runs = append(runs, fmt.Sprintf("%d / %d", r.p50.Microseconds(), r.p99.Microseconds()))
				others = append(others, fmt.Sprintf("%.3f (%.1f %%)", r.u.otherAll, 100*r.u.otherAll/r.u.wall))
			}
		}
		fmt.Printf("| %s | %s | %s | %d | %s | %s |\n", name, spread(p50, "%.0f"), spread(p99, "%.0f"), lost,
			strings.Join(runs, ", "), strings.Join(others, ", "))
	}
}

func (b *bench) reportRate() {
	o := b.o
	fmt.Printf("\n### One core: rate steps (%d allocations, paced ChannelData to the peers and datagrams from them, half of the rate each way, %s a step; loss %% and the cores' busy %% in each round; a step in which other processes used more than %.0f %% of a core is taken again, up to %d tries)\n\n",
		o.rateConns, o.rateStep, 100*o.maxOther, o.tries)
	fmt.Println("| size | server | rate/s | loss % by round | server core busy % by round (server process, in no process, other processes) | load core busy % by round (other processes) |")
	fmt.Println("| ---: | --- | ---: | --- | --- | --- |")
	for _, size := range o.sizes {
		for _, name := range serverNames {
			for _, rate := range o.rates {
				var loss, busy, load []string
				for _, r := range b.rate {
					if r.size != size || r.server != name {
						continue
					}
					for _, st := range r.steps {
						if st.rate != rate {
							continue
						}
						l := fmt.Sprintf("%.2f", st.lossPct())
						if st.loadBound {
							l += fmt.Sprintf(" (load sent %.0f/s)", st.achieved())
						}
						if st.try > 1 {
							l += fmt.Sprintf(" (try %d)", st.try)
						}
						loss = append(loss, l)
						u, sc, lc := st.u, o.serverCPU, o.loadCPU
						busy = append(busy, fmt.Sprintf("%.0f (%.0f, %.0f, %.0f)", 100*u.busy[sc]/u.wall, 100*u.server[sc]/u.wall,
							100*u.unowned[sc]/u.wall, 100*u.others[sc]/u.wall))
						load = append(load, fmt.Sprintf("%.0f (%.0f)", 100*u.busy[lc]/u.wall, 100*u.others[lc]/u.wall))
					}
				}
				if len(loss) > 0 {
					fmt.Printf("| %d | %s | %d | %s | %s | %s |\n", size, name, rate, strings.Join(loss, " / "), strings.Join(busy, " / "), strings.Join(load, " / "))
				}
			}
		}
	}
	fmt.Printf("\n### One core: the highest rate relayed with at most %.0f %% loss, median over %d rounds (min–max)\n\n", maxLossPct, o.rounds)
	fmt.Println("| size | server | relayed messages/s | vs coturn | steps ended by |")
	fmt.Println("| ---: | --- | ---: | ---: | --- |")
	for _, size := range o.sizes {
		maxes := map[string][]float64{}
		ended := map[string][]string{}
		for _, r := range b.rate {
			if r.size == size {
				maxes[r.server] = append(maxes[r.server], float64(r.max))
				if r.loadBound {
					ended[r.server] = append(ended[r.server], "the load's core")
				} else {
					ended[r.server] = append(ended[r.server], "loss")
				}
			}
		}
		for _, name := range serverNames {
			c := median(maxes["coturn"])
			ratio := "–"
			if c > 0 {
				ratio = fmt.Sprintf("%.2f", median(maxes[name])/c)
			}
			fmt.Printf("| %d | %s | %s | %s | %s |\n", size, name, spread(maxes[name], "%.0f"), ratio, strings.Join(ended[name], ", "))
		}
	}
}
