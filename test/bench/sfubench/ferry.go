package main

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

const (
	// tokenSecret signs the SFU access tokens the benchmark mints: Ferry's
	// sfu.token_secret.
	tokenSecret = "sfubench-token-secret-0123456789"
	// turnSecret is the TURN REST secret of the credentials in the SFU's Link headers.
	turnSecret = "sfubench-turn-secret"
	// The relay range lies below Linux's ephemeral ports (32768 and up), where the
	// benchmark's own sockets are bound, so that no client socket holds a relay port.
	minRelayPort = 10000
	maxRelayPort = 19999
)

// ferryConfig is Ferry with its TURN listener and SFU on 127.0.0.1 and nothing else: no
// metrics or admin endpoint, no self-test, no quotas or rate limits, and a drain that ends
// at once.
func ferryConfig(turnPort, httpPort int) string {
	return fmt.Sprintf(`[server]
drain_timeout = "0s"

[[listen]]
proto = "udp"
addr = "%[1]s:%[2]d"

[relay]
bind_ip = %[1]q
public_ip = %[1]q
min_port = %[3]d
max_port = %[4]d
allow_peers = ["%[1]s/32"]

[auth]
users_file = ""
secrets = [%[5]q]

[limits]
allocations_per_user = 0
allocations_total = 0
unauthenticated_per_ip_rate = 0

[sfu]
enabled = true
http = "%[1]s:%[6]d"
token_secret = %[7]q
self_test = false

[metrics]
listen = ""

[admin]
listen = ""

[log]
level = "warn"
`, host, turnPort, minRelayPort, maxRelayPort, turnSecret, httpPort, tokenSecret)
}

// ferry is a running ferry process.
type ferry struct {
	cmd     *exec.Cmd
	sfuURL  string // http://127.0.0.1:port
	output  string // file of its stdout and stderr
	exited  chan struct{}
	waitErr error // the exit status, set before exited is closed
}

// startFerry starts bin in its own directory under dir and waits until its SFU answers.
func startFerry(ctx context.Context, bin, dir string) (*ferry, error) {
	turnPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "ferry.toml")
	if err := os.WriteFile(config, []byte(ferryConfig(turnPort, httpPort)), 0o600); err != nil {
		return nil, fmt.Errorf("ferry config: %w", err)
	}
	f := &ferry{sfuURL: "http://" + net.JoinHostPort(host, strconv.Itoa(httpPort)),
		output: filepath.Join(dir, "output"), exited: make(chan struct{})}
	out, err := os.Create(f.output)
	if err != nil {
		return nil, fmt.Errorf("ferry output file: %w", err)
	}
	f.cmd = exec.Command(bin, "serve", "--config", config)
	f.cmd.Stdout, f.cmd.Stderr = out, out
	// Ferry dies with this program even if it is killed without a chance to clean up.
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = f.cmd.Start()
	_ = out.Close() // ferry has its own copy
	if err != nil {
		return nil, fmt.Errorf("start ferry: %w", err)
	}
	go func() {
		f.waitErr = f.cmd.Wait()
		close(f.exited)
	}()
	if err := f.waitReady(ctx); err != nil {
		_ = f.stop()
		return nil, fmt.Errorf("ferry did not start: %w\n%s", err, f.outputTail())
	}
	return f, nil
}

func (f *ferry) pid() int { return f.cmd.Process.Pid }

// waitReady polls the SFU's HTTP endpoint until it answers.
func (f *ferry) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := httpClient.Get(f.sfuURL + "/api/rooms/ready")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-f.exited:
			return fmt.Errorf("exited: %v", f.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no HTTP answer in 15s: %w", err)
		}
	}
}

// stop ends ferry with SIGTERM (its drain_timeout is 0s: it exits at once) and kills it if
// it has not exited after 10 seconds.
func (f *ferry) stop() error {
	select {
	case <-f.exited:
		return fmt.Errorf("ferry had exited before the end of the run: %v\n%s", f.waitErr, f.outputTail())
	default:
	}
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.exited
		return errors.New("ferry did not stop on SIGTERM in 10s: killed")
	}
}

// outputTail is the end of ferry's output, to explain a failure.
func (f *ferry) outputTail() string {
	data, err := os.ReadFile(f.output)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePort returns a port of host free for both UDP and TCP: the TURN listener takes it on
// UDP, the SFU's HTTP endpoint on TCP.
func freePort() (int, error) {
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

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux
// ABI, whatever frequency the kernel ticks at.
const clockTicks = 100

// cpuTime is the CPU time, user and system, that process pid has used so far, over all its
// threads.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("CPU time: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces: count the fields
	// after its closing parenthesis, where field 3 (state) comes first.
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, fmt.Errorf("CPU time: malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[end+1:]))
	const utime, stime = 14 - 3, 15 - 3 // fields 14 and 15 of proc(5)
	if len(fields) <= stime {
		return 0, fmt.Errorf("CPU time: short /proc/%d/stat", pid)
	}
	var ticks int64
	for _, field := range []string{fields[utime], fields[stime]} {
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("CPU time: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
