//go:build linux

package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-rtc/ferry/internal/testkit"
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

// TestUsersDroppedPacketsExpire: when packets to Redis start being dropped (the node's
// connections go silent, new ones are never answered), the users read before stop working
// about max_stale after the last read, not a reconnection's dial retries later (go-redis
// dials 5 times, about 11 s, when nothing answers).
func TestUsersDroppedPacketsExpire(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t, "127.0.0.1")
	proxy := newSilencer(t, r.Addr)
	// A full read every 10 s (the default): a silent network is noticed at the next one,
	// within max_stale.
	const maxStale = 15 * time.Second
	u := follow(t, "redis://"+proxy.addr, usersResync, maxStale)
	s := openStore(t, r.URL())
	if _, err := s.Set(context.Background(), user("gorst", testRealm, "hero")); err != nil {
		t.Fatal(err)
	}
	hasKey(t, u, 2*time.Second, "gorst", "hero")

	proxy.silence(t)
	dropped := time.Now() // the last full read was before: the bound counts from it
	hasKey(t, u, maxStale+3*time.Second, "gorst", "")
	t.Logf("the key stopped working %v after packets were dropped (max_stale %v)", time.Since(dropped), maxStale)
}

// silencer is a TCP proxy to a Redis that can start dropping everything, as a network that
// drops packets does: its connections stay open and silent, and new ones go unanswered.
type silencer struct {
	addr   string
	ln     net.Listener
	quiet  atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
	target string
}

func newSilencer(t *testing.T, target string) *silencer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silencer{addr: ln.Addr().String(), ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = p.ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *silencer) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies from src to dst until either closes; once quiet, what it reads is dropped.
func (p *silencer) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if !p.quiet.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}

// silence drops everything from now on: the open connections go silent, and the proxy's
// address takes no new ones (a full listen queue, as droppingAddr makes).
func (p *silencer) silence(t *testing.T) {
	t.Helper()
	p.quiet.Store(true)
	_ = p.ln.Close()
	fillQueue(t, listenZero(t, p.addr))
}

// droppingAddr is a loopback address whose SYNs go unanswered: a listener with a backlog of
// 0 whose queue is full and never accepted from.
func droppingAddr(t *testing.T) string {
	t.Helper()
	addr := listenZero(t, "127.0.0.1:0")
	fillQueue(t, addr)
	return addr
}

// listenZero listens on addr ("IP:port", port 0: any) with a backlog of 0 and never
// accepts; it returns the address.
func listenZero(t *testing.T, addr string) string {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	// The port of a proxy being replaced still has its accepted connections.
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// fillQueue fills the listen queue of the backlog-0 listener at addr.
func fillQueue(t *testing.T, addr string) {
	t.Helper()
	for range 3 { // fill the queue
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		_ = c.Close()
		t.Skipf("the full listener at %s still takes connections here", addr)
	}
}
