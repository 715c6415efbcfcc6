// Package relay is the leaf that TURN and the SFU share: the UDP/TCP port pool and binding
// on its ports, the peer address policy, address detection, traffic counters and the
// in-process hand-off between TURN relays and the SFU's socket.
package relay

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Proto is the transport protocol Ferry holds a pool port for. The pool is shared by UDP
// relays, TCP relays (RFC 6062) and the SFU's UDP ICE socket, but a port held for one
// protocol says nothing about the other: another program may listen on TCP 50000 while a
// UDP relay holds UDP 50000. The peer policy asks for the exact protocol.
type Proto uint32

// The protocols of pool ports.
const (
	UDP Proto = 1 << iota
	TCP
)

// Pool hands out ports of [min, max] from a free list. Unlike pion's random-retry range
// generator, Get succeeds whenever any port is free. Ports come back in FIFO order, so a port
// released a moment ago is the last to be reused (stale peer traffic meant for the previous
// allocation then has time to die out, and pion's EVEN-PORT search sees a new port each try).
//
// The free list is intrusive: next/prev arrays indexed by port-min, so GetEven can take any
// port in O(1) and the pool costs 12 bytes per port. Held reads a port's state without the
// lock: the peer policy asks it for every datagram from Ferry's own relay address.
type Pool struct {
	min, max int

	mu         sync.Mutex
	next, prev []int32 // links of the free list; -1 ends it
	head, tail int32
	held       []atomic.Uint32 // the Proto a port is held for, 0 while free; written under mu
	nfree      int
}

// NewPool returns a pool holding every port of [min, max], all free.
func NewPool(min, max int) (*Pool, error) {
	if min < 1 || max > 65535 || min > max {
		return nil, fmt.Errorf("relay: port range %d-%d is not within 1-65535 with min <= max", min, max)
	}
	n := max - min + 1
	p := &Pool{
		min: min, max: max,
		next: make([]int32, n), prev: make([]int32, n),
		held: make([]atomic.Uint32, n),
		head: -1, tail: -1,
	}
	for i := range n {
		p.pushBack(int32(i))
	}
	return p, nil
}

// Contains reports whether port belongs to the pool's range (free or not).
func (p *Pool) Contains(port int) bool { return port >= p.min && port <= p.max }

// Size is the number of ports in the range.
func (p *Pool) Size() int { return p.max - p.min + 1 }

// Free is the number of ports not handed out.
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nfree
}

// InUse is the number of ports handed out.
func (p *Pool) InUse() int { return p.Size() - p.Free() }

// Held reports whether port is handed out for proto (by Get or GetEven) and not yet Put back.
func (p *Pool) Held(port uint16, proto Proto) bool {
	return p.Contains(int(port)) && Proto(p.held[int(port)-p.min].Load()) == proto
}

// Get takes the least recently released free port for proto. ok is false only when none is
// free.
func (p *Pool) Get(proto Proto) (port int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head < 0 {
		return 0, false
	}
	i := p.head
	p.unlink(i, proto)
	return p.min + int(i), true
}

// GetEven takes the least recently released free even port for proto (RFC 8656 section
// 7.2, EVEN-PORT) and, with pair, the port after it too, which must be free as well. ok is
// false when no such port is free. It walks the free list: EVEN-PORT is rare.
func (p *Pool) GetEven(proto Proto, pair bool) (port int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := p.head; i >= 0; i = p.next[i] {
		port := p.min + int(i)
		if port%2 != 0 || (pair && (port+1 > p.max || p.held[i+1].Load() != 0)) {
			continue
		}
		p.unlink(i, proto)
		if pair {
			p.unlink(i+1, proto)
		}
		return port, true
	}
	return 0, false
}

// Put returns a port to the back of the free list. Putting a port that is free already or
// outside the range is a no-op, so a double release cannot corrupt the list.
func (p *Pool) Put(port int) {
	if !p.Contains(port) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	i := int32(port - p.min)
	if p.held[i].Load() == 0 {
		return
	}
	p.pushBack(i)
}

func (p *Pool) pushBack(i int32) {
	p.next[i], p.prev[i] = -1, p.tail
	if p.tail >= 0 {
		p.next[p.tail] = i
	} else {
		p.head = i
	}
	p.tail = i
	p.held[i].Store(0)
	p.nfree++
}

func (p *Pool) unlink(i int32, proto Proto) {
	if p.prev[i] >= 0 {
		p.next[p.prev[i]] = p.next[i]
	} else {
		p.head = p.next[i]
	}
	if p.next[i] >= 0 {
		p.prev[p.next[i]] = p.prev[i]
	} else {
		p.tail = p.prev[i]
	}
	p.held[i].Store(uint32(proto))
	p.nfree--
}
