package sfu

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
)

// A subscriber's writer sends a video frame's packets in a burst, all to one address. While
// it holds a cork on that address, the ICE socket keeps what pion writes there (after SRTP)
// and sends it in one system call (sendmmsg) when the cork is released or full: the system
// call, not SRTP, is most of what a forwarded packet costs.

// corkBatch is the most packets a cork keeps before sending them.
const corkBatch = 8

// sendPath is where a subscriber's packets go: the remote address of its selected ICE
// pair, which its writers cork, on the SFU's ICE socket.
type sendPath struct {
	mux *muxConn
	dst atomic.Pointer[netip.AddrPort] // nil until ICE has selected a pair
}

// hold corks the path's address; false if there is none yet (or no path).
func (p *sendPath) hold() (netip.AddrPort, bool) {
	if p == nil {
		return netip.AddrPort{}, false
	}
	dst := p.dst.Load()
	if dst == nil {
		return netip.AddrPort{}, false
	}
	p.mux.hold(*dst)
	return *dst, true
}

// release ends a hold taken on dst.
func (p *sendPath) release(dst netip.AddrPort) { p.mux.release(dst) }

// follow keeps the path's address that of the selected pair of t.
func (p *sendPath) follow(t *webrtc.ICETransport) {
	t.OnSelectedCandidatePairChange(func(pair *webrtc.ICECandidatePair) {
		ip, err := netip.ParseAddr(pair.Remote.Address)
		if err != nil {
			return
		}
		dst := netip.AddrPortFrom(ip.Unmap(), pair.Remote.Port)
		p.dst.Store(&dst)
	})
}

// cork is the packets kept for one address, while any writer holds it.
type cork struct {
	mu      sync.Mutex
	holders int               // guarded by muxConn.mu
	n       int               // packets kept
	store   [corkBatch][]byte // the buffers they are copied into
	out     [corkBatch][]byte // store's buffers cut to the packets
	w       *udpbatch.Writer
}

var corks = sync.Pool{New: func() any {
	k := &cork{w: udpbatch.NewWriter(corkBatch)}
	for i := range k.store {
		k.store[i] = make([]byte, packetSize)
	}
	return k
}}

// hold corks dst until the matching release.
func (c *muxConn) hold(dst netip.AddrPort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.corks[dst]
	if k == nil {
		k = corks.Get().(*cork)
		c.corks[dst] = k
		c.corked.Add(1)
	}
	k.holders++
}

// release ends a hold on dst; the last one sends what is kept.
func (c *muxConn) release(dst netip.AddrPort) {
	c.mu.Lock()
	k := c.corks[dst]
	k.holders--
	last := k.holders == 0
	if last {
		delete(c.corks, dst)
		c.corked.Add(-1)
	}
	c.mu.Unlock()
	if last { // no one else can reach k now
		c.flush(k, dst)
		corks.Put(k)
	}
}

// stash keeps a copy of p for dst if dst is corked; false if it is not, or p does not fit.
func (c *muxConn) stash(p []byte, dst netip.AddrPort) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k := c.corks[dst]
	if k == nil || len(p) > packetSize {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.out[k.n] = k.store[k.n][:copy(k.store[k.n], p)]
	if k.n++; k.n == corkBatch {
		c.flush(k, dst)
	}
	return true
}

// flush sends what k keeps for dst, handed over in process if dst is a relay of this
// Ferry; k's lock is held, or k is the caller's alone.
func (c *muxConn) flush(k *cork, dst netip.AddrPort) {
	kept := k.out[:k.n]
	k.n = 0
	if len(kept) == 0 {
		return
	}
	if c.handOut(dst, kept[0]) {
		for _, b := range kept[1:] {
			c.handOut(dst, b)
		}
		return
	}
	_ = k.w.WriteTo(c.batch, kept, dst)
}
