package turnserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v4/reuseport"

	"github.com/ferry-rtc/ferry/internal/dtlsgate"
	"github.com/ferry-rtc/ferry/internal/iplimit"
	"github.com/ferry-rtc/ferry/internal/pionlog"
	"github.com/ferry-rtc/ferry/internal/udpbatch"
	"github.com/ferry-rtc/ferry/relay"
)

const (
	// listenerReadBuffer is the receive buffer asked for each UDP listener socket: every
	// client of the listener shares it (coturn gives each client a connected socket of its
	// own), so a burst must not overflow it. The kernel caps it at net.core.rmem_max.
	listenerReadBuffer = 4 << 20
	// readBatch is how many datagrams a read returns at most.
	readBatch = 8
	// maxDatagram is the largest datagram read whole, as pion's read loops do.
	maxDatagram = 1600
	// handshakeTimeout bounds a TLS or DTLS handshake.
	handshakeTimeout = 10 * time.Second
)

// listener is one [[listen]] entry: for udp, one SO_REUSEPORT socket per CPU, each read
// by a loop of its own; for the stream protos, a net.Listener whose connections each get
// a goroutine.
type listener struct {
	s     *Server
	proto string
	addr  netip.AddrPort                  // bound
	cert  atomic.Pointer[tls.Certificate] // tls and dtls

	socks []*udpbatch.Conn // udp

	ln    net.Listener // tcp, tls, dtls
	mu    sync.Mutex
	conns map[*streamConn]struct{}
	done  bool
}

// open binds one listener. UDP and DTLS sockets are opened for the address's own family
// only, so "0.0.0.0" and "[::]" listeners on one port can coexist.
func (s *Server) open(l Listener) (*listener, error) {
	ln := &listener{s: s, proto: l.Proto, conns: map[*streamConn]struct{}{}}
	ln.cert.Store(l.Cert)
	var err error
	switch l.Proto {
	case "udp":
		err = ln.listenUDP(l.Addr)
	case "tcp", "tls":
		ln.ln, err = net.Listen(relay.Network("tcp", l.Addr.Addr()), l.Addr.String())
		if err == nil && l.Proto == "tls" {
			getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ln.cert.Load(), nil }
			ln.ln = tls.NewListener(ln.ln, &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12})
		}
	case "dtls":
		ln.ln, err = ln.listenDTLS(l.Addr)
	default:
		err = fmt.Errorf("turnserver: unknown listener proto %q", l.Proto)
	}
	if err != nil {
		ln.close() // the sockets a udp listener opened before one failed
		return nil, err
	}
	if ln.ln != nil {
		ln.addr = addrPortOf(ln.ln.Addr())
	}
	return ln, nil
}

// listenUDP opens the listener's sockets on one address: the kernel spreads clients over
// them by their address, and each has a read loop, so one listener uses every core (one
// socket tops out at one core's worth of reads, pion/turn#288).
func (l *listener) listenUDP(addr netip.AddrPort) error {
	lc, network := net.ListenConfig{Control: reuseport.Control}, relay.Network("udp", addr.Addr())
	for range runtime.GOMAXPROCS(0) {
		pc, err := lc.ListenPacket(context.Background(), network, addr.String())
		if err != nil {
			return err
		}
		sock := pc.(*net.UDPConn)
		_ = sock.SetReadBuffer(listenerReadBuffer)
		c, err := udpbatch.NewConn(sock)
		if err != nil {
			_ = sock.Close()
			return err
		}
		l.socks = append(l.socks, c)
		addr = relay.Unmap(sock.LocalAddr().(*net.UDPAddr).AddrPort()) // port 0: the next sockets take the port the first got
	}
	l.addr = addr
	return nil
}

// listenDTLS opens a dtls listener: a UDP socket of Ferry's own behind a gate that bounds
// what a ClientHello flood can cost (internal/dtlsgate). It hands on only connections
// whose handshake is done.
func (l *listener) listenDTLS(addr netip.AddrPort) (net.Listener, error) {
	sock, err := net.ListenUDP(relay.Network("udp", addr.Addr()), net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	_ = sock.SetReadBuffer(listenerReadBuffer) // a burst of handshakes must not overflow it
	gate, err := dtlsgate.New(sock, dtlsgate.Config{
		Options: []dtls.ServerOption{
			dtls.WithGetCertificate(func(*dtls.ClientHelloInfo) (*tls.Certificate, error) { return l.cert.Load(), nil }),
			dtls.WithLoggerFactory(pionlog.Factory{Log: l.s.cfg.Log}),
		},
		Limits: func() dtlsgate.Limits { // as the last reload left them
			lim := l.s.limits.Load()
			return dtlsgate.Limits{Handshakes: lim.DTLSHandshakes, HandshakesPerIP: lim.DTLSHandshakesPerIP}
		},
		Timeout: handshakeTimeout,
		Events:  l.s.meters.dtls,
	})
	if err != nil {
		_ = sock.Close()
		return nil, fmt.Errorf("turnserver: dtls listener on %s: %w", addr, err)
	}
	return gate, nil
}

// serve starts the listener's loops, owned by the server.
func (l *listener) serve() {
	for _, sock := range l.socks {
		l.s.wg.Go(func() { l.readUDP(sock) })
	}
	if l.ln != nil {
		l.s.wg.Go(func() { l.s.acceptLoop(l.ln, l.take) })
	}
}

// close stops the listener and closes its connections.
func (l *listener) close() {
	for _, sock := range l.socks {
		_ = sock.Close()
	}
	if l.ln == nil {
		return
	}
	_ = l.ln.Close()
	l.mu.Lock()
	l.done = true
	conns := slices.Collect(maps.Keys(l.conns))
	l.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// readUDP serves one socket of a udp listener until it closes: a batch at a time,
// ChannelData and Send indications straight to the data plane, STUN requests to their
// handlers.
func (l *listener) readUDP(sock *udpbatch.Conn) {
	bufs := make([][]byte, readBatch)
	for i := range bufs {
		bufs[i] = make([]byte, maxDatagram)
	}
	r := udpbatch.NewReader(bufs)
	w := &udpReply{sock: sock}
	var msg stun.Message
	out := &relayBatch{}
	for {
		n, err := r.Read(sock)
		if err != nil {
			return
		}
		now := time.Now()
		for i := range n {
			b, client := r.Datagram(i)
			l.datagram(b, client, w, &msg, out, now)
		}
		out.flush()
	}
}

func (l *listener) datagram(b []byte, client netip.AddrPort, w *udpReply, msg *stun.Message, out *relayBatch, now time.Time) {
	five := fiveTuple{client: client, server: l.addr}
	switch {
	case l.s.toPeers(l.s.table.udpLookup(five), b, out, now):
	case !stun.IsMessage(b):
		l.s.meters.dropped[dropUnrelayable].Inc()
	case l.s.decodeMessage(msg, b):
		l.s.handle(&request{msg: msg, five: five, l: l, w: w, now: now})
	}
}

// udpReply answers over the UDP socket a request came from, and sends the data of the
// allocation the request makes through it.
type udpReply struct{ sock *udpbatch.Conn }

func (u *udpReply) respond(msg []byte, to netip.AddrPort) { _, _ = u.sock.WriteToUDPAddrPort(msg, to) }

func (u *udpReply) allow(cap *iplimit.Limiter, client netip.AddrPort, now time.Time) bool {
	return cap.Allow(client.Addr(), now)
}

func (u *udpReply) refuse() {}

func (u *udpReply) sendFrames(frames [][]byte, to netip.AddrPort) error {
	return sendBatch(u.sock, frames, to)
}

// writers are the sendmmsg scratch of the goroutines sending batches over UDP.
var writers = sync.Pool{New: func() any { return udpbatch.NewWriter(readBatch) }}

// sendBatch sends datagrams to one address over sock, in one sendmmsg.
func sendBatch(sock *udpbatch.Conn, datagrams [][]byte, to netip.AddrPort) error {
	w := writers.Get().(*udpbatch.Writer)
	defer writers.Put(w)
	return w.WriteTo(sock, datagrams, to)
}

// addrPortOf converts a UDP or TCP address, IPv4-mapped addresses unmapped.
func addrPortOf(a net.Addr) netip.AddrPort {
	if a, ok := a.(interface{ AddrPort() netip.AddrPort }); ok {
		return relay.Unmap(a.AddrPort())
	}
	return netip.AddrPort{}
}
