package turnserver

import (
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestUDPListenerWakesUp: a datagram that arrives while the listener's loop is busy with
// the previous one is read once the loop is free, without waiting for yet another datagram.
// The loop is held busy deterministically: an Allocate waits inside it for the table's lock,
// which the test holds while the next request arrives and the runtime's poller sees it.
func TestUDPListenerWakesUp(t *testing.T) {
	s := newTestServer(t, 27300, 27304, withLimits(Limits{AllocationsPerUser: 1}))
	newClient(t, s, "udp").allocate(t) // alice's one: the Allocates below wait for the lock, then get 486
	c := newClient(t, s, "udp")        // one client: its datagrams reach one socket of the listener
	allocates := s.meters.requests.own[stun.MethodAllocate]
	polled := netpollProbe(t)
	for range 10 {
		allocate := c.signed(t, stun.MethodAllocate, udpTransport)
		binding, err := stun.Build(stun.TransactionID, stun.BindingRequest)
		if err != nil {
			t.Fatal(err)
		}
		func() {
			s.table.mu.Lock()
			defer s.table.mu.Unlock()
			taken := allocates.Get() + 1
			c.write(t, allocate.Raw)
			waitFor(t, "the listener to take the Allocate", func() bool { return allocates.Get() == taken })
			c.write(t, binding.Raw)
			polled()
		}()
		wantCode(t, c.await(t, allocate), stun.CodeAllocQuotaReached)
		if resp := c.await(t, binding); resp.Type != stun.BindingSuccess {
			t.Fatalf("Binding answered %v", resp)
		}
	}
}

// TestUDPRelayWakesUp: a peer's datagram that arrives while the relay's read loop is busy
// with the previous one is relayed once the loop is free, without waiting for yet another
// datagram. The loop is held busy deterministically: it waits to write to its TCP client,
// whose write lock the test holds while the next datagram arrives.
func TestUDPRelayWakesUp(t *testing.T) {
	s := newTestServer(t, 27305, 27309)
	r := newRelayed(t, s, "tcp")
	a := r.alloc(s)
	client := a.client.(*streamConn)
	polled := netpollProbe(t)
	for range 10 {
		func() {
			client.wmu.Lock()
			defer client.wmu.Unlock()
			read := a.traffic.Usage().FromPeerPackets + 1
			writeTo(t, r.channel, "busy", r.relay)
			waitFor(t, "the relay to read the datagram", func() bool { return a.traffic.Usage().FromPeerPackets == read })
			writeTo(t, r.channel, "next", r.relay)
			polled()
		}()
		r.expectChannelData(t, "busy")
		r.expectChannelData(t, "next")
	}
}

// netpollProbe returns a function that waits until the runtime's network poller has run
// after the call: a datagram sent to a socket whose reader is parked in the poller comes
// back only through it, and the poller delivers every readiness that came before.
func netpollProbe(t *testing.T) func() {
	t.Helper()
	probe := listenPeer(t, "127.0.0.1")
	got := make(chan struct{})
	go func() {
		buf := make([]byte, 16)
		for {
			if _, _, err := probe.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			got <- struct{}{}
		}
	}()
	sender, err := net.DialUDP("udp", nil, probe.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sender.Close() })
	return func() {
		mustWrite(t, sender, []byte("probe"))
		select {
		case <-got:
		case <-time.After(readTimeout):
			t.Fatal("the probe datagram did not come back")
		}
	}
}
