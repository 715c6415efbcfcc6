package turnserver

import (
	"net"
	"testing"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// FuzzListeners feeds each input to a live server as a UDP datagram and as a TCP byte stream;
// the server must stay up and keep answering Binding requests.
func FuzzListeners(f *testing.F) {
	s := newTestServer(f, 45340, 45349)
	binding, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	allocate, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		testkit.Attr(stun.AttrRequestedTransport, []byte{17, 0, 0, 0}))
	send, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		testkit.Attr(stun.AttrXORPeerAddress, []byte{0, 1, 0, 0}), testkit.Attr(stun.AttrData, []byte("x")))
	for _, seed := range [][]byte{binding.Raw, allocate.Raw, send.Raw,
		{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, {0x40, 0x00, 0xff, 0xff}, {0x7f, 0xff, 0, 0},
		binding.Raw[:19], append(append([]byte{}, binding.Raw...), 0, 0, 0, 0), {}} {
		f.Add(seed)
	}
	udp := dialCtl(f, "udp", s.Addrs()[0].String())
	f.Fuzz(func(t *testing.T, data []byte) {
		mustWrite(t, udp.conn, data)
		tcp, err := net.Dial("tcp", s.Addrs()[1].String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = tcp.Write(data)
		_ = tcp.Close()
		// A panic on a stream's goroutine ends the process; the UDP listener must still answer.
		if resp := udp.roundTrip(t, stun.BindingRequest); resp.Type != stun.BindingSuccess {
			t.Fatalf("Binding answered %v", resp.Type)
		}
	})
}
