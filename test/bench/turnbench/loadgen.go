package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// The TURN client loads: allocations made and released as fast as the server allows, and
// allocations held idle to weigh them.
const (
	allocWorkers = 50
	allocTotal   = 5000
	idleAllocs   = 5000
	idleWorkers  = 50
	// idleSettle lets the server finish its work on the last allocations before its RSS is
	// read.
	idleSettle = time.Second
)

func allocPart() *part {
	return &part{
		name:  "alloc",
		title: "Allocation rate: pion/turn clients",
		metrics: []metric{
			{"allocs", 0}, {"failed", 0}, {"wall s", 2}, {"allocs/s", 0},
			{"server CPU s", 2}, {"allocs/CPU-s", 0}, {"peak RSS MiB", 1},
		},
		key:            "allocs/CPU-s",
		higherIsBetter: true,
		scenarios:      []scenario{{name: fmt.Sprintf("%d-allocs", allocTotal), load: allocRate}},
		notes: []string{fmt.Sprintf("%d workers, each looping: new UDP client socket, Allocate (401, then "+
			"authenticated), Refresh with lifetime 0 (not waited for); %d allocations in all. "+
			"The sockets stay open until the end of the run, so that no client port is used twice.", allocWorkers, allocTotal)},
	}
}

func idlePart() *part {
	return &part{
		name:  "idle",
		title: "Memory per idle allocation: pion/turn clients",
		metrics: []metric{
			{"allocs held", 0}, {"failed", 0}, {"RSS before MiB", 1}, {"RSS after MiB", 1},
			{"KiB/alloc", 2}, {"peak RSS MiB", 1},
		},
		key:       "KiB/alloc",
		scenarios: []scenario{{name: fmt.Sprintf("%d-idle", idleAllocs), load: idleMemory}},
		notes: []string{fmt.Sprintf("%d UDP clients, each holding one allocation (%d allocating at a time); "+
			"KiB/alloc = (VmRSS with them held %s after the last - VmRSS before) / allocations held.",
			idleAllocs, idleWorkers, idleSettle)},
	}
}

// quietLogs silences the pion clients: failures are counted and reported instead.
var quietLogs = func() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}()

// turnClient is a pion/turn client on its own UDP socket.
type turnClient struct {
	conn   net.PacketConn
	client *turn.Client
}

// newTurnClient makes a client of server; it learns the realm from the server's 401.
func newTurnClient(server string) (*turnClient, error) {
	conn, err := net.ListenPacket("udp4", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("client socket: %w", err)
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Username:       benchUser,
		Password:       benchPass,
		Conn:           conn,
		LoggerFactory:  quietLogs,
	})
	if err == nil {
		err = client.Listen()
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("TURN client: %w", err)
	}
	return &turnClient{conn: conn, client: client}, nil
}

func (c *turnClient) close() {
	c.client.Close()
	_ = c.conn.Close()
}

// failures counts failed operations and keeps the first error, to explain them.
type failures struct {
	mu    sync.Mutex
	count int
	first error
}

// report prints the count and first error to the progress log: the tables only count them.
func (f *failures) report(s *server, what string) {
	if f.count > 0 {
		fmt.Fprintf(os.Stderr, "%s: %d %s failed, the first with: %v\n", s.name, f.count, what, f.first)
	}
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count == 0 {
		f.first = err
	}
	f.count++
}

// allocRate runs allocWorkers workers, each allocating and releasing in a loop until
// allocTotal allocations have been attempted.
func allocRate(ctx context.Context, s *server) ([]float64, usage, error) {
	m, err := startMeter(s)
	if err != nil {
		return nil, usage{}, err
	}
	var (
		next, done atomic.Int64
		failed     failures
		mu         sync.Mutex
		used       []*turnClient
		wg         sync.WaitGroup
	)
	defer func() {
		for _, c := range used {
			c.close()
		}
	}()
	for range allocWorkers {
		wg.Go(func() {
			for ctx.Err() == nil && next.Add(1) <= allocTotal {
				c, err := allocateAndRelease(s.addr())
				if c != nil {
					mu.Lock()
					used = append(used, c)
					mu.Unlock()
				}
				if err != nil {
					failed.add(err)
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	u, err := m.stop()
	if err != nil {
		return nil, usage{}, err
	}
	failed.report(s, "allocations")
	if err := ctx.Err(); err != nil {
		return nil, usage{}, fmt.Errorf("allocations interrupted: %w", err)
	}
	if done.Load() == 0 {
		return nil, usage{}, fmt.Errorf("no allocation succeeded: %w", failed.first)
	}
	peak, err := s.peakRSSMiB()
	if err != nil {
		return nil, usage{}, err
	}
	ok := float64(done.Load())
	return []float64{ok, float64(failed.count), u.wall, ok / u.wall, u.cpu, ok / u.cpu, peak}, u, nil
}

// allocateAndRelease makes one allocation from a new client socket, as a new client would,
// and releases it with a Refresh of lifetime 0, not waited for. The caller closes the
// client at the end of the run, not before: coturn keeps a released allocation's 5-tuple
// for a while and answers an Allocate on it 437 (wrong transaction ID), so no port may
// serve twice in one run.
func allocateAndRelease(server string) (*turnClient, error) {
	c, err := newTurnClient(server)
	if err != nil {
		return nil, err
	}
	relay, err := c.client.Allocate()
	if err != nil {
		return c, fmt.Errorf("allocate: %w", err)
	}
	return c, relay.Close()
}

// idleMemory weighs idle allocations: the server's RSS grows by their memory.
func idleMemory(ctx context.Context, s *server) ([]float64, usage, error) {
	before, err := s.rssKiB()
	if err != nil {
		return nil, usage{}, err
	}
	m, err := startMeter(s)
	if err != nil {
		return nil, usage{}, err
	}
	held, failed := holdAllocations(ctx, s.addr(), idleAllocs)
	failed.report(s, "allocations")
	defer func() {
		for _, h := range held {
			_ = h.relay.Close()
			h.client.close()
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, usage{}, fmt.Errorf("allocations interrupted: %w", err)
	}
	if len(held) == 0 {
		return nil, usage{}, fmt.Errorf("no allocation succeeded: %w", failed.first)
	}
	select {
	case <-time.After(idleSettle):
	case <-ctx.Done():
		return nil, usage{}, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	after, err := s.rssKiB()
	if err != nil {
		return nil, usage{}, err
	}
	u, peak, err := m.stopPeak()
	if err != nil {
		return nil, usage{}, err
	}
	n := float64(len(held))
	return []float64{n, float64(failed.count), before / 1024, after / 1024, (after - before) / n, peak}, u, nil
}

// heldAllocation is an allocation kept open, with the client that made it.
type heldAllocation struct {
	client *turnClient
	relay  net.PacketConn
}

// holdAllocations makes count allocations, each from its own client socket, idleWorkers at
// a time, and returns those that succeeded.
func holdAllocations(ctx context.Context, server string, count int) ([]heldAllocation, *failures) {
	var (
		mu      sync.Mutex
		held    []heldAllocation
		failed  failures
		next    atomic.Int64
		workers sync.WaitGroup
	)
	for range idleWorkers {
		workers.Go(func() {
			for ctx.Err() == nil && next.Add(1) <= int64(count) {
				c, err := newTurnClient(server)
				if err != nil {
					failed.add(err)
					continue
				}
				relay, err := c.client.Allocate()
				if err != nil {
					c.close()
					failed.add(err)
					continue
				}
				mu.Lock()
				held = append(held, heldAllocation{client: c, relay: relay})
				mu.Unlock()
			}
		})
	}
	workers.Wait()
	return held, &failed
}
