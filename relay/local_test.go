package relay

import (
	"fmt"
	"net/netip"
	"testing"
)

// TestLocalHandOff: a batch a relay sends to the local peer's address reaches the peer with
// the relay's advertised address as its source; a batch the peer, or another relay, sends to
// a relay's address reaches that relay with the sender's address as its source; anything
// else is refused, so the caller sends it through the kernel.
func TestLocalHandOff(t *testing.T) {
	pool := mustPool(t, 31950, 31959)
	l := NewLocal(pool)
	peerAddr := netip.MustParseAddrPort("203.0.113.10:31950")
	relayAddr := netip.MustParseAddrPort("203.0.113.10:31951")
	var atPeer, atRelay []string
	record := func(into *[]string) func([][]byte, netip.AddrPort) {
		return func(datagrams [][]byte, from netip.AddrPort) {
			for _, d := range datagrams {
				*into = append(*into, fmt.Sprintf("%s from %v", d, from))
			}
		}
	}
	batch := [][]byte{[]byte("a"), []byte("b")}
	if l.ToPeer(peerAddr, batch, relayAddr) {
		t.Fatal("ToPeer handed over without a local peer")
	}
	l.SetPeer(&LocalSocket{Addr: peerAddr, Deliver: record(&atPeer)})
	r := &LocalSocket{Addr: relayAddr, Deliver: record(&atRelay)}
	if l.ToRelay(relayAddr, batch, peerAddr) {
		t.Fatal("ToRelay handed over to a relay not added")
	}
	l.AddRelay(r)

	mapped := netip.AddrPortFrom(netip.AddrFrom16(peerAddr.Addr().As16()), peerAddr.Port())
	if !l.ToPeer(mapped, batch, relayAddr) || !l.ToRelay(relayAddr, batch, peerAddr) {
		t.Fatal("a hand-off between the local peer and an added relay was refused")
	}
	if want := "[a from 203.0.113.10:31951 b from 203.0.113.10:31951]"; fmt.Sprint(atPeer) != want {
		t.Fatalf("the peer got %v, want %s", atPeer, want)
	}
	if want := "[a from 203.0.113.10:31950 b from 203.0.113.10:31950]"; fmt.Sprint(atRelay) != want {
		t.Fatalf("the relay got %v, want %s", atRelay, want)
	}
	for _, to := range []string{"203.0.113.11:31951", "203.0.113.10:31952", "203.0.113.10:40000"} {
		if l.ToRelay(netip.MustParseAddrPort(to), batch, peerAddr) {
			t.Errorf("ToRelay handed over to %s, where no relay is", to)
		}
	}
	if l.ToPeer(netip.MustParseAddrPort("203.0.113.10:31953"), batch, relayAddr) {
		t.Error("ToPeer handed over to an address that is not the peer's")
	}

	other := &LocalSocket{Addr: relayAddr, Deliver: record(&atRelay)}
	l.AddRelay(other) // a new relay on the port
	l.RemoveRelay(r)  // the old one's removal must not take it away
	if !l.ToRelay(relayAddr, batch, peerAddr) {
		t.Fatal("removing an old relay removed the port's new one")
	}
	// Another relay of the process hands over too (two clients of one Ferry), with its own
	// address as the source.
	atRelay = nil
	relay2 := netip.MustParseAddrPort("203.0.113.10:31954")
	if !l.ToRelay(relayAddr, batch[:1], relay2) || fmt.Sprint(atRelay) != "[a from 203.0.113.10:31954]" {
		t.Fatalf("relay to relay: the relay got %v", atRelay)
	}
	l.RemoveRelay(other)
	l.SetPeer(nil)
	if l.ToRelay(relayAddr, batch, peerAddr) || l.ToPeer(peerAddr, batch, relayAddr) {
		t.Fatal("a hand-off after the relay and the peer went away")
	}
}
