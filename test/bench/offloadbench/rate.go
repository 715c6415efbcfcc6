package main

// The one-core rate: rateConns allocations, each with a channel bound to a peer socket of
// its own; at each step this program sends ChannelData from the clients to their peers and
// datagrams from the peers to the relay addresses (to come back as ChannelData), paced,
// half of the rate each way, for rateStep, as prebuilt frames on AF_PACKET sockets
// (packet.go), and counts what arrives at c0 and p0 with eBPF sinks that drop it there
// (sink.go). A step passes when at most 1 % is lost and the load sent at least 97 % of the
// rate it was asked for. A step in which the load sent less but the server lost at most
// 1 % ends the steps: the load's core, not the server's, was the limit, and the rate the
// load did send is the result, a lower bound of the server's.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

const (
	maxLossPct  = 1.0
	minAchieved = 0.97
	batchMax    = 32
	channel     = 0x4000
)

type rateStep struct {
	rate            int
	sent, recv      [2]uint64 // to peers, to clients
	wall            float64
	u               usage
	pass, loadBound bool
	try             int
}

func (s rateStep) lossPct() float64 {
	sent, recv := s.sent[0]+s.sent[1], s.recv[0]+s.recv[1]
	if sent == 0 {
		return 100
	}
	return 100 * float64(int64(sent)-int64(recv)) / float64(sent)
}

func (s rateStep) achieved() float64 { return float64(s.sent[0]+s.sent[1]) / s.wall }

type rateResult struct {
	server      string
	size, round int
	steps       []rateStep
	max         int  // the highest passing rate (or sent, when the load was the limit and sent more)
	loadBound   bool // the steps ended because the load could not send faster
	fails       int  // failing steps in a row
}

// add records a step and says whether the steps go on: not after a step in which the load
// could not send its rate but the server kept up with what it sent (a lower bound, which a
// step before may have passed at a higher rate: the load's core varies), nor after
// maxFails failing steps in a row.
func (r *rateResult) add(st rateStep, maxFails int) bool {
	r.steps = append(r.steps, st)
	if st.loadBound && st.lossPct() <= maxLossPct {
		r.loadBound, r.max = true, max(r.max, int(st.achieved()))
		return false
	}
	if st.pass {
		r.max, r.fails = st.rate, 0
		return true
	}
	r.fails++
	return r.fails < maxFails
}

// rateRounds runs the rate steps of every server, in rounds, each size in turn.
func (b *bench) rateRounds() error {
	for _, size := range b.o.sizes {
		for round := 1; round <= b.o.rounds; round++ {
			for _, s := range b.all {
				r, err := b.rateLadder(s, size)
				if err != nil {
					return fmt.Errorf("rate %s %d B round %d: %w", s.name, size, round, err)
				}
				r.round = round
				bound := ""
				if r.loadBound {
					bound = " (load-bound: at least)"
				}
				fmt.Fprintf(os.Stderr, "rate %d B round %d %-16s max %d/s%s\n", size, round, s.name, r.max, bound)
				b.rate = append(b.rate, r)
			}
		}
	}
	return nil
}

// allocation is one client socket with an allocation and a channel to its peer socket.
type allocation struct {
	client, peer *net.UDPConn
	relay        netip.AddrPort
	peerAddr     netip.AddrPort
}

func (b *bench) rateLadder(s server, size int) (rateResult, error) {
	res := rateResult{server: s.name, size: size}
	run, err := b.start(s, b.runDir(s, fmt.Sprintf("rate%d", size)), false)
	if err != nil {
		return res, err
	}
	defer run.stop()
	server := netip.MustParseAddrPort(srvIP + ":3478")
	var allocs []*allocation
	defer func() {
		for _, a := range allocs {
			_ = a.client.Close()
			_ = a.peer.Close()
		}
	}()
	for range b.o.rateConns {
		a := &allocation{}
		err := inNetns("peer", func() error {
			var err error
			a.peer, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(peerIP)})
			return err
		})
		if err != nil {
			return res, err
		}
		a.peerAddr = a.peer.LocalAddr().(*net.UDPAddr).AddrPort()
		allocs = append(allocs, a)
		if a.client, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(cliIP)}); err != nil {
			return res, err
		}
		if a.relay, err = allocateChannel(a.client, server, a.peerAddr); err != nil {
			return res, err
		}
	}
	toPeer, toClient, err := rateFlows(allocs, server, size)
	if err != nil {
		return res, err
	}
	defer toPeer.out.close()
	defer toClient.out.close()
	var sinks [2]*sink // at p0 (to peers), at c0 (to clients)
	if sinks[0], err = newSink("peer", "p0"); err != nil {
		return res, err
	}
	defer sinks[0].close()
	if sinks[1], err = newSink("", "c0"); err != nil {
		return res, err
	}
	defer sinks[1].close()
	// Warm up: neighbours resolved, the kernel's maps filled, the server's buffers grown.
	if _, err := b.rateStep(run, toPeer, toClient, sinks, b.o.rates[0], 500*time.Millisecond); err != nil {
		return res, err
	}
	b.acct.waitQuiet()
	for _, rate := range b.o.rates {
		st, err := b.quietRateStep(run, toPeer, toClient, sinks, rate, fmt.Sprintf("%d B %-16s", size, s.name))
		if err != nil {
			return res, err
		}
		if !res.add(st, b.o.rateFails) {
			break
		}
	}
	return res, nil
}

// quietRateStep takes a rate step, and again (up to -tries in all, after a wait for a quiet
// machine) while other processes used more than -max-other of the wall time of the
// server's core or of the load's: there they would count as the server's limit or as the
// load's. The last try is kept.
func (b *bench) quietRateStep(run *running, toPeer, toClient *flow, sinks [2]*sink, rate int, what string) (rateStep, error) {
	var st rateStep
	for try := 1; try <= b.o.tries; try++ {
		if try > 1 {
			b.acct.waitQuiet()
		}
		var err error
		if st, err = b.rateStep(run, toPeer, toClient, sinks, rate, b.o.rateStep); err != nil {
			return st, err
		}
		st.try = try
		u, sc, lc := st.u, b.o.serverCPU, b.o.loadCPU
		fmt.Fprintf(os.Stderr, "rate %s %7d/s try %d: sent %7.0f/s loss %6.2f%% (to peers %d/%d, to clients %d/%d) server core busy %3.0f%% (server process %3.0f%%, in no process %3.0f%%, others %3.0f%%) load core busy %3.0f%% (others %3.0f%%)\n",
			what, rate, try, st.achieved(), st.lossPct(), st.recv[0], st.sent[0], st.recv[1], st.sent[1],
			100*u.busy[sc]/u.wall, 100*u.server[sc]/u.wall, 100*u.unowned[sc]/u.wall, 100*u.others[sc]/u.wall,
			100*u.busy[lc]/u.wall, 100*u.others[lc]/u.wall)
		if max(u.others[sc], u.others[lc]) <= b.o.maxOther*u.wall {
			break
		}
	}
	return st, nil
}

// rateStep sends rate messages per second, half each way, for d and counts what arrived.
func (b *bench) rateStep(run *running, toPeer, toClient *flow, sinks [2]*sink, rate int, d time.Duration) (rateStep, error) {
	st := rateStep{rate: rate}
	var c0 [2]uint64
	for i, s := range sinks {
		n, err := s.count()
		if err != nil {
			return st, err
		}
		c0[i] = n
	}
	r0, err := b.acct.read()
	if err != nil {
		return st, err
	}
	until := time.Now().Add(d)
	var wg sync.WaitGroup
	var errs [2]error
	for i, f := range []*flow{toPeer, toClient} {
		f.sent = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.run(float64(rate)/2, until)
		}()
	}
	wg.Wait()
	r1, err := b.acct.read()
	if err != nil {
		return st, err
	}
	if err := errors.Join(errs[:]...); err != nil {
		return st, err
	}
	time.Sleep(200 * time.Millisecond) // what is still in flight
	for i, s := range sinks {
		n, err := s.count()
		if err != nil {
			return st, err
		}
		st.recv[i] = n - c0[i]
	}
	st.sent = [2]uint64{uint64(toPeer.sent), uint64(toClient.sent)}
	st.u = b.acct.window(r0, r1)
	st.wall = d.Seconds()
	st.loadBound = st.achieved() < minAchieved*float64(rate)
	st.pass = !st.loadBound && st.lossPct() <= maxLossPct // a load-bound step with loss fails
	return st, nil
}

// rateFlows makes the two directions of the load: ChannelData of size bytes from each
// client to the server, and size-byte datagrams from each peer to its relay address.
func rateFlows(allocs []*allocation, server netip.AddrPort, size int) (toPeer, toClient *flow, err error) {
	var mac [4]net.HardwareAddr // c0, s0, p0, s1
	for i, d := range []struct{ ns, dev string }{{"", "c0"}, {"srv", "s0"}, {"peer", "p0"}, {"srv", "s1"}} {
		if mac[i], err = macOf(d.ns, d.dev); err != nil {
			return nil, nil, err
		}
	}
	cd := make([]byte, 4+size)
	binary.BigEndian.PutUint16(cd, channel)
	binary.BigEndian.PutUint16(cd[2:], uint16(size))
	var up, down [][]byte
	for _, a := range allocs {
		from := a.client.LocalAddr().(*net.UDPAddr).AddrPort()
		up = append(up, udpFrame(mac[0], mac[1], from, server, cd))
		down = append(down, udpFrame(mac[2], mac[3], a.peerAddr, a.relay, make([]byte, size)))
	}
	toPeer, toClient = &flow{}, &flow{}
	if toPeer.out, err = newFrameSender("", "c0", up); err != nil {
		return nil, nil, err
	}
	if toClient.out, err = newFrameSender("peer", "p0", down); err != nil {
		toPeer.out.close()
		return nil, nil, err
	}
	return toPeer, toClient, nil
}

// flow is one direction of the load, paced to a rate.
type flow struct {
	out  *frameSender
	sent int64
}

func (f *flow) run(rate float64, until time.Time) error {
	// Send when a batch of at least 50 µs worth is due: fewer wake-ups at high rates, and
	// short enough bursts for the receiving backlog at any rate.
	least := max(1, min(batchMax, int64(rate*50e-6)))
	t0 := time.Now()
	for {
		now := time.Now()
		if now.After(until) {
			return nil
		}
		due := int64(rate*now.Sub(t0).Seconds()) - f.sent
		if due < least {
			time.Sleep(time.Duration(float64(least-due) / rate * 1e9))
			continue
		}
		n := min(due, batchMax)
		if err := f.out.send(int(n)); err != nil {
			return err
		}
		f.sent += n
	}
}

// allocateChannel makes a UDP allocation on conn with the long-term credentials and binds
// channel 0x4000 to peer; it returns the relayed address.
func allocateChannel(conn *net.UDPConn, server, peer netip.AddrPort) (netip.AddrPort, error) {
	transport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	m, err := roundTrip(conn, server, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	var nonce stun.Nonce
	var rlm stun.Realm
	if nonce.GetFrom(m) != nil || rlm.GetFrom(m) != nil {
		return netip.AddrPort{}, fmt.Errorf("allocate: no 401 with a nonce and a realm: %v", m)
	}
	signed := func(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
		all := append([]stun.Setter{stun.NewType(method, stun.ClassRequest)}, attrs...)
		all = append(all, stun.NewUsername(user), rlm, nonce, stun.NewLongTermIntegrity(user, rlm.String(), pass), stun.Fingerprint)
		m, err := roundTrip(conn, server, all...)
		if err == nil && m.Type.Class != stun.ClassSuccessResponse {
			var code stun.ErrorCodeAttribute
			_ = code.GetFrom(m)
			err = fmt.Errorf("%s: %v", method, code)
		}
		return m, err
	}
	if m, err = signed(stun.MethodAllocate, transport); err != nil {
		return netip.AddrPort{}, err
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
		return netip.AddrPort{}, fmt.Errorf("allocate: %w", err)
	}
	ip, _ := netip.AddrFromSlice(relayed.IP)
	number := stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{channel >> 8, channel & 0xff, 0, 0}}
	peerAttr := stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}
	bind := func(m *stun.Message) error { return peerAttr.AddToAs(m, stun.AttrXORPeerAddress) }
	if _, err := signed(stun.MethodChannelBind, number, setterFunc(bind)); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(relayed.Port)), nil
}

type setterFunc func(*stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

// roundTrip sends a request and returns the response with its transaction ID.
func roundTrip(conn *net.UDPConn, server netip.AddrPort, setters ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	for range 5 {
		if _, err := conn.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return nil, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() == nil && m.TransactionID == req.TransactionID {
				_ = conn.SetReadDeadline(time.Time{})
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("no response to %s", req.Type)
}
