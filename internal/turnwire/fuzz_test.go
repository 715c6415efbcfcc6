package turnwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

var fuzzTxID = [stun.TransactionIDSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

// pionAddr decodes the XOR address of type typ in m with pion's decoder; pion reads the
// reserved first byte as part of the family, which RFC 8489 section 14.1 says to ignore,
// so it is cleared first (in m's own copy of the message).
func pionAddr(m *stun.Message, typ stun.AttrType) (netip.AddrPort, error) {
	v, err := m.Get(typ)
	if err != nil {
		return netip.AddrPort{}, err
	}
	v[0] = 0
	var a stun.XORMappedAddress
	if err := a.GetFromAs(m, typ); err != nil {
		return netip.AddrPort{}, err
	}
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip, uint16(a.Port)), nil
}

// FuzzXORAddress: exactly the values of 8 bytes of family IPv4 and 20 of family IPv6
// decode; what decodes, encodes back to the same value (reserved byte cleared), and pion's
// decoder reads the same address.
func FuzzXORAddress(f *testing.F) {
	f.Add([]byte{0, 1, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43}, rfc5769TxID[:])
	f.Add(unhex(f, "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9"), rfc5769TxID[:])
	f.Add([]byte{0xff, 1, 0, 0, 0, 0, 0, 0}, []byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, fuzzTxID[:])
	f.Add([]byte{0, 2, 0, 0, 0, 0, 0, 0}, fuzzTxID[:])
	f.Add([]byte{0, 1, 0}, fuzzTxID[:])
	f.Fuzz(func(t *testing.T, v, tx []byte) {
		var txID [stun.TransactionIDSize]byte
		copy(txID[:], tx)
		ap, err := XORAddress(v, txID)
		valid := (len(v) == 8 && v[1] == FamilyIPv4) || (len(v) == 20 && v[1] == FamilyIPv6)
		if valid != (err == nil) || (err != nil && !errors.Is(err, ErrMalformed)) {
			t.Fatalf("XORAddress(%x) = %v, %v", v, ap, err)
		}
		if err != nil {
			return
		}
		m, err := stun.Build(stun.NewTransactionIDSetter(txID), XORAddressAttr{Type: stun.AttrXORPeerAddress, Addr: ap})
		if err != nil {
			t.Fatal(err)
		}
		again, _ := m.Get(stun.AttrXORPeerAddress)
		want := bytes.Clone(v)
		want[0] = 0
		if !bytes.Equal(again, want) {
			t.Fatalf("%x decodes to %v, which encodes to %x", v, ap, again)
		}
		if pion, err := pionAddr(m, stun.AttrXORPeerAddress); err != nil || pion != ap {
			t.Fatalf("%x: XORAddress %v, pion %v, %v", v, ap, pion, err)
		}
	})
}

// fuzzSends are seeds for FuzzParseSend: Send indications, good and bad.
func fuzzSends(f *testing.F) [][]byte {
	build := func(setters ...stun.Setter) []byte {
		m, err := stun.Build(append([]stun.Setter{stun.NewTransactionIDSetter(fuzzTxID), sendType}, setters...)...)
		if err != nil {
			f.Fatal(err)
		}
		return m.Raw
	}
	return [][]byte{
		build(pionPeer(peer4), dataAttr("hello")),
		build(pionPeer(peer6), dataAttr("hello"), stun.Fingerprint),
		build(dataAttr(""), pionPeer(peer4), stun.RawAttribute{Type: 0xC0DE, Value: []byte{1}}),
		build(pionPeer(peer4), dataAttr("x"), stun.MessageIntegrity("k"), stun.RawAttribute{Type: stun.AttrChangeRequest}, stun.Fingerprint),
		build(pionPeer(peer4), dataAttr("x"), MessageIntegritySHA256("k"), pionPeer(peer6)),
		build(pionPeer(peer4), stun.RawAttribute{Type: stun.AttrChangeRequest, Value: make([]byte, 4)}, dataAttr("x")),
		build(pionPeer(peer4), pionPeer(peer4), dataAttr("x")),
		build(stun.RawAttribute{Type: stun.AttrXORPeerAddress, Value: []byte{0xff, 1, 0, 0, 0, 0, 0, 0}}, dataAttr("x")),
	}
}

// FuzzParseSend: whatever ParseSend accepts, pion decodes too, as a Send indication whose
// FINGERPRINT (if any) checks, without unknown comprehension-required attributes, with the
// same XOR-PEER-ADDRESS and DATA; and every error is one of the reasons a caller counts.
func FuzzParseSend(f *testing.F) {
	for _, b := range fuzzSends(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		peer, data, err := ParseSend(b)
		if err != nil {
			for _, reason := range []error{ErrNotSend, ErrMalformed, ErrFingerprint, ErrUnknownAttribute, ErrNoPeer, ErrNoData} {
				if errors.Is(err, reason) {
					return
				}
			}
			t.Fatalf("ParseSend(%x): %v is none of the reasons", b, err)
		}
		var m stun.Message
		if err := stun.Decode(b, &m); err != nil {
			t.Fatalf("ParseSend accepts %x, pion does not: %v", b, err)
		}
		if m.Type != sendType || len(m.Raw) != HeaderSize+int(m.Length) {
			t.Fatalf("ParseSend accepts %x, a %v of length %d", b, m.Type, m.Length)
		}
		if m.Contains(stun.AttrFingerprint) && stun.Fingerprint.Check(&m) != nil {
			t.Fatalf("ParseSend accepts %x, whose FINGERPRINT pion rejects", b)
		}
		if unknown := UnknownRequired(&m); unknown != nil {
			t.Fatalf("ParseSend accepts %x, with unknown attributes %v", b, unknown)
		}
		pionData, err := m.Get(stun.AttrData)
		if err != nil || !bytes.Equal(pionData, data) {
			t.Fatalf("%x: ParseSend's DATA %x, pion's %x, %v", b, data, pionData, err)
		}
		if pion, err := pionAddr(&m, stun.AttrXORPeerAddress); err != nil || pion != peer {
			t.Fatalf("%x: ParseSend's peer %v, pion's %v, %v", b, peer, pion, err)
		}
	})
}

// FuzzChannelData: ChannelData accepts exactly a channel number in range with its length
// and at most 3 bytes of padding; what it accepts, FrameChannelData frames again from the
// payload byte for byte, and StreamFrameSize sizes as the padded frame.
func FuzzChannelData(f *testing.F) {
	f.Add([]byte{0x40, 0x00, 0, 2, 'h', 'i'})
	f.Add([]byte{0x7f, 0xff, 0, 1, 'h', 0, 0, 0})
	f.Add([]byte{0x40, 0x00, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x80, 0x00, 0, 0})
	f.Add([]byte{0x40, 0x00, 0, 5, 'h'})
	f.Fuzz(func(t *testing.T, b []byte) {
		channel, payload, ok := ChannelData(b)
		valid := len(b) >= 4 && b[0]>>6 == 1 &&
			4+int(binary.BigEndian.Uint16(b[2:])) <= len(b) && len(b) <= pad4(4+int(binary.BigEndian.Uint16(b[2:])))
		if ok != valid {
			t.Fatalf("ChannelData(%x) = %v", b, ok)
		}
		if !ok {
			return
		}
		size := ChannelHeaderSize + len(payload)
		frame := make([]byte, Headroom+len(payload), Headroom+len(payload)+Tailroom)
		copy(frame[Headroom:], payload)
		if again := FrameChannelData(bytes.Clone(frame), channel, false); !bytes.Equal(again, b[:size]) {
			t.Fatalf("ChannelData(%x) = %#x, %x, framed again as %x", b, channel, payload, again)
		}
		padded := FrameChannelData(frame, channel, true)
		if n, err := StreamFrameSize(b); err != nil || n != len(padded) || n != pad4(size) {
			t.Fatalf("StreamFrameSize(%x) = %d, %v; padded frame of %d bytes", b, n, err, len(padded))
		}
	})
}

// FuzzStreamFrameSize: a stream of padded ChannelData and Data indications framed from
// arbitrary payloads splits back, frame by frame, into exactly those payloads; and on an
// arbitrary stream, every size is a whole number of 4-byte words, and every ChannelData
// frame it sizes that is all there is one ChannelData accepts.
func FuzzStreamFrameSize(f *testing.F) {
	f.Add([]byte("payload bytes"), []byte{0, 5, 0x83, 0xc4, 36})
	f.Add([]byte{}, []byte{0x80, 0})
	f.Add([]byte{0x40, 0x00, 0, 1, 'a', 0, 0, 0, 0, 1, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, data, layout []byte) {
		checkArbitraryStream(t, data)
		if len(layout) > 64 {
			layout = layout[:64]
		}
		var stream []byte
		for i, c := range layout {
			stream = append(stream, layoutFrame(data, i, c)...)
		}
		for i, c := range layout {
			size, err := StreamFrameSize(stream)
			if err != nil || size > len(stream) {
				t.Fatalf("frame %d: StreamFrameSize = %d, %v with %d bytes left", i, size, err, len(stream))
			}
			checkLayoutFrame(t, stream[:size], data, i, c)
			stream = stream[size:]
		}
		if len(stream) != 0 {
			t.Fatalf("%d bytes left after the last frame", len(stream))
		}
	})
}

// layoutFrame is frame i of a FuzzStreamFrameSize stream, as layout byte c says: a payload
// of c%37 bytes cut from data, padded ChannelData on channel 0x4000+c if c's top bit is
// clear, else a Data indication from peer4 or peer6.
func layoutFrame(data []byte, i int, c byte) []byte {
	payload := layoutPayload(data, i, c)
	frame := make([]byte, Headroom+len(payload), Headroom+len(payload)+Tailroom)
	copy(frame[Headroom:], payload)
	switch {
	case c&0x80 == 0:
		return FrameChannelData(frame, MinChannel+uint16(c), true)
	case c&0x40 == 0:
		return FrameDataIndication(frame, peer4)
	default:
		return FrameDataIndication(frame, peer6)
	}
}

func layoutPayload(data []byte, i int, c byte) []byte {
	n := int(c) % 37
	if len(data) == 0 {
		return make([]byte, n)
	}
	payload := make([]byte, n)
	for j := range payload {
		payload[j] = data[(i+j)%len(data)]
	}
	return payload
}

// checkLayoutFrame checks that frame is what layoutFrame made for i and c.
func checkLayoutFrame(t *testing.T, frame, data []byte, i int, c byte) {
	payload := layoutPayload(data, i, c)
	if c&0x80 == 0 {
		channel, got, ok := ChannelData(frame)
		if !ok || channel != MinChannel+uint16(c) || !bytes.Equal(got, payload) {
			t.Fatalf("frame %d: ChannelData(%x) = %#x, %x, %v; want %x", i, frame, channel, got, ok, payload)
		}
		return
	}
	var m stun.Message
	if err := stun.Decode(frame, &m); err != nil {
		t.Fatalf("frame %d: %x: %v", i, frame, err)
	}
	peer := peer4
	if c&0x40 != 0 {
		peer = peer6
	}
	got, err := m.Get(stun.AttrData)
	if gotPeer, perr := pionAddr(&m, stun.AttrXORPeerAddress); err != nil || perr != nil || gotPeer != peer || !bytes.Equal(got, payload) {
		t.Fatalf("frame %d: Data indication %x: peer %v (%v), DATA %x (%v); want %v, %x", i, frame, gotPeer, perr, got, err, peer, payload)
	}
}

// checkArbitraryStream walks stream as a TURN stream for as long as it has framing.
func checkArbitraryStream(t *testing.T, stream []byte) {
	for len(stream) >= 4 {
		size, err := StreamFrameSize(stream)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("StreamFrameSize(%x): %v", stream[:4], err)
			}
			return
		}
		if size%4 != 0 || size < ChannelHeaderSize {
			t.Fatalf("StreamFrameSize(%x) = %d", stream[:4], size)
		}
		if size > len(stream) {
			return
		}
		if stream[0]>>6 == 1 {
			if _, _, ok := ChannelData(stream[:size]); !ok {
				t.Fatalf("ChannelData refuses %x, a frame StreamFrameSize sized", stream[:size])
			}
		}
		stream = stream[size:]
	}
}
