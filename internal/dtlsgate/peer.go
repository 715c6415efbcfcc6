package dtlsgate

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v4/deadline"
)

const (
	// queueLen is how many datagrams wait for a peer's reader; more are dropped, as a
	// socket buffer would drop them.
	queueLen = 64
	// maxDatagram is the largest datagram the gate passes on: pion/dtls reads no more
	// at once.
	maxDatagram = 8192
	// smallDatagram is the buffer size of nearly every datagram: records are cut to the
	// path MTU.
	smallDatagram = 2048
)

// Datagrams wait in pooled buffers: a busy peer costs no allocation per datagram.
var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallDatagram); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}
)

// getBuf returns a pooled buffer holding a copy of b.
func getBuf(b []byte) *[]byte {
	pool := &smallBufs
	if len(b) > smallDatagram {
		pool = &largeBufs
	}
	buf := pool.Get().(*[]byte)
	*buf = append((*buf)[:0], b...)
	return buf
}

func putBuf(buf *[]byte) {
	if cap(*buf) == smallDatagram {
		smallBufs.Put(buf)
	} else {
		largeBufs.Put(buf)
	}
}

// peer is the net.PacketConn pion/dtls gets for one client address: the gate's read
// loop feeds it, writes go out on the listener's socket.
type peer struct {
	gate  *Listener
	addr  netip.AddrPort
	raddr *net.UDPAddr // addr as pion reports it

	in           chan *[]byte
	readDeadline *deadline.Deadline
	closed       chan struct{}
	closeOnce    sync.Once

	// verified is set once pion sends a ServerHello, which it does only after the client
	// returned its cookie: the client has shown it receives at its address.
	verified atomic.Bool
}

func newPeer(g *Listener, addr netip.AddrPort) *peer {
	return &peer{
		gate: g, addr: addr, raddr: net.UDPAddrFromAddrPort(addr),
		in: make(chan *[]byte, queueLen), readDeadline: deadline.New(), closed: make(chan struct{}),
	}
}

// deliver queues a datagram from the client; false if the queue is full or the peer is
// closed, and the datagram is dropped.
func (p *peer) deliver(b []byte) bool {
	select {
	case <-p.closed:
		return false
	default:
	}
	buf := getBuf(b)
	select {
	case p.in <- buf:
		return true
	default:
		putBuf(buf)
		return false
	}
}

func (p *peer) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case buf := <-p.in:
		n := copy(b, *buf)
		putBuf(buf)
		return n, p.raddr, nil
	case <-p.readDeadline.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case <-p.closed:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo sends to the peer's address whatever addr says: pion passes the address it
// was given. Until the client is verified it watches the handshake go by.
func (p *peer) WriteTo(b []byte, _ net.Addr) (int, error) {
	if !p.verified.Load() {
		f := readFlight(b)
		if f.helloVerify {
			p.gate.cfg.Events.HelloVerify()
		}
		if f.serverHello {
			p.verified.Store(true)
		}
	}
	return p.gate.sock.WriteToUDPAddrPort(b, p.addr)
}

// Close frees the peer: its address is unknown to the gate again. Datagrams still
// queued go back to the pool.
func (p *peer) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		p.gate.forget(p)
		for {
			select {
			case buf := <-p.in:
				putBuf(buf)
			default:
				return
			}
		}
	})
	return nil
}

func (p *peer) LocalAddr() net.Addr { return p.gate.sock.LocalAddr() }

func (p *peer) SetDeadline(t time.Time) error { return p.SetReadDeadline(t) }

func (p *peer) SetReadDeadline(t time.Time) error {
	p.readDeadline.Set(t)
	return nil
}

// SetWriteDeadline does nothing: a write goes straight to the socket and does not wait
// for a reader.
func (p *peer) SetWriteDeadline(time.Time) error { return nil }
