package relay

import (
	"net"
	"net/netip"
	"testing"
)

// TestLocalPeerHandOff: a relay's datagrams to the local peer, and the local peer's to a
// relay whose Inbound handler is set, skip the kernel; the advertised addresses stand in for
// the sockets' on both sides, and the relay counts the traffic.
func TestLocalPeerHandOff(t *testing.T) {
	a := newAllocator(t, v4Only(63150, 63159))
	conn, relayed := allocUDP(t, a, 0)
	rl, ok := a.UDPRelay(relayed.Port())
	if !ok {
		t.Fatal("no UDPRelay for a UDP allocation")
	}
	peer := netip.AddrPortFrom(public4, 63999) // not bound: only the hand-off can reach it
	type got struct {
		msg  string
		from netip.AddrPort
	}
	atPeer := make(chan got, 1)
	a.SetLocalPeer(&LocalPeer{Addr: peer, Deliver: func(p []byte, from netip.AddrPort) {
		atPeer <- got{string(p), from}
	}})

	// A v4-mapped address, as pion's *net.UDPAddr gives it, names the peer too.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(public4.As16()), peer.Port())
	if _, err := conn.WriteTo([]byte("to sfu"), net.UDPAddrFromAddrPort(mapped)); err != nil {
		t.Fatal(err)
	}
	if g := <-atPeer; g.msg != "to sfu" || g.from != relayed {
		t.Fatalf("local peer got %q from %v, want %q from %v", g.msg, g.from, "to sfu", relayed)
	}

	if a.Deliver(relayed, []byte("no handler")) {
		t.Fatal("Deliver took a datagram for a relay without an Inbound handler")
	}
	atRelay := make(chan got, 1)
	rl.SetInbound(func(frames [][]byte, from []netip.AddrPort) {
		atRelay <- got{string(frames[0][Headroom:]), from[0]}
	})
	if !a.Deliver(relayed, []byte("from sfu")) {
		t.Fatal("Deliver refused a datagram for a relay with an Inbound handler")
	}
	if g := <-atRelay; g.msg != "from sfu" || g.from != peer {
		t.Fatalf("relay got %q from %v, want %q from %v", g.msg, g.from, "from sfu", peer)
	}
	if a.Deliver(netip.AddrPortFrom(public4, 63158), []byte("x")) {
		t.Fatal("Deliver took a datagram for a port without a relay")
	}
	u, _ := a.Traffic(relayed.Port())
	if use := u.Usage(); use.ToPeerPackets != 1 || use.FromPeerPackets != 1 {
		t.Fatalf("traffic %+v, want one packet each way", use)
	}

	// Once the relay closes, its port takes nothing in process.
	_ = conn.Close()
	if a.Deliver(relayed, []byte("closed")) {
		t.Fatal("Deliver took a datagram for a closed relay")
	}
	a.SetLocalPeer(nil)
	_, relayed2 := allocUDP(t, a, 0)
	rl2, _ := a.UDPRelay(relayed2.Port())
	rl2.SetInbound(func([][]byte, []netip.AddrPort) {})
	if a.Deliver(relayed2, []byte("no peer")) {
		t.Fatal("Deliver works without a local peer")
	}
}
