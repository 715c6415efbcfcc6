package turnserver

import (
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/internal/udpbatch"
)

// TestDataPathAllocs: the server relays a datagram without allocating, either way: the
// listener's datagram path for ChannelData and Send indications (lookup, checks, the relay
// socket's write), and a relay's framing of a peer's datagram as ChannelData or a Data
// indication and its write to the client.
func TestDataPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not counted under the race detector")
	}
	s := newTestServer(t, 27250, 27254)
	r := newRelayed(t, s, "udp")
	l, rl, client := s.listeners[0], r.alloc(s).relays[0], r.local()
	w, out, msg := &udpReply{sock: l.socks[0]}, &relayBatch{}, &stun.Message{}
	channelData := channelDataFrame(testChannel, "payload", false)
	send := sendIndication(t, addrOf(r.permitted), "payload")
	frame := make([]byte, turnwire.Headroom+len("payload"), turnwire.Headroom+len("payload")+turnwire.Tailroom)
	frames, from := make([][]byte, 1), make([]netip.AddrPort, 1)
	fromPeer := func(peer netip.AddrPort) func() {
		return func() {
			frames[0], from[0] = frame, peer
			rl.toClient(frames, from)
		}
	}
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"ChannelData to the peer", func() { l.datagram(channelData, client, w, msg, out, time.Now()); out.flush() }},
		{"Send indication to the peer", func() { l.datagram(send, client, w, msg, out, time.Now()); out.flush() }},
		{"peer's datagram as ChannelData", fromPeer(addrOf(r.channel))},
		{"peer's datagram as a Data indication", fromPeer(addrOf(r.permitted))},
	} {
		if n := testing.AllocsPerRun(200, tc.run); n != 0 {
			t.Errorf("%s: %v allocations per datagram", tc.name, n)
		}
	}
	if u := sessionOf(t, s, r.ctlClient); u.ToPeerPackets < 400 {
		t.Fatalf("only %d datagrams went to peers: the runs did not relay", u.ToPeerPackets)
	}
}

// BenchmarkChannelData is a round trip through a live server over UDP: the client's
// ChannelData to the peer, and the peer's datagram back to the client as ChannelData. Its
// allocations are the whole process's, server included: the data path must make none.
func BenchmarkChannelData(b *testing.B) {
	s := newTestServer(b, 27255, 27259)
	r := newRelayed(b, s, "udp")
	payload := make([]byte, 200)
	frame := channelDataFrame(testChannel, string(payload), false)
	buf := make([]byte, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		// A lost datagram fails the benchmark rather than hang it.
		deadline := time.Now().Add(readTimeout)
		_ = r.conn.SetReadDeadline(deadline)
		_ = r.channel.SetReadDeadline(deadline)
		if _, err := r.conn.Write(frame); err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.channel.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := r.channel.WriteToUDPAddrPort(payload, r.relay); err != nil {
			b.Fatal(err)
		}
		if _, err := r.conn.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChannelDataParallel relays ChannelData from several goroutines at once, each with
// an allocation and a peer of its own, through the listener's datagram path as its read
// loops run it: the lookup, the checks and the relay socket's write ("server"). A lock
// shared on that path would keep ns/op from falling as -cpu grows. "sockets" makes the same
// writes without the server: how far they scale on this machine at best.
func BenchmarkChannelDataParallel(b *testing.B) {
	b.Run("server", func(b *testing.B) {
		s := newTestServer(b, 27260, 27279)
		clients := make([]*relayedClient, runtime.GOMAXPROCS(0))
		for i := range clients {
			clients[i] = newRelayed(b, s, "udp")
		}
		l := s.listeners[0]
		frame := channelDataFrame(testChannel, string(make([]byte, 200)), false)
		var next atomic.Int32
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			client := clients[next.Add(1)-1].local()
			w, out, msg := &udpReply{sock: l.socks[0]}, &relayBatch{}, &stun.Message{}
			for pb.Next() {
				l.datagram(frame, client, w, msg, out, time.Now())
				out.flush()
			}
		})
	})
	b.Run("sockets", func(b *testing.B) {
		payload := [][]byte{make([]byte, 200)}
		b.RunParallel(func(pb *testing.PB) {
			sock, err := udpbatch.NewConn(listenPeer(b, "127.0.0.1"))
			if err != nil {
				b.Error(err)
				return
			}
			to, w := addrOf(listenPeer(b, "127.0.0.1")), udpbatch.NewWriter(readBatch)
			for pb.Next() {
				_ = w.WriteTo(sock, payload, to)
			}
		})
	})
}
