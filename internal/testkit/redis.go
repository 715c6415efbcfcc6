package testkit

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisRequireEnv turns a missing redis-server into a failure instead of a skip (CI).
const RedisRequireEnv = "FERRY_TEST_REQUIRE_REDIS"

// Redis is a redis-server a test started on a private port, without persistence: a stop and
// a start lose every key, as a restarted cache would.
type Redis struct {
	t    testing.TB
	bin  string
	Addr string // IP:port
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// RedisServer returns the path of redis-server; without it the test skips loudly, or fails
// when FERRY_TEST_REQUIRE_REDIS is set.
func RedisServer(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		return bin
	}
	msg := "SKIPPED LOUDLY: redis-server not installed (apt-get install -y redis-server); " + t.Name() + " cannot run"
	if os.Getenv(RedisRequireEnv) != "" {
		t.Fatalf("%s (%s is set)", msg, RedisRequireEnv)
	}
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
	return ""
}

// StartRedis starts redis-server on ip at a free port below 32768 (outside Linux's ephemeral
// range) and waits until it answers; it stops with the test.
func StartRedis(t testing.TB, ip string) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: RedisServer(t), dir: t.TempDir()}
	for range 100 {
		port := 15000 + rand.IntN(5000)
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = ln.Close()
		r.Addr = net.JoinHostPort(ip, strconv.Itoa(port))
		break
	}
	if r.Addr == "" {
		t.Fatal("no free port for redis-server")
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Start runs the server (again) at its address and waits until it answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	host, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command(r.bin, "--bind", host, "--port", port, "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--dir", r.dir, "--daemonize", "no", "--loglevel", "warning")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for !r.Ping() {
		select {
		case <-exited:
			r.t.Fatalf("redis-server on %s exited at start", r.Addr)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s does not answer", r.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (SIGKILL: as a crash, nothing saved) and waits for it to exit.
func (r *Redis) Stop() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Ping reports whether the server answers PING.
func (r *Redis) Ping() bool {
	out, err := r.Do("PING")
	return err == nil && out == "PONG"
}

// Do sends one command (arguments without spaces) and returns the first line of its answer,
// without the type prefix: enough for PING, GET, TTL, DBSIZE and INFO's first line.
func (r *Redis) Do(args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "$-1"):
		return "", nil
	case strings.HasPrefix(line, "$"):
		v, err := rd.ReadString('\n')
		return strings.TrimRight(v, "\r\n"), err
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("redis: %s", line[1:])
	}
	return line[1:], nil
}
