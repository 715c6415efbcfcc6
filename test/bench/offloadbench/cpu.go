package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
)

// cpuResult is one turnutils_uclient run.
type cpuResult struct {
	server           string
	size, round, try int
	sent, recv       int
	u                usage
	quietBefore      float64 // CPUs other processes used in the second before the run
	noisy            bool
}

func (r cpuResult) lossPct() float64 { return 100 * float64(r.sent-r.recv) / float64(r.sent) }

// perMsg is seconds per message received back, in µs.
func (r cpuResult) perMsg(s float64) float64 { return s / float64(r.recv) * 1e6 }

// cpuRounds runs the uclient load through every server, in rounds, each size in turn;
// a run whose other processes took more than maxOther of its wall time is taken again (the
// whole round of that size, so that the servers of a round stay side by side).
func (b *bench) cpuRounds() error {
	for _, size := range b.o.sizes {
		for round := 1; round <= b.o.rounds; round++ {
			var kept []cpuResult
			for try := 1; try <= b.o.tries; try++ {
				var rs []cpuResult
				noisy := false
				for _, s := range b.all {
					r, err := b.cpuRun(s, size)
					if err != nil && try < b.o.tries {
						// Seen once in 30 runs: uclient stopped at a 400 to its ChannelBind.
						fmt.Fprintf(os.Stderr, "cpu %s %d B round %d try %d failed, running the round again: %v\n", s.name, size, round, try, err)
						noisy = true
						break
					}
					if err != nil {
						return fmt.Errorf("cpu %s %d B round %d: %w", s.name, size, round, err)
					}
					r.round, r.try = round, try
					r.noisy = r.u.otherAll > b.o.maxOther*r.u.wall
					noisy = noisy || r.noisy
					fmt.Fprintf(os.Stderr, "cpu %d B round %d try %d %-16s sent %d recv %d loss %.2f%% wall %.1fs machine %.3fs server core %.3fs (in no process %.3fs) server process %.3fs load %.3fs other %.3fs (%.1f%% of wall; %.3fs on the server core)\n",
						size, round, try, s.name, r.sent, r.recv, r.lossPct(), r.u.wall, r.u.machine, r.u.serverCore, r.u.unowned[b.o.serverCPU],
						r.u.serverProc, r.u.loadProc, r.u.otherAll, 100*r.u.otherAll/r.u.wall, r.u.otherServer)
					rs = append(rs, r)
				}
				kept = rs
				if !noisy {
					break
				}
				fmt.Fprintf(os.Stderr, "cpu %d B round %d: other processes above %.0f%% of a run's wall time: running the round again\n", size, round, 100*b.o.maxOther)
			}
			b.cpu = append(b.cpu, kept...)
		}
	}
	return nil
}

var totals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)

func (b *bench) cpuRun(s server, size int) (cpuResult, error) {
	r := cpuResult{server: s.name, size: size}
	run, err := b.start(s, b.runDir(s, fmt.Sprintf("cpu%d", size)), true)
	if err != nil {
		return r, err
	}
	defer run.stop()
	r.quietBefore = b.acct.waitQuiet()
	r0, err := b.acct.read()
	if err != nil {
		return r, err
	}
	uc := exec.Command("turnutils_uclient", "-e", peerIP, "-r", "3480", "-u", user, "-w", pass, "-p", "3478",
		"-m", strconv.Itoa(b.o.clients), "-n", strconv.Itoa(b.o.msgs), "-l", strconv.Itoa(size), "-z", "0", srvIP)
	out, err := uc.CombinedOutput()
	r1, rerr := b.acct.read()
	if err != nil {
		return r, fmt.Errorf("uclient: %v: %s", err, tail(out))
	}
	if rerr != nil {
		return r, rerr
	}
	t := totals.FindAllSubmatch(out, -1)
	if t == nil {
		return r, fmt.Errorf("uclient printed no totals: %s", tail(out))
	}
	r.sent, _ = strconv.Atoi(string(t[len(t)-1][1]))
	r.recv, _ = strconv.Atoi(string(t[len(t)-1][2]))
	if r.recv == 0 {
		return r, fmt.Errorf("nothing came back: %s", tail(out))
	}
	r.u = b.acct.window(r0, r1)
	return r, nil
}
