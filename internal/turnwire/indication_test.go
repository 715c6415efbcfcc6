package turnwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

// pionPeer is XOR-PEER-ADDRESS as pion's encoder writes it, so that the messages ParseSend
// is tested on are not written by the code under test.
type pionPeer netip.AddrPort

func (p pionPeer) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(p)
	return stun.XORMappedAddress{IP: net.IP(ap.Addr().AsSlice()), Port: int(ap.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}

func dataAttr(b string) stun.Setter { return stun.RawAttribute{Type: stun.AttrData, Value: []byte(b)} }

var sendType = stun.NewType(stun.MethodSend, stun.ClassIndication)

// buildSend is a Send indication as pion builds it, with setters after its header.
func buildSend(t testing.TB, setters ...stun.Setter) []byte {
	t.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID, sendType}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// appendAttr appends an attribute to the message msg by hand, padded, and fixes the header.
func appendAttr(msg []byte, typ stun.AttrType, value []byte) []byte {
	msg = binary.BigEndian.AppendUint16(msg, uint16(typ))
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(value)))
	msg = append(msg, value...)
	msg = append(msg, make([]byte, pad4(len(value))-len(value))...)
	binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)-HeaderSize))
	return msg
}

var (
	peer4 = netip.MustParseAddrPort("198.51.100.7:40000")
	peer6 = netip.MustParseAddrPort("[2001:db8::7]:40001")
)

func TestMessageTypes(t *testing.T) {
	if v := sendType.Value(); v != sendIndication {
		t.Errorf("Send indication is %#04x, not %#04x", v, sendIndication)
	}
	if v := stun.NewType(stun.MethodData, stun.ClassIndication).Value(); v != dataIndication {
		t.Errorf("Data indication is %#04x, not %#04x", v, dataIndication)
	}
}

func TestParseSend(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		peer netip.AddrPort
		data string
	}{
		{"IPv4", buildSend(t, pionPeer(peer4), dataAttr("hello")), peer4, "hello"},
		{"IPv6", buildSend(t, pionPeer(peer6), dataAttr("hello!!!")), peer6, "hello!!!"},
		{"DATA first", buildSend(t, dataAttr("x"), pionPeer(peer4)), peer4, "x"},
		{"empty DATA", buildSend(t, pionPeer(peer4), dataAttr("")), peer4, ""},
		{"FINGERPRINT", buildSend(t, pionPeer(peer4), dataAttr("hello"), stun.Fingerprint), peer4, "hello"},
		{"optional unknown", buildSend(t, pionPeer(peer4), stun.RawAttribute{Type: 0xC0DE, Value: []byte{1}}, dataAttr("a")), peer4, "a"},
		{"DONT-FRAGMENT", buildSend(t, pionPeer(peer4), stun.RawAttribute{Type: stun.AttrDontFragment}, dataAttr("a")), peer4, "a"},
		{"unknown after MESSAGE-INTEGRITY is ignored", buildSend(t, pionPeer(peer4), dataAttr("a"), stun.MessageIntegrity("k"),
			stun.RawAttribute{Type: stun.AttrChangeRequest, Value: make([]byte, 4)}), peer4, "a"},
	} {
		peer, data, err := ParseSend(tc.msg)
		if err != nil || peer != tc.peer || string(data) != tc.data {
			t.Errorf("%s: ParseSend = %v, %q, %v; want %v, %q", tc.name, peer, data, err, tc.peer, tc.data)
		}
	}
}

func TestParseSendInPlace(t *testing.T) {
	msg := buildSend(t, pionPeer(peer4), dataAttr("hello")) // DATA last: its value 8 bytes from the end
	if _, data, err := ParseSend(msg); err != nil || &data[0] != &msg[len(msg)-8] {
		t.Errorf("ParseSend = %q, %v; want DATA in place", data, err)
	}
}

func TestParseSendRefuses(t *testing.T) {
	good := buildSend(t, pionPeer(peer4), dataAttr("hello"))
	withFP := buildSend(t, pionPeer(peer4), dataAttr("hello"), stun.Fingerprint)
	flippedFP := bytes.Clone(withFP)
	flippedFP[len(flippedFP)-1] ^= 1
	flippedBody := bytes.Clone(withFP)
	flippedBody[len(flippedBody)-12] ^= 1 // a byte of DATA under the FINGERPRINT
	wrongCookie := bytes.Clone(good)
	wrongCookie[4] ^= 1
	longPeer := buildSend(t, dataAttr("x"))
	longPeer = appendAttr(longPeer, stun.AttrXORPeerAddress, append([]byte{0, FamilyIPv4}, make([]byte, 18)...))
	shortLength := bytes.Clone(good)
	binary.BigEndian.PutUint16(shortLength[2:], uint16(len(good)-HeaderSize-4))
	unaligned := append(bytes.Clone(good), 0, 0)
	binary.BigEndian.PutUint16(unaligned[2:], uint16(len(unaligned)-HeaderSize))
	valuePast := bytes.Clone(good)
	binary.BigEndian.PutUint16(valuePast[len(valuePast)-12+2:], 9) // DATA "hello" claims 9 bytes
	// A FINGERPRINT that matches, computed with the length of the message it is not the end
	// of: only its position is wrong.
	fpInside := appendAttr(appendAttr(bytes.Clone(good), stun.AttrFingerprint, make([]byte, 4)), stun.AttrSoftware, []byte("x"))
	binary.BigEndian.PutUint32(fpInside[len(good)+AttrHeaderSize:], crc32.ChecksumIEEE(fpInside[:len(good)])^fingerprintXOR)

	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"too short", good[:HeaderSize-1], ErrNotSend},
		{"Data indication", buildData(t), ErrNotSend},
		{"Send request", func() []byte { b := bytes.Clone(good); b[1] = 0x06; return b }(), ErrNotSend},
		{"wrong magic cookie", wrongCookie, ErrNotSend},
		{"trailing byte", append(bytes.Clone(good), 0), ErrMalformed},
		{"truncated", good[:len(good)-4], ErrMalformed},
		{"length short of the datagram", shortLength, ErrMalformed},
		{"length not a multiple of 4", unaligned, ErrMalformed},
		{"value past the end", valuePast, ErrMalformed},
		{"peer of the wrong length", longPeer, ErrMalformed},
		{"two peers", buildSend(t, pionPeer(peer4), pionPeer(peer6), dataAttr("x")), ErrMalformed},
		{"two DATA", buildSend(t, pionPeer(peer4), dataAttr("x"), dataAttr("y")), ErrMalformed},
		{"FINGERPRINT of 8 bytes", appendAttr(bytes.Clone(good), stun.AttrFingerprint, make([]byte, 8)), ErrMalformed},
		{"FINGERPRINT mismatch", flippedFP, ErrFingerprint},
		{"message changed under FINGERPRINT", flippedBody, ErrFingerprint},
		{"FINGERPRINT not last", appendAttr(bytes.Clone(withFP), stun.AttrSoftware, []byte("x")), ErrFingerprint},
		{"matching FINGERPRINT not last", fpInside, ErrFingerprint},
		{"unknown required", buildSend(t, pionPeer(peer4), stun.RawAttribute{Type: stun.AttrChangeRequest, Value: make([]byte, 4)}, dataAttr("x")), ErrUnknownAttribute},
		{"no peer", buildSend(t, dataAttr("x")), ErrNoPeer},
		{"no DATA", buildSend(t, pionPeer(peer4)), ErrNoData},
		{"DATA after MESSAGE-INTEGRITY", buildSend(t, pionPeer(peer4), stun.MessageIntegrity("k"), dataAttr("x")), ErrNoData},
		{"peer after MESSAGE-INTEGRITY-SHA256", buildSend(t, dataAttr("x"), MessageIntegritySHA256("k"), pionPeer(peer4)), ErrNoPeer},
	} {
		peer, data, err := ParseSend(tc.msg)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: ParseSend = %v, %q, %v; want %v", tc.name, peer, data, err, tc.want)
		}
		if err != nil && (peer.IsValid() || data != nil) {
			t.Errorf("%s: ParseSend returned %v, %q with its error", tc.name, peer, data)
		}
		if n := testing.AllocsPerRun(10, func() { _, _, _ = ParseSend(tc.msg) }); n != 0 {
			t.Errorf("%s: ParseSend allocates %v times to refuse", tc.name, n)
		}
	}
}

// The error reasons are distinct: a caller counts drops by them.
func TestParseSendErrorsDistinct(t *testing.T) {
	errs := []error{ErrNotSend, ErrMalformed, ErrFingerprint, ErrUnknownAttribute, ErrNoPeer, ErrNoData}
	for i, a := range errs {
		for j, b := range errs {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v is %v", a, b)
			}
		}
	}
}

func TestParseSendAllocs(t *testing.T) {
	good := buildSend(t, pionPeer(peer6), dataAttr("hello"), stun.Fingerprint)
	if n := testing.AllocsPerRun(100, func() { _, _, _ = ParseSend(good) }); n != 0 {
		t.Errorf("ParseSend allocates %v times", n)
	}
}

// buildData is a Data indication, which is not what ParseSend reads.
func buildData(t *testing.T) []byte {
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication), pionPeer(peer4), dataAttr("x"))
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// A framed Data indication is what pion decodes: the right type, XOR-PEER-ADDRESS as
// pion's decoder reads it, the DATA, padded in the message, framed in place.
func TestFrameDataIndication(t *testing.T) {
	for _, tc := range []struct {
		peer    netip.AddrPort
		payload string
	}{
		{peer4, "hello"},
		{peer6, "hello"},
		{peer6, "four"},
		{peer4, ""},
		{netip.MustParseAddrPort("[::ffff:198.51.100.7]:1"), "mapped"},
	} {
		frame := peerFrame([]byte(tc.payload))
		out := FrameDataIndication(frame, tc.peer)
		if out == nil {
			t.Fatalf("FrameDataIndication(%v, %q) = nil", tc.peer, tc.payload)
		}
		if &out[len(out)-pad4(len(tc.payload))-AttrHeaderSize] != &frame[Headroom-AttrHeaderSize] {
			t.Errorf("%v: not framed in place", tc.peer)
		}
		if len(out)%4 != 0 || !bytes.Equal(out[len(out)-(pad4(len(tc.payload))-len(tc.payload)):], make([]byte, pad4(len(tc.payload))-len(tc.payload))) {
			t.Errorf("%v %q: %x is not padded with zeros", tc.peer, tc.payload, out)
		}
		var m stun.Message
		if err := stun.Decode(out, &m); err != nil {
			t.Fatalf("pion cannot decode %x: %v", out, err)
		}
		var pion stun.XORMappedAddress
		if err := pion.GetFromAs(&m, stun.AttrXORPeerAddress); err != nil {
			t.Fatal(err)
		}
		data, err := m.Get(stun.AttrData)
		ip, _ := netip.AddrFromSlice(pion.IP)
		if m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) || netip.AddrPortFrom(ip, uint16(pion.Port)) != tc.peer ||
			err != nil || string(data) != tc.payload || len(m.Attributes) != 2 {
			t.Errorf("pion decodes %v from %v, %q: peer %v:%d, DATA %q, %v", m, tc.peer, tc.payload, pion.IP, pion.Port, data, err)
		}
	}
}

func TestFrameDataIndicationTransactionIDs(t *testing.T) {
	seen := map[[stun.TransactionIDSize]byte]bool{}
	for range 100 {
		out := FrameDataIndication(peerFrame([]byte("x")), peer4)
		id := [stun.TransactionIDSize]byte(out[8:HeaderSize])
		if seen[id] {
			t.Fatalf("transaction ID %x twice in 100 indications", id)
		}
		seen[id] = true
	}
}

func TestFrameDataIndicationRefuses(t *testing.T) {
	noTail := make([]byte, Headroom+5)
	huge := make([]byte, Headroom+math.MaxUint16-8, Headroom+math.MaxUint16+Tailroom)
	for name, out := range map[string][]byte{
		"shorter than Headroom": FrameDataIndication(make([]byte, Headroom-1, Headroom+8), peer4),
		"no tailroom to pad":    FrameDataIndication(noTail, peer4),
		"too long":              FrameDataIndication(huge, peer4),
		"no peer":               FrameDataIndication(peerFrame([]byte("x")), netip.AddrPort{}),
	} {
		if out != nil {
			t.Errorf("%s: FrameDataIndication = %x; want nil", name, out)
		}
	}
	if FrameDataIndication(noTail[:Headroom+4], peer4) == nil {
		t.Error("FrameDataIndication needs tailroom for a datagram that needs no padding")
	}
}

func TestFrameDataIndicationAllocs(t *testing.T) {
	frame := peerFrame([]byte("hello"))
	if n := testing.AllocsPerRun(100, func() { FrameDataIndication(frame, peer6) }); n != 0 {
		t.Errorf("FrameDataIndication allocates %v times", n)
	}
}
