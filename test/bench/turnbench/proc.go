package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-rtc/ferry/test/bench/benchproc"
)

// cpuSeconds is the CPU time, user and system, that the server has used so far, over all
// its threads.
func (s *server) cpuSeconds() (float64, error) {
	cpu, err := benchproc.CPUTime(s.pid())
	if err != nil {
		return 0, fmt.Errorf("%s %w", s.name, err)
	}
	return cpu.Seconds(), nil
}

// othersSeconds is the CPU time used so far by every process of the machine but this
// program and its children (the server, turnutils_uclient, turnutils_peer, the contention
// processes), kernel threads included. Each process counts with the children it has waited
// for, so that a short-lived process (a compiler run by go build) still counts once its
// parent has reaped it.
func othersSeconds() (float64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("processes: %w", err)
	}
	self := strconv.Itoa(os.Getpid())
	var sum time.Duration
	for _, e := range entries {
		pid := e.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		fields, err := benchproc.Stat(pid)
		if err != nil || fields[4-3] == self { // field 4: the parent's PID
			continue // exited since ReadDir, or our child
		}
		cpu, err := benchproc.StatTime(fields, 14, 15, 16, 17) // utime, stime, cutime, cstime
		if err != nil {
			return 0, fmt.Errorf("process %s: %w", pid, err)
		}
		sum += cpu
	}
	return sum.Seconds(), nil
}

// peakRSSMiB is the server's peak resident set (VmHWM): since every run has a fresh
// process, the peak of this run, start-up included.
func (s *server) peakRSSMiB() (float64, error) {
	kib, err := s.statusKiB("VmHWM")
	return kib / 1024, err
}

// rssKiB is the server's current resident set (VmRSS).
func (s *server) rssKiB() (float64, error) {
	return s.statusKiB("VmRSS")
}

// statusKiB reads a "Key:  N kB" line of /proc/PID/status.
func (s *server) statusKiB(key string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.pid()))
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", s.name, key, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		value, ok := strings.CutPrefix(sc.Text(), key+":")
		if !ok {
			continue
		}
		kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", s.name, key, err)
		}
		return kib, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s %s: %w", s.name, key, err)
	}
	return 0, fmt.Errorf("%s %s: not in /proc/%d/status", s.name, key, s.pid())
}

// udpRcvbufErrors is the machine's count of UDP datagrams dropped because a socket's receive
// buffer was full (RcvbufErrors in /proc/net/snmp). Only one server runs at a time, so its
// growth over a run is the datagrams the server or the load's own sockets could not take in
// time: it tells where lost messages went.
func udpRcvbufErrors() (float64, error) {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("UDP counters: %w", err)
	}
	// The Udp section is a line of names followed by a line of values.
	var names []string
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i, name := range names {
			if name == "RcvbufErrors" && i < len(fields) {
				return strconv.ParseFloat(fields[i], 64)
			}
		}
	}
	return 0, errors.New("UDP counters: no Udp RcvbufErrors in /proc/net/snmp")
}

// serverDrops sums the drops counters of the UDP sockets the server holds: the datagrams
// the kernel dropped because the server did not read them in time. The process is fresh,
// so these are the drops of this run, on the sockets still open.
func (s *server) serverDrops() (float64, error) {
	drops, err := socketDrops(s.pid())
	if err != nil {
		return 0, fmt.Errorf("%s %w", s.name, err)
	}
	return drops, nil
}

// socketDrops sums the drops counters (last column of /proc/net/udp) of the UDP sockets
// that process pid holds.
func socketDrops(pid int) (float64, error) {
	inodes, err := socketInodes(pid)
	if err != nil {
		return 0, err
	}
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, fmt.Errorf("UDP sockets: %w", err)
	}
	const inode, drops = 9, 12 // columns of /proc/net/udp
	var sum float64
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) <= drops || !inodes[fields[inode]] {
			continue
		}
		n, err := strconv.ParseFloat(fields[drops], 64)
		if err != nil {
			return 0, fmt.Errorf("UDP socket drops: %w", err)
		}
		sum += n
	}
	return sum, nil
}

// socketInodes returns the inodes of the sockets process pid has open.
func socketInodes(pid int) (map[string]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sockets: %w", err)
	}
	inodes := make(map[string]bool)
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	return inodes, nil
}

// othersBusy is the CPU time, in CPU-seconds per second, that the processes of
// othersSeconds use over period.
func othersBusy(ctx context.Context, period time.Duration) (float64, error) {
	before, err := othersSeconds()
	if err != nil {
		return 0, err
	}
	select {
	case <-time.After(period):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	after, err := othersSeconds()
	if err != nil {
		return 0, err
	}
	return (after - before) / period.Seconds(), nil
}

// usage is what a load cost, over its measured window.
type usage struct {
	wall float64
	// cpu is the server's CPU seconds.
	cpu float64
	// other is the CPU seconds of the other processes (othersSeconds): work that competed
	// with the run and skews it.
	other float64
	// contention is the CPU seconds of the -contention processes: the competition the run
	// was meant to have.
	contention float64
	// udpDrops are the UDP datagrams dropped on full receive buffers, on the whole machine;
	// serverDrops those of them on the server's own sockets.
	udpDrops, serverDrops float64
}

// otherShare is the CPU time of other processes as a share of the wall time: 1 is a whole
// CPU taken from the run all along.
func (u usage) otherShare() float64 {
	if u.wall <= 0 {
		return 0
	}
	return u.other / u.wall
}

// counters are the cumulative readings that a meter takes before and after a load.
type counters struct {
	server, others, contention, udpDrops float64
}

func readCounters(s *server) (counters, error) {
	var c counters
	var err error
	if c.server, err = s.cpuSeconds(); err != nil {
		return c, err
	}
	if c.others, err = othersSeconds(); err != nil {
		return c, err
	}
	if c.contention, err = s.busy.cpuSeconds(); err != nil {
		return c, err
	}
	c.udpDrops, err = udpRcvbufErrors()
	return c, err
}

// meter measures the usage of one load.
type meter struct {
	s     *server
	start counters
	t0    time.Time
}

func startMeter(s *server) (meter, error) {
	c, err := readCounters(s)
	return meter{s: s, start: c, t0: time.Now()}, err
}

// stop returns the usage since startMeter.
func (m meter) stop() (usage, error) {
	wall := time.Since(m.t0).Seconds()
	c, err := readCounters(m.s)
	if err != nil {
		return usage{}, err
	}
	u := usage{
		wall:       wall,
		cpu:        c.server - m.start.server,
		other:      c.others - m.start.others,
		contention: c.contention - m.start.contention,
		udpDrops:   c.udpDrops - m.start.udpDrops,
	}
	u.serverDrops, err = m.s.serverDrops()
	return u, err
}

// stopPeak is stop, and the server's peak RSS in MiB (peakRSSMiB) after it.
func (m meter) stopPeak() (u usage, peak float64, err error) {
	if u, err = m.stop(); err != nil {
		return u, 0, err
	}
	peak, err = m.s.peakRSSMiB()
	return u, peak, err
}
