package main

// How the CPU time of a run is split between the server, the load and everything else.
//
// A relay's kernel work (receiving a datagram, the eBPF program, forwarding it) is charged
// to no server process, and on veth it does not even run where the server runs: a veth
// transmit hands the packet to the receiving end's backlog on the sending CPU and the
// receive runs right away in the sender's system call, so without care the server's kernel
// work would be charged to the load generators' processes. Hence the two sides:
//
//   - the server's core runs the server process (taskset) and receives everything that
//     reaches s0 and s1 (RPS moves the receive to its backlog): from the moment a packet
//     reaches the server's interfaces until it is handed to c0 or p0, every cycle is
//     spent there, in user space, in system calls or in softirq, the eBPF program's
//     included;
//   - the load's core runs turnutils_uclient, turnutils_peer and this program, and receives
//     everything that reaches c0 and p0.
//
// Every figure comes from a clock, not from tick samples: this kernel accounts CPU time by
// ticks (no IRQ_TIME_ACCOUNTING, NO_HZ idle), and /proc/stat's busy columns miss most of a
// bursty light load that runs between ticks (measured: 0.11 s of busy ticks against 0.56 s
// that the processes of the same run were charged, which made "busy less the load" go
// negative). So:
//
//   - a core's busy time is the wall time less its idle time, the residency of its cpuidle
//     states (µs, measured on entry and exit of each state; interrupts and softirqs served
//     while the core idles are outside it, so they count as busy);
//   - the load's and the server's CPU time, per core, come from cpuacct cgroups of their own
//     (ns of scheduler run time, threads and exited children included): this program and
//     everything it starts is in "load", the server is moved into "server" as it starts;
//   - other processes' time on a core is the root cgroup's (all tasks) less ours less the
//     core's ksoftirqd (which runs the receive work of that side; /proc/PID/schedstat).
//
// The server's core: its busy time less other processes and our load's on it. Machine-wide: all cores'
// busy time less the load's processes and less other processes. Softirq work that the
// kernel did while another process was running is charged to that process, and so left
// out: one more reason to wait for a quiet machine before each run.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	cpuacctRoot = "/sys/fs/cgroup/cpuacct"
	cpuidleDir  = "/sys/devices/system/cpu"
)

type accountant struct {
	ncpu         int
	load, server int
	groups       string // our cpuacct cgroups' parent
	ksoftirqd    []int  // the PID of each core's ksoftirqd
	quietBusy    float64
	quietWait    time.Duration
}

// newAccountant makes the load's and the server's cgroups and moves this program into the
// load's; close moves it back and removes them.
func newAccountant(o options) (*accountant, error) {
	a := &accountant{load: o.loadCPU, server: o.serverCPU, quietBusy: o.quietBusy, quietWait: o.quietWait}
	root, err := readPercpu(cpuacctRoot)
	if err != nil {
		return nil, fmt.Errorf("this tool needs the cgroup v1 cpuacct controller at %s: %w", cpuacctRoot, err)
	}
	a.ncpu = len(root)
	if _, err := readIdle(a.ncpu); err != nil {
		return nil, fmt.Errorf("this tool needs cpuidle residency times: %w", err)
	}
	a.ksoftirqd = make([]int, a.ncpu)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		if c, ok := strings.CutPrefix(strings.TrimSpace(string(comm)), "ksoftirqd/"); ok {
			if n, err := strconv.Atoi(c); err == nil && n < a.ncpu {
				a.ksoftirqd[n], _ = strconv.Atoi(e.Name())
			}
		}
	}
	a.groups = filepath.Join(cpuacctRoot, fmt.Sprintf("offloadbench-%d", os.Getpid()))
	for _, d := range []string{a.groups, a.group("load"), a.group("server")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			a.close()
			return nil, err
		}
	}
	if err := a.join("load", os.Getpid()); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *accountant) group(name string) string { return filepath.Join(a.groups, name) }

// join moves a process (all its threads) into one of our cgroups.
func (a *accountant) join(group string, pid int) error {
	p := filepath.Join(cpuacctRoot, "cgroup.procs")
	if group != "" {
		p = filepath.Join(a.group(group), "cgroup.procs")
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("moving %d into cgroup %q: %w", pid, group, err)
	}
	return nil
}

func (a *accountant) close() {
	_ = a.join("", os.Getpid())
	for _, d := range []string{a.group("load"), a.group("server"), a.groups} {
		_ = os.Remove(d)
	}
}

// reading is the cumulative counters at one moment, per core, in seconds.
type reading struct {
	t                         time.Time
	idle, all, load, srv, ksi []float64
}

func readPercpu(dir string) ([]float64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage_percpu"))
	if err != nil {
		return nil, err
	}
	var v []float64
	for _, f := range strings.Fields(string(b)) {
		ns, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		v = append(v, ns/1e9)
	}
	return v, nil
}

// readIdle is each core's time in its cpuidle states. A state's time grows when the core
// leaves it, so a core idle at the moment of reading would lack the idle period under
// way: the reading thread runs on each core in turn, which wakes it (the few µs of that
// visit are charged to the load's cgroup, which is not the server's).
func readIdle(ncpu int) ([]float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var home unix.CPUSet
	if err := unix.SchedGetaffinity(0, &home); err != nil {
		return nil, err
	}
	defer func() { _ = unix.SchedSetaffinity(0, &home) }()
	v := make([]float64, ncpu)
	for c := range ncpu {
		var here unix.CPUSet
		here.Set(c)
		if err := unix.SchedSetaffinity(0, &here); err != nil {
			return nil, fmt.Errorf("running on core %d: %w", c, err)
		}
		states, _ := filepath.Glob(fmt.Sprintf("%s/cpu%d/cpuidle/state*/time", cpuidleDir, c))
		if len(states) == 0 {
			return nil, fmt.Errorf("no %s/cpu%d/cpuidle/state*/time", cpuidleDir, c)
		}
		for _, s := range states {
			b, err := os.ReadFile(s)
			if err != nil {
				return nil, err
			}
			us, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s, err)
			}
			v[c] += us / 1e6
		}
	}
	return v, nil
}

// schedRuntime is a task's run time in seconds (/proc/PID/schedstat), 0 if it is gone.
func schedRuntime(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	ns, _ := strconv.ParseFloat(f[0], 64)
	return ns / 1e9
}

func (a *accountant) read() (reading, error) {
	r := reading{t: time.Now(), ksi: make([]float64, a.ncpu)}
	var errs [4]error
	r.idle, errs[0] = readIdle(a.ncpu)
	r.all, errs[1] = readPercpu(cpuacctRoot)
	r.load, errs[2] = readPercpu(a.group("load"))
	r.srv, errs[3] = readPercpu(a.group("server"))
	if err := errors.Join(errs[:]...); err != nil {
		return r, err
	}
	for c, pid := range a.ksoftirqd {
		if pid != 0 {
			r.ksi[c] = schedRuntime(pid)
		}
	}
	return r, nil
}

// usage is the CPU seconds of one window, per core.
type usage struct {
	wall                  float64
	busy                  []float64 // wall less idle
	load, server          []float64 // our cgroups
	others                []float64 // all tasks less ours and ksoftirqd
	unowned               []float64 // busy time in no task (interrupts and softirqs on an idle core) and in ksoftirqd
	loadProc, serverProc  float64   // all cores
	serverCore, machine   float64
	otherAll, otherServer float64
}

// window is the usage from r0 to r1.
func (a *accountant) window(r0, r1 reading) usage {
	u := usage{wall: r1.t.Sub(r0.t).Seconds()}
	d := func(v0, v1 []float64, c int) float64 { return v1[c] - v0[c] }
	for c := range a.ncpu {
		busy := u.wall - d(r0.idle, r1.idle, c)
		load, srv, ksi := d(r0.load, r1.load, c), d(r0.srv, r1.srv, c), d(r0.ksi, r1.ksi, c)
		all := d(r0.all, r1.all, c)
		others := all - load - srv - ksi
		u.busy = append(u.busy, busy)
		u.load = append(u.load, load)
		u.server = append(u.server, srv)
		u.others = append(u.others, others)
		u.unowned = append(u.unowned, busy-all+ksi)
		u.loadProc += load
		u.serverProc += srv
		u.otherAll += others
		u.machine += busy - load - others
		if c == a.server {
			u.serverCore = busy - others - load
			u.otherServer = others
		}
	}
	return u
}

// waitQuiet waits until other processes use less than quietBusy CPUs over a second, or
// quietWait has passed; it returns what they used over the last second.
func (a *accountant) waitQuiet() float64 {
	deadline := time.Now().Add(a.quietWait)
	for {
		r0, err := a.read()
		if err != nil {
			return 0
		}
		time.Sleep(time.Second)
		r1, err := a.read()
		if err != nil {
			return 0
		}
		u := a.window(r0, r1)
		busy := u.otherAll / u.wall
		if busy < a.quietBusy {
			return busy
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "WARNING: other processes use %.2f CPUs; running anyway after waiting %s\n", busy, a.quietWait)
			return busy
		}
	}
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}
