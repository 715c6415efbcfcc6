// Package test holds Ferry's end-to-end tests: a real ferry binary on loopback, driven by
// pion/turn clients, a raw STUN client and coturn's turnutils.
package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ferryBin is the ferry binary under test, built once by TestMain with the race detector.
var ferryBin string

func TestMain(m *testing.M) {
	// The race runtime sleeps a second at exit by default; every CLI call would pay it.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	// A process a netns test re-ran itself as (netns_test.go) uses the binary the outermost
	// TestMain built, which outlives it, instead of building its own.
	if bin := os.Getenv("FERRY_TEST_FERRY_BIN"); bin != "" {
		ferryBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ferry-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ferryBin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-race", "-o", ferryBin, "github.com/ferry-rtc/ferry/cmd/ferry")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ferry:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// relayRange hands each test its own relay port range, below Linux's ephemeral range
// (32768+) so that no client socket of the tests lands in a pool. The blocks start at an
// offset taken from the process ID, so that two `go test` runs on one machine (a developer's
// and another's) seldom use the same block at the same time.
var nextRelayBlock atomic.Int32

const (
	relayBlockBase = 20000
	relayBlockSize = 200
	relayBlocks    = 60 // 20000-31999
)

var relayBlockOffset = os.Getpid() % relayBlocks

func relayRange(size int) (min, max int) {
	if size > relayBlockSize {
		panic(fmt.Sprintf("relayRange: %d ports do not fit a block of %d", size, relayBlockSize))
	}
	block := (relayBlockOffset + int(nextRelayBlock.Add(1))) % relayBlocks
	start := relayBlockBase + block*relayBlockSize
	return start, start + size - 1
}

// handedOut holds every port freePort returned: the kernel may offer a closed port again
// at once, and two endpoints of one config (metrics and admin) must not get the same.
var handedOut sync.Map

// freePort returns a port free for both UDP and TCP on ip, and never the same twice.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, fmt.Sprint(port)))
		_ = ln.Close()
		if err != nil {
			continue
		}
		_ = pc.Close()
		if _, taken := handedOut.LoadOrStore(port, true); !taken {
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}

// ferry is a running ferry process.
type ferry struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	stdout *syncBuffer
	stderr *syncBuffer
	exited chan struct{}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startFerry writes config to a file and runs "ferry serve --config" on it until the test
// ends, waiting for the "ferry serving" log line. An empty config runs the embedded default.
func startFerry(t *testing.T, config string) *ferry {
	t.Helper()
	return startFerryVia(t, config)
}

// startFerryVia is startFerry with ferry run by the command prefix (e.g. "ip", "netns",
// "exec", NS: one that execs it, so that the process is ferry's).
func startFerryVia(t *testing.T, config string, prefix ...string) *ferry {
	t.Helper()
	f := &ferry{t: t, dir: t.TempDir(), stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	args := []string{"serve"}
	if config != "" {
		path := filepath.Join(f.dir, "ferry.toml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	args = append(append(prefix, ferryBin), args...)
	f.cmd = exec.Command(args[0], args[1:]...)
	f.cmd.Stdout = f.stdout
	f.cmd.Stderr = f.stderr
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("start ferry: %v", err)
	}
	go func() { _ = f.cmd.Wait(); close(f.exited) }()
	t.Cleanup(f.stop)
	deadline := time.After(20 * time.Second)
	for !strings.Contains(f.stderr.String(), `msg="ferry serving"`) && !strings.Contains(f.stderr.String(), `"msg":"ferry serving"`) {
		select {
		case <-f.exited:
			t.Fatalf("ferry exited before serving:\n%s", f.stderr.String())
		case <-deadline:
			t.Fatalf("ferry did not start in time:\n%s", f.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return f
}

// stop sends SIGTERM and waits; the log is shown when the test failed, and a race report
// fails the test.
func (f *ferry) stop() {
	select {
	case <-f.exited:
	default:
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.exited:
		case <-time.After(10 * time.Second):
			_ = f.cmd.Process.Kill()
			<-f.exited
			f.t.Errorf("ferry did not stop on SIGTERM")
		}
	}
	logs := f.stderr.String()
	if strings.Contains(logs, "WARNING: DATA RACE") || strings.Contains(logs, "panic:") {
		f.t.Errorf("ferry reported a race or panic:\n%s", logs)
	} else if f.t.Failed() {
		f.t.Logf("ferry log:\n%s", logs)
	}
}

// runFerry runs a ferry CLI command to completion.
func runFerry(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// lines splits output into non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
