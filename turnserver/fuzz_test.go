package turnserver

import (
	"bytes"
	"encoding/binary"
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

// FuzzXORPeerAddress: the decoder accepts exactly the values whose length fits their family
// (8 bytes for IPv4, 20 for IPv6) and reads them so that encoding the result gives the same
// value back; it never panics, whatever the value.
func FuzzXORPeerAddress(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 1, 0x21, 0x13, 0x5e, 0x12, 0xa4, 0x43}, {0, 1, 0x21, 0x13, 0x5e}, {0, 1, 0x21, 0x13, 0x5e, 0x12, 0xa4},
		append([]byte{0, 2, 0x21, 0x13}, make([]byte, 16)...), append([]byte{0, 2, 0x21, 0x13}, make([]byte, 15)...),
		{0, 3, 0, 0, 1, 2, 3, 4}, {0, 1, 0}, {}} {
		f.Add(seed, []byte("0123456789ab"))
	}
	f.Fuzz(func(t *testing.T, value, id []byte) {
		var txID [stun.TransactionIDSize]byte
		copy(txID[:], id)
		peer, ok := xorPeerAddress(value, txID)
		fits := len(value) >= 2 && ((value[1] == 1 && len(value) == 8) || (value[1] == 2 && len(value) == 20))
		if ok != fits {
			t.Fatalf("xorPeerAddress(%x) ok = %v, want %v", value, ok, fits)
		}
		if !ok {
			return
		}
		key := binary.BigEndian.AppendUint32(nil, magicCookie)
		key = append(key, txID[:]...)
		again := make([]byte, len(value))
		putXORAddress(again, peer, key)
		if !bytes.Equal(again[1:], value[1:]) {
			t.Fatalf("xorPeerAddress(%x) = %v, which encodes as %x", value, peer, again)
		}
	})
}
