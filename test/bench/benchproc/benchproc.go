// Package benchproc is what the benchmark tools (turnbench, sfubench, clusterbench) share
// about the server they measure: starting it as a child process that dies with them,
// waiting until it answers, stopping it, the tail of its output to explain a failure, a
// free port for it, its CPU time read from /proc/PID/stat, and the config of the Ferry the
// SFU benchmarks run. Linux only.
package benchproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a running server process.
type Process struct {
	name string
	cmd  *exec.Cmd
	// logs are the files the process writes to: its stdout and stderr first.
	logs   []string
	exited chan struct{}
	// waitErr is the process's exit status, set before exited is closed.
	waitErr error
}

// Start starts cmd with its stdout and stderr to the file output; logs are the other files
// it logs to, if any, for OutputTail. name names the process in errors. The process dies
// with this program even if the program is killed without a chance to clean up.
func Start(name string, cmd *exec.Cmd, output string, logs ...string) (*Process, error) {
	out, err := os.Create(output)
	if err != nil {
		return nil, fmt.Errorf("%s output file: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	_ = out.Close() // the process has its own copy
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, logs: append([]string{output}, logs...), exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// WaitReady calls probe every 50 ms until it succeeds, the process exits, ctx is done or
// 15 seconds have passed. answer names what probe waits for, in the error of the last case.
// If the process is not ready, WaitReady stops it and returns why, with the tail of its
// output.
func (p *Process) WaitReady(ctx context.Context, answer string, probe func() error) error {
	if err := p.waitReady(ctx, answer, probe); err != nil {
		_ = p.Stop()
		return fmt.Errorf("%s did not start: %w\n%s", p.name, err, p.OutputTail())
	}
	return nil
}

func (p *Process) waitReady(ctx context.Context, answer string, probe func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := probe()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited: %v", p.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s in 15s: %w", answer, err)
		}
	}
}

// Stop ends the process with SIGTERM and kills it if it has not exited after 10 seconds.
// It is an error, with the tail of its output, if the process had exited before.
func (p *Process) Stop() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s had exited before the end of the run: %v\n%s", p.name, p.waitErr, p.OutputTail())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop on SIGTERM in 10s: killed", p.name)
	}
}

// OutputTail is the end of each of the process's logs, to explain a failure.
func (p *Process) OutputTail() string {
	var b strings.Builder
	for _, path := range p.logs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s:\n%s", filepath.Base(path), Tail(data, 15))
	}
	return b.String()
}

// Tail returns the last n lines of out.
func Tail(out []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}

// FreePort returns a port of host free for both UDP and TCP.
func FreePort(host string) (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp4", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp4", net.JoinHostPort(host, strconv.Itoa(port)))
		_ = ln.Close()
		if err == nil {
			_ = pc.Close()
			return port, nil
		}
	}
	return 0, errors.New("free port: none free for both UDP and TCP in 50 tries")
}

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat (sysconf(_SC_CLK_TCK)):
// 100 on every Linux ABI, whatever frequency the kernel ticks at.
const clockTicks = 100

// CPUTime is the CPU time, user and system, that process pid has used so far: the sum over
// all its threads, which is what /proc/PID/stat reports for a process.
func CPUTime(pid int) (time.Duration, error) {
	fields, err := Stat(strconv.Itoa(pid))
	if err != nil {
		return 0, fmt.Errorf("CPU time: %w", err)
	}
	cpu, err := StatTime(fields, 14, 15) // utime, stime
	if err != nil {
		return 0, fmt.Errorf("CPU time: %w", err)
	}
	return cpu, nil
}

// Stat returns the fields of /proc/PID/stat that follow the command name, up to field 17
// (cstime) at least: the first is field 3 of proc(5). The name is in parentheses and may
// hold spaces, hence the split after its closing parenthesis.
func Stat(pid string) ([]string, error) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, err
	}
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return nil, fmt.Errorf("malformed /proc/%s/stat", pid)
	}
	fields := strings.Fields(string(data[end+1:]))
	if len(fields) < 17-3+1 {
		return nil, fmt.Errorf("short /proc/%s/stat", pid)
	}
	return fields, nil
}

// StatTime sums fields of Stat, numbered as in proc(5), that are times in clock ticks.
func StatTime(fields []string, numbers ...int) (time.Duration, error) {
	var ticks int64
	for _, n := range numbers {
		if n < 3 || n-3 >= len(fields) {
			return 0, fmt.Errorf("no field %d in /proc/PID/stat", n)
		}
		t, err := strconv.ParseInt(fields[n-3], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += t
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
