//go:build linux

package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestUsersStartDroppedPackets: a node whose Redis address drops packets (a dial there
// times out, and go-redis would try it 5 times) starts within about a second all the same.
func TestUsersStartDroppedPackets(t *testing.T) {
	t.Parallel()
	addr := droppingAddr(t)
	start := time.Now()
	u, err := StartUsers(UsersConfig{URL: "redis://" + addr, Realm: testRealm, MaxStale: time.Hour,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	_ = u.Close()
	if took > 1500*time.Millisecond {
		t.Fatalf("StartUsers took %v, want about a second", took)
	}
}

// droppingAddr is a loopback address whose SYNs go unanswered: a listener with a backlog of
// 0 whose queue is full and never accepted from.
func droppingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 3 { // fill the queue
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		_ = c.Close()
		t.Skip("the full listener still takes connections here")
	}
	return addr
}
