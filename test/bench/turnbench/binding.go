package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
)

// The Binding load: many sockets, each with a bounded window of requests in flight, so that
// the server is kept busy without its socket buffers overflowing.
const (
	bindingSockets = 64
	bindingWindow  = 8
	bindingTotal   = 300_000
	// bindingWait is how long a socket waits for the rest of its window before it counts
	// the missing responses as lost and sends the next window.
	bindingWait = 500 * time.Millisecond
)

func bindingPart() *part {
	return &part{
		name:  "binding",
		title: "STUN Binding requests: Go load generator",
		metrics: []metric{
			{"requests", 0}, {"responses", 0}, {"UDP drops", 0}, {"server drops", 0}, {"wall s", 2}, {"resp/s", 0},
			{"server CPU s", 2}, {"resp/CPU-s", 0}, {"peak RSS MiB", 1},
		},
		key:            "resp/CPU-s",
		higherIsBetter: true,
		scenarios:      []scenario{{name: fmt.Sprintf("%dk-bindings", bindingTotal/1000), load: bindingRate}},
		notes: []string{fmt.Sprintf("%d UDP sockets, each sending windows of %d Binding requests "+
			"(no attributes) and waiting for their responses (at most %s), %d requests in all.",
			bindingSockets, bindingWindow, bindingWait, bindingTotal)},
	}
}

func bindingRate(ctx context.Context, s *server) ([]float64, usage, error) {
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	raddr, err := net.ResolveUDPAddr("udp4", s.addr())
	if err != nil {
		return nil, usage{}, fmt.Errorf("server address: %w", err)
	}
	for range bindingSockets {
		c, err := net.DialUDP("udp4", nil, raddr)
		if err != nil {
			return nil, usage{}, fmt.Errorf("binding client socket: %w", err)
		}
		conns = append(conns, c)
	}

	m, err := startMeter(s)
	if err != nil {
		return nil, usage{}, err
	}
	var responses atomic.Int64
	var failed failures
	var wg sync.WaitGroup
	for i, c := range conns {
		// The first sockets send one more when the total does not divide evenly.
		count := bindingTotal / bindingSockets
		if i < bindingTotal%bindingSockets {
			count++
		}
		wg.Go(func() {
			n, err := bindingLoop(ctx, c, count)
			responses.Add(int64(n))
			if err != nil {
				failed.add(err)
			}
		})
	}
	wg.Wait()
	u, err := m.stop()
	if err != nil {
		return nil, usage{}, err
	}
	if failed.count > 0 {
		return nil, usage{}, fmt.Errorf("%d of %d sockets failed: %w", failed.count, bindingSockets, failed.first)
	}
	peak, err := s.peakRSSMiB()
	if err != nil {
		return nil, usage{}, err
	}
	got := float64(responses.Load())
	return []float64{bindingTotal, got, u.udpDrops, u.serverDrops, u.wall, got / u.wall, u.cpu, got / u.cpu, peak}, u, nil
}

// bindingLoop sends count Binding requests on c, bindingWindow at a time, and returns the
// number of success responses.
func bindingLoop(ctx context.Context, c *net.UDPConn, count int) (int, error) {
	// No FINGERPRINT: the request is reused with a new transaction ID each time.
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		return 0, fmt.Errorf("binding request: %w", err)
	}
	buf := make([]byte, 1500)
	got := 0
	for sent := 0; sent < count; {
		if err := ctx.Err(); err != nil {
			return got, fmt.Errorf("interrupted: %w", err)
		}
		window := min(bindingWindow, count-sent)
		for range window {
			if err := req.NewTransactionID(); err != nil {
				return got, fmt.Errorf("transaction ID: %w", err)
			}
			if _, err := c.Write(req.Raw); err != nil {
				return got, fmt.Errorf("send Binding request: %w", err)
			}
		}
		sent += window
		_ = c.SetReadDeadline(time.Now().Add(bindingWait))
		// A late response from an earlier window counts for this one: only totals matter.
		for pending := window; pending > 0; {
			n, err := c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // the rest of the window is lost
			}
			if err != nil {
				return got, fmt.Errorf("read Binding response: %w", err)
			}
			if isBindingSuccess(buf[:n]) {
				got++
				pending--
			}
		}
	}
	return got, nil
}

// isBindingSuccess checks only the header: decoding every response would cost the load
// generator CPU that the server, on the same two cores, could use.
func isBindingSuccess(b []byte) bool {
	return stun.IsMessage(b) && binary.BigEndian.Uint16(b[:2]) == stun.BindingSuccess.Value()
}
