package main

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/ferry-rtc/ferry/test/bench/benchproc"
)

// contention is the load of -contention: processes that each keep a CPU busy for the whole
// benchmark, so that every run of both servers competes with them alike. They are separate
// processes, not goroutines of this program, so that the load generators that run in it
// (alloc, idle, binding) keep their own share, and so that their CPU time can be read.
type contention struct {
	procs []*benchproc.Process
}

// busyLoop is a shell loop on a builtin: all user time, no system calls, no children.
const busyLoop = "while :; do :; done"

// startContention starts n busy processes, their output files in dir; with n = 0 it
// returns a contention without any, whose methods do nothing.
func startContention(n int, dir string) (*contention, error) {
	c := &contention{}
	for i := range n {
		name := fmt.Sprintf("contention-%d", i+1)
		p, err := benchproc.Start(name, exec.Command("sh", "-c", busyLoop), filepath.Join(dir, name+".out"))
		if err != nil {
			return nil, errors.Join(err, c.stop())
		}
		c.procs = append(c.procs, p)
	}
	return c, nil
}

// contentionMode names the mode of a run under contention, for its headings.
func contentionMode(n int) string { return "(under contention: " + busyProcesses(n) + ")" }

func busyProcesses(n int) string {
	if n == 1 {
		return "1 busy process"
	}
	return fmt.Sprintf("%d busy processes", n)
}

// cpuSeconds is the CPU time the busy processes have used so far. One that has exited is
// an error: the run would no longer be under the contention it reports.
func (c *contention) cpuSeconds() (float64, error) {
	var sum float64
	for _, p := range c.procs {
		cpu, err := benchproc.CPUTime(p.Pid())
		if err != nil {
			return 0, fmt.Errorf("contention process %d: %w", p.Pid(), err)
		}
		sum += cpu.Seconds()
	}
	return sum, nil
}

// stop stops every busy process and waits for it.
func (c *contention) stop() error {
	var errs []error
	for _, p := range c.procs {
		errs = append(errs, p.Stop())
	}
	c.procs = nil
	return errors.Join(errs...)
}
