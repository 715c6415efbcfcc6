package turnserver

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/internal/udpbatch"
	"github.com/ferry-rtc/ferry/relay"
)

// The peer → client direction of the data plane: a UDP relay's read loop takes datagrams
// from peers, keeps those from peers with a permission (RFC 8656 section 11.3) whose
// source the policy allows, frames each in place as ChannelData when its peer has a
// channel, else as a Data indication, and sends the batch to the client together. The
// same path takes the datagrams the SFU hands over in process. It takes no lock and
// allocates nothing.

// udpRelay is one UDP relay socket of an allocation.
type udpRelay struct {
	s      *Server
	a      *allocation
	conn   *udpbatch.Conn
	public netip.AddrPort     // the relayed transport address clients and peers know
	local  *relay.LocalSocket // its entry in the in-process hand-off; nil without one
	closed atomic.Bool
}

// frames is a relay's read batch: buffers with room for a TURN header in front of every
// datagram (turnwire.Headroom) and for padding behind it (Tailroom). A relay borrows one
// only while datagrams come, so an idle relay holds no buffer.
type frames struct {
	r    *udpbatch.Reader
	bufs [readBatch][]byte
	out  [readBatch][]byte
	from [readBatch]netip.AddrPort
}

var framePool = sync.Pool{New: func() any {
	f := &frames{}
	var reads [readBatch][]byte
	for i := range f.bufs {
		f.bufs[i] = make([]byte, turnwire.Headroom+maxDatagram+turnwire.Tailroom)
		reads[i] = f.bufs[i][turnwire.Headroom : turnwire.Headroom+maxDatagram]
	}
	f.r = udpbatch.NewReader(reads[:])
	return f
}}

// start runs the relay's read loop, owned by the server, and offers the relay to the
// in-process hand-off. A relay that closed meanwhile (its allocation ended at once) is
// taken back from the hand-off.
func (r *udpRelay) start() {
	if r.local != nil {
		r.s.cfg.Local.AddRelay(r.local)
		if r.closed.Load() {
			r.s.cfg.Local.RemoveRelay(r.local)
		}
	}
	r.s.wg.Go(r.readLoop)
}

// readLoop reads the relay until it closes: it waits for a datagram without a buffer,
// then borrows a batch until the socket is drained.
func (r *udpRelay) readLoop() {
	for {
		if err := r.conn.WaitReadable(); err != nil {
			return
		}
		f := framePool.Get().(*frames)
		err := r.drain(f)
		framePool.Put(f)
		if err != nil {
			return
		}
	}
}

// drain reads and relays batches until none is left: a batch shorter than the buffers
// means the socket was empty when it was read, and WaitReadable looks before it waits.
func (r *udpRelay) drain(f *frames) error {
	for {
		n, err := f.r.TryRead(r.conn)
		if err != nil || n == 0 {
			return err
		}
		for i := range n {
			b, src := f.r.Datagram(i)
			f.out[i], f.from[i] = f.bufs[i][:turnwire.Headroom+len(b)], src
		}
		r.toClient(f.out[:n], f.from[:n])
		if n < readBatch {
			return nil
		}
	}
}

// toClient sends datagrams from peers (each after turnwire.Headroom in its frame) to the
// client, counted as relayed: as ChannelData if the peer has a live channel, as a Data
// indication if it has a live permission, not at all otherwise, nor from a source the
// policy refuses (Ferry's own relay IP is a source only from a port Ferry holds).
func (r *udpRelay) toClient(frames [][]byte, from []netip.AddrPort) {
	t := r.a.peers.Load()
	now := time.Now().UnixNano()
	padded := r.a.five.stream
	k := 0
	for i, frame := range frames {
		peer := from[i]
		size := len(frame) - turnwire.Headroom
		if !r.s.cfg.Policy.PermitSource(relay.UDP, peer) {
			r.s.meters.peerDenied[deniedInbound].Inc()
			continue
		}
		if c, ok := t.byPeer[peer]; ok && now < c.until {
			frames[k] = turnwire.FrameChannelData(frame, c.number, padded)
		} else if exp, ok := t.perms[peer.Addr()]; ok && now < exp {
			frames[k] = turnwire.FrameDataIndication(frame, peer)
		} else {
			r.s.meters.dropped[dropNoPermission].Inc()
			continue
		}
		r.a.traffic.FromPeer.Add(size)
		k++
	}
	if k > 0 {
		if err := r.a.client.sendFrames(frames[:k], r.a.five.client); err != nil {
			r.s.meters.writeErrors[toClientWrite].Inc()
		}
	}
}

// fromLocal takes datagrams handed over in process (by the SFU, or another relay), as if
// read from the socket: a batch at a time, copied into a frame batch.
func (r *udpRelay) fromLocal(datagrams [][]byte, from netip.AddrPort) {
	f := framePool.Get().(*frames)
	defer framePool.Put(f)
	for len(datagrams) > 0 {
		k := 0
		for _, p := range datagrams[:min(len(datagrams), readBatch)] {
			if len(p) <= maxDatagram {
				f.out[k] = f.bufs[k][:turnwire.Headroom+copy(f.bufs[k][turnwire.Headroom:], p)]
				f.from[k] = from
				k++
			}
		}
		datagrams = datagrams[min(len(datagrams), readBatch):]
		r.toClient(f.out[:k], f.from[:k])
	}
}

// toPeer sends datagrams from the client to peer, counted as the relay's traffic; the SFU's
// address is served in process.
func (r *udpRelay) toPeer(datagrams [][]byte, peer netip.AddrPort) {
	for _, p := range datagrams {
		r.a.traffic.ToPeer.Add(len(p))
	}
	if l := r.s.cfg.Local; l != nil && (l.ToPeer(peer, datagrams, r.public) || l.ToRelay(peer, datagrams, r.public)) {
		return
	}
	if err := sendBatch(r.conn, datagrams, peer); err != nil {
		r.s.meters.writeErrors[toPeerWrite].Inc()
	}
}

// close closes the socket, once; the read loop ends and the port goes back to the pool.
func (r *udpRelay) close() {
	if r.closed.Swap(true) {
		return
	}
	if r.local != nil {
		r.s.cfg.Local.RemoveRelay(r.local)
	}
	_ = r.conn.Close()
	r.s.cfg.Pool.Put(int(r.public.Port()))
}

// relayOn makes the socket c, bound on port, a relay of a advertised at public. A relay of a
// UDP client takes datagrams handed over in process; one of a stream client does not,
// since writing to its client's connection can block, which must not hold up the sender.
func (s *Server) relayOn(a *allocation, c *udpbatch.Conn, port int, public netip.Addr) *udpRelay {
	r := &udpRelay{s: s, a: a, conn: c, public: netip.AddrPortFrom(public, uint16(port))}
	if s.cfg.Local != nil && !a.five.stream {
		r.local = &relay.LocalSocket{Addr: r.public, Deliver: r.fromLocal}
	}
	return r
}
