package test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestSpoofedFloodSparesStreams: unauthenticated UDP requests from an IP, which anyone can
// send with that IP forged, use up the IP's answer cap (the cap against reflection), but
// TURN-over-TCP clients from that IP still allocate: a stream connection is capped on its
// own. The attacker's review locked out 5 of 5 TCP clients with 60 datagrams a second.
func TestSpoofedFloodSparesStreams(t *testing.T) {
	s, port := newSetup(t, 10)
	s.unauthRate = 2
	startFerry(t, s.toml())
	server := addrString("127.0.0.1", port)

	flood, err := net.Dial("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		paced(ctx, time.Second/60, func() {
			m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP)
			_, _ = flood.Write(m.Raw)
		})
	})
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, "the flood to use up the IP's cap", func() bool {
		return scrape(t, s.metricsAddr)["ferry_unauthenticated_dropped_total"] >= 10
	})

	for i := range 5 {
		c := dialRaw(t, "tcp", server, testUser, testPass)
		relayed := c.allocate() // an unauthenticated request first, for the nonce
		t.Logf("TCP client %d allocated %v during the flood", i, relayed)
		mustSucceed(t, "Refresh 0", c.request(stun.MethodRefresh, lifetime(0)))
	}
}
