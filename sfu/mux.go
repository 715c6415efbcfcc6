package sfu

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
	"github.com/ferry-rtc/ferry/relay"
)

// muxConn is the SFU's one ICE socket, the net.PacketConn pion's ICE UDP mux reads and
// writes. Two things happen on its way:
//   - the in-process hand-off to Ferry's TURN relays (relay.Local): a datagram to a relay
//     address goes straight to that allocation's data path, and the relays' datagrams
//     arrive through a queue instead of the kernel, a batch per call each way;
//   - corks: a subscriber's writer sends a video frame's packets in a burst, all to one
//     address; while it holds a cork on that address, the socket keeps what pion writes
//     there (after SRTP) and sends it in one system call (sendmmsg), or one hand-off, when
//     the cork is released or full. The kernel's work per datagram, not SRTP, is most of
//     what a forwarded packet costs: a frame's packets have one size but the last, so the
//     batch goes as UDP GSO datagrams (udpbatch), which cross the kernel's IP and device
//     layers once per run of packets instead of once per packet.
type muxConn struct {
	*net.UDPConn
	batch *udpbatch.Conn
	local *relay.Local   // nil: no hand-off
	addr  netip.AddrPort // the socket's advertised address: the source relays see

	mu     sync.RWMutex
	corks  map[netip.AddrPort]*cork
	corked atomic.Int32 // len(corks), read on every write

	queue  chan handed
	counts muxCounters
	// waiting is set while ReadFrom blocks on the socket; a hand-off then wakes it with a
	// past read deadline, and woken tells ReadFrom that the timeout was that.
	waiting atomic.Bool
	woken   atomic.Bool
}

// handed is a datagram a relay handed over: its bytes in a pooled buffer, and its source.
type handed struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

// handQueue bounds the datagrams waiting in the hand-off queue; more are dropped, as a full
// socket buffer would drop them.
const handQueue = 1024

var handBufs = sync.Pool{New: func() any {
	b := make([]byte, packetSize)
	return &b
}}

// newMuxConn wraps conn, the socket at addr, and makes it the local peer of the relays of
// local, if any.
func newMuxConn(batch *udpbatch.Conn, local *relay.Local, addr netip.AddrPort, counts muxCounters) *muxConn {
	c := &muxConn{UDPConn: batch.UDPConn, batch: batch, local: local, addr: addr, corks: map[netip.AddrPort]*cork{},
		queue: make(chan handed, handQueue), counts: counts}
	batch.EnableGSO(counts.gso) // where the kernel lacks it, the fallbacks count says so
	if local != nil {
		local.SetPeer(&relay.LocalSocket{Addr: addr, Deliver: c.handIn})
	}
	return c
}

// handIn queues datagrams a relay handed over for ReadFrom; those that do not fit the queue
// are dropped and counted.
func (c *muxConn) handIn(datagrams [][]byte, from netip.AddrPort) {
	for _, p := range datagrams {
		buf := handBufs.Get().(*[]byte)
		n := copy(*buf, p)
		select {
		case c.queue <- handed{buf: buf, n: n, from: from}:
		default:
			handBufs.Put(buf)
			c.counts.handoffDropped.Inc()
		}
	}
	if c.waiting.Load() {
		c.woken.Store(true)
		_ = c.UDPConn.SetReadDeadline(time.Unix(1, 0))
	}
}

// ReadFrom returns the next datagram handed over by a relay, else the next from the socket.
func (c *muxConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		select {
		case h := <-c.queue:
			n := copy(p, (*h.buf)[:h.n])
			handBufs.Put(h.buf)
			return n, net.UDPAddrFromAddrPort(h.from), nil
		default:
		}
		c.waiting.Store(true)
		if len(c.queue) > 0 { // handed over between the check above and waiting
			c.waiting.Store(false)
			continue
		}
		n, addr, err := c.UDPConn.ReadFrom(p)
		c.waiting.Store(false)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.woken.Swap(false) {
			_ = c.UDPConn.SetReadDeadline(time.Time{})
			continue
		}
		return n, addr, err
	}
}

// WriteTo keeps a datagram for a corked address, hands one for a relay of this process to
// it, and sends any other.
func (c *muxConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	u, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(p, addr)
	}
	dst := u.AddrPort()
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if c.corked.Load() > 0 && c.stash(p, dst) {
		return len(p), nil
	}
	if c.local != nil {
		one := singles.Get().(*[1][]byte)
		one[0] = p
		handed := c.local.ToRelay(dst, one[:], c.addr)
		one[0] = nil
		singles.Put(one)
		if handed {
			return len(p), nil
		}
	}
	return c.UDPConn.WriteToUDPAddrPort(p, dst)
}

// singles hold a lone datagram as a batch of one for the hand-off, without an allocation
// per write.
var singles = sync.Pool{New: func() any { return new([1][]byte) }}

// Close stops the hand-off and closes the socket.
func (c *muxConn) Close() error {
	if c.local != nil {
		c.local.SetPeer(nil)
	}
	return c.UDPConn.Close()
}

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

// cork is the packets kept for one address while any writer holds it. It has two sets of
// buffers: when one fills up it is sent outside mu, which the other writers of the address
// wait on, while they fill the other; sending serializes the sends of the two sets, so
// packets leave in order.
type cork struct {
	mu      sync.Mutex
	holders int // guarded by muxConn.mu
	n       int // packets kept in the set being filled
	set     int // the set being filled: 0 or 1
	store   [2][corkBatch][]byte
	out     [2][corkBatch][]byte // store's buffers cut to the packets
	sending sync.Mutex
	w       *udpbatch.Writer // used under sending
}

var corks = sync.Pool{New: func() any {
	k := &cork{w: udpbatch.NewWriter(corkBatch)}
	for s := range k.store {
		for i := range k.store[s] {
			k.store[s][i] = make([]byte, packetSize)
		}
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
		k.mu.Lock()
		c.flush(k, dst) // unlocks k.mu
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
	k.out[k.set][k.n] = k.store[k.set][k.n][:copy(k.store[k.set][k.n], p)]
	if k.n++; k.n == corkBatch {
		c.flush(k, dst) // unlocks k.mu
		return true
	}
	k.mu.Unlock()
	return true
}

// flush sends the set being filled, handed over in process if dst is a relay of this
// Ferry, and switches to the other set; it is called with k.mu held and unlocks it before
// the send, so other writers go on filling the other set.
func (c *muxConn) flush(k *cork, dst netip.AddrPort) {
	kept := k.out[k.set][:k.n]
	k.n, k.set = 0, 1-k.set
	k.sending.Lock() // before mu is let go: the sets leave in the order they filled
	k.mu.Unlock()
	defer k.sending.Unlock()
	if len(kept) == 0 || (c.local != nil && c.local.ToRelay(dst, kept, c.addr)) {
		return
	}
	if k.w.WriteTo(c.batch, kept, dst) != nil {
		c.counts.writeErrors.Inc()
	}
}
