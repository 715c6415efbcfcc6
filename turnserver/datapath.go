package turnserver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
	"github.com/ferry-rtc/ferry/relay"
)

// dataPlane relays the data of UDP allocations itself: ChannelData and Send indications from
// clients go straight to the relay socket, and datagrams from peers come back as ChannelData
// or Data indications, on the listener's and the relay's read loops. pion/turn keeps the
// control plane (allocations, permissions, channels, their lifetimes); the data plane follows
// it through pion's events, so it relays exactly what pion would, without pion's per-packet
// allocations and lookups. Anything it does not recognise (no allocation, no channel, no
// permission, malformed) goes to pion, which answers or drops it as before.
type dataPlane struct {
	mu      sync.RWMutex
	routes  map[routeKey]*route
	streams map[routeKey]*streamConn          // live TCP, TLS and DTLS client connections
	sockets map[netip.AddrPort]*udpbatch.Conn // a UDP listener socket per bound address
}

// routeKey is an allocation's 5-tuple as the data plane sees it: client and server address,
// and whether the client came over a stream (TCP, TLS, DTLS) rather than plain UDP.
type routeKey struct {
	client, server netip.AddrPort
	stream         bool
}

// route is one UDP-relayed allocation on the data path.
type route struct {
	relay  relay.UDPRelay
	client netip.AddrPort
	sink   clientSink
	stream bool           // ChannelData to the client is padded to 4 bytes
	only   netip.AddrPort // the one peer the allocation's user may send to; zero: any
	peers  atomic.Pointer[peerTable]
}

// peerTable is a route's channels and permissions, as pion last reported them. It is never
// changed in place: an event replaces it whole, so the data path reads it without a lock.
type peerTable struct {
	byNumber map[uint16]netip.AddrPort
	byPeer   map[netip.AddrPort]uint16
	perms    map[netip.Addr]struct{}
}

// clientSink sends frames to a client, in as few system calls as it can: a UDP listener
// socket, or the client's connection.
type clientSink interface {
	sendFrames(frames [][]byte, to netip.AddrPort) error
}

type udpSink struct{ *udpbatch.Conn }

// writers are the sendmmsg scratch of the goroutines sending batches to UDP clients.
var writers = sync.Pool{New: func() any { return udpbatch.NewWriter(relay.Batch) }}

func (s udpSink) sendFrames(frames [][]byte, to netip.AddrPort) error {
	w := writers.Get().(*udpbatch.Writer)
	defer writers.Put(w)
	return w.WriteTo(s.Conn, frames, to)
}

func newDataPlane() *dataPlane {
	return &dataPlane{
		routes:  map[routeKey]*route{},
		streams: map[routeKey]*streamConn{},
		sockets: map[netip.AddrPort]*udpbatch.Conn{},
	}
}

// addSocket makes conn the socket that sends to UDP clients of addr (the first one wins: a
// listener's SO_REUSEPORT sockets share the address, and any of them sends from it).
func (d *dataPlane) addSocket(addr netip.AddrPort, conn *net.UDPConn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.sockets[addr]; ok {
		return nil
	}
	c, err := udpbatch.NewConn(conn)
	if err != nil {
		return err
	}
	d.sockets[addr] = c
	return nil
}

func (d *dataPlane) addStream(key routeKey, c *streamConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.streams[key] = c
}

func (d *dataPlane) removeStream(key routeKey, c *streamConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.streams[key] == c {
		delete(d.streams, key)
	}
}

// awaitAllocation gives the stream connection of a 5-tuple, if there is one, d to make an
// allocation before it is closed; 0 lifts the deadline.
func (d *dataPlane) awaitAllocation(client, server net.Addr, timeout time.Duration) {
	c, _ := addrPort(client)
	s, _ := addrPort(server)
	d.mu.RLock()
	conn, ok := d.streams[routeKey{client: c, server: s, stream: true}]
	d.mu.RUnlock()
	if ok {
		conn.awaitAllocation(timeout)
	}
}

// open starts relaying for a new allocation whose relay socket is rl, and whose user may
// send to only (if valid); nil if the client's socket or connection is gone already.
func (d *dataPlane) open(key routeKey, rl relay.UDPRelay, only netip.AddrPort) *route {
	d.mu.Lock()
	defer d.mu.Unlock()
	var sink clientSink
	if key.stream {
		if c, ok := d.streams[key]; ok {
			sink = c
		}
	} else if conn, ok := d.sockets[key.server]; ok {
		sink = udpSink{conn}
	}
	if sink == nil {
		return nil
	}
	r := &route{relay: rl, client: key.client, sink: sink, stream: key.stream, only: only}
	r.peers.Store(&peerTable{})
	d.routes[key] = r
	rl.SetInbound(r.fromPeer)
	return r
}

// close stops relaying for an allocation pion deleted.
func (d *dataPlane) close(key routeKey, r *route) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.routes[key] == r {
		delete(d.routes, key)
	}
	r.relay.SetInbound(nil)
}

func (d *dataPlane) route(key routeKey) *route {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.routes[key]
}

// setPeers replaces the route's channels and permissions with those of sess.
func (r *route) setPeers(perms map[netip.Addr]struct{}, channels map[uint16]netip.AddrPort) {
	t := &peerTable{
		byNumber: make(map[uint16]netip.AddrPort, len(channels)),
		byPeer:   make(map[netip.AddrPort]uint16, len(channels)),
		perms:    make(map[netip.Addr]struct{}, len(perms)),
	}
	for n, peer := range channels {
		t.byNumber[n] = peer
		t.byPeer[peer] = n
	}
	for ip := range perms {
		t.perms[ip] = struct{}{}
	}
	r.peers.Store(t)
}

// fromClient relays b, a ChannelData message or Send indication from the client of key; false
// leaves it to the guard and pion.
func (g *guard) fromClient(key routeKey, b []byte, st *connState) bool {
	if len(b) < channelDataHeaderSize {
		return false
	}
	if b[0]>>6 == 1 {
		return g.channelData(key, b)
	}
	if len(b) >= stunHeaderSize && binary.BigEndian.Uint16(b) == sendIndication &&
		binary.BigEndian.Uint32(b[4:]) == magicCookie {
		return g.sendIndication(key, b, st)
	}
	return false
}

const sendIndication = 0x0016 // Send method, indication class (RFC 8656 section 17)

// channelData relays a ChannelData message to the peer of its channel (RFC 8656 section
// 12.4). Like pion, it does not check the permission: a channel binding installs one.
func (g *guard) channelData(key routeKey, b []byte) bool {
	length := int(binary.BigEndian.Uint16(b[2:]))
	if channelDataHeaderSize+length > len(b) {
		return false
	}
	r := g.plane.route(key)
	if r == nil {
		return false
	}
	peer, ok := r.peers.Load().byNumber[binary.BigEndian.Uint16(b)]
	if !ok {
		return false
	}
	_, _ = r.relay.WriteToUDPAddrPort(b[channelDataHeaderSize:channelDataHeaderSize+length], peer)
	return true
}

// sendIndication relays the DATA of a Send indication to its XOR-PEER-ADDRESS (RFC 8656
// section 11.2), if the allocation has a permission for it. Whatever it cannot relay is
// dropped here and counted by its reason; false only when the 5-tuple has no allocation
// on the data plane.
func (g *guard) sendIndication(key routeKey, b []byte, st *connState) bool {
	r := g.plane.route(key)
	if r == nil {
		return false
	}
	m := &st.msg
	m.Raw = b
	if !g.decode(m) {
		return true
	}
	peer, ok := g.sendPeer(m, r.only)
	if !ok {
		return true
	}
	data, err := m.Get(stun.AttrData)
	if _, permitted := r.peers.Load().perms[peer.Addr()]; err != nil || !permitted {
		g.meters.dropped[dropUnrelayable].Inc()
		return true
	}
	_, _ = r.relay.WriteToUDPAddrPort(data, peer)
	return true
}

// fromPeer is the relay's Inbound handler: each datagram from a peer goes to the client as
// ChannelData if the peer has a channel, as a Data indication if it has a permission, and
// nowhere otherwise (RFC 8656 section 11.3, 12.6). The batch goes out together.
func (r *route) fromPeer(frames [][]byte, from []netip.AddrPort) {
	t := r.peers.Load()
	k := 0
	for i, frame := range frames {
		peer := netip.AddrPortFrom(from[i].Addr().Unmap(), from[i].Port())
		if n, ok := t.byPeer[peer]; ok {
			frames[k] = channelFrame(frame, n, r.stream)
		} else if _, ok := t.perms[peer.Addr()]; ok {
			frames[k] = dataIndication(frame, peer)
		} else {
			continue
		}
		k++
	}
	if k > 0 {
		_ = r.sink.sendFrames(frames[:k], r.client)
	}
}
