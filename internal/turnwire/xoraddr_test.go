package turnwire

import (
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

// rfc5769TxID is the transaction ID of the sample responses of RFC 5769 sections 2.2, 2.3.
var rfc5769TxID = [stun.TransactionIDSize]byte{0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The XOR-MAPPED-ADDRESS values of RFC 5769's sample responses decode to the addresses the
// RFC names: vectors nobody here wrote.
func TestXORAddressRFC5769(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  netip.AddrPort
	}{
		{"0001a147e112a643", netip.MustParseAddrPort("192.0.2.1:32853")},
		{"0002a1470113a9faa5d3f179bc25f4b5bed2b9d9", netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853")},
	} {
		got, err := XORAddress(unhex(t, tc.value), rfc5769TxID)
		if err != nil || got != tc.want {
			t.Errorf("XORAddress(%s) = %v, %v; want %v", tc.value, got, err, tc.want)
		}
		if tc.want.Addr().Is4() && got.Addr().BitLen() != 32 {
			t.Errorf("IPv4 address decoded as %d bits", got.Addr().BitLen())
		}
	}
}

// Only exactly 8 bytes of family IPv4 and 20 of family IPv6 decode; every other length or
// family is malformed, so that no truncated value is read as some other address.
func TestXORAddressStrict(t *testing.T) {
	good4 := unhex(t, "0001a147e112a643")
	good6 := unhex(t, "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")
	bad := map[string][]byte{
		"empty":            {},
		"one byte":         {0},
		"family only":      {0, 1},
		"no address v4":    good4[:4],
		"short v4":         good4[:7],
		"long v4":          append(append([]byte{}, good4...), 0),
		"v4 with v6 size":  append([]byte{0, 1}, good6[2:]...),
		"v6 with v4 size":  append([]byte{0, 2}, good4[2:]...),
		"short v6":         good6[:19],
		"long v6":          append(append([]byte{}, good6...), 0),
		"family 0":         append([]byte{0, 0}, good4[2:]...),
		"family 3":         append([]byte{0, 3}, good6[2:]...),
		"family in byte 0": {1, 0, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43},
	}
	for name, v := range bad {
		if got, err := XORAddress(v, rfc5769TxID); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: XORAddress(%x) = %v, %v; want ErrMalformed", name, v, got, err)
		}
	}
}

// The first byte is reserved and ignored on receipt (RFC 8489 section 14.1).
func TestXORAddressIgnoresReservedByte(t *testing.T) {
	v := unhex(t, "ff01a147e112a643")
	got, err := XORAddress(v, rfc5769TxID)
	if err != nil || got != netip.MustParseAddrPort("192.0.2.1:32853") {
		t.Errorf("XORAddress(%x) = %v, %v", v, got, err)
	}
}

var xorTestAddrs = []netip.AddrPort{
	netip.MustParseAddrPort("192.0.2.1:32853"),
	netip.MustParseAddrPort("0.0.0.0:0"),
	netip.MustParseAddrPort("255.255.255.255:65535"),
	netip.MustParseAddrPort("[2001:db8::1]:3478"),
	netip.MustParseAddrPort("[::]:1"),
	netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
}

var xorTypes = []stun.AttrType{stun.AttrXORPeerAddress, stun.AttrXORRelayedAddress, stun.AttrXORMappedAddress}

// What XORAddressAttr encodes, pion's own XOR address decoder (the one pion/turn's client
// uses through its proto package) reads as the same address, for each attribute type.
func TestXORAddressAttrPionDecodes(t *testing.T) {
	for _, typ := range xorTypes {
		for _, ap := range xorTestAddrs {
			m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse),
				XORAddressAttr{Type: typ, Addr: ap})
			if err != nil {
				t.Fatal(err)
			}
			var decoded stun.Message
			if err := stun.Decode(m.Raw, &decoded); err != nil {
				t.Fatal(err)
			}
			var pion stun.XORMappedAddress
			if err := pion.GetFromAs(&decoded, typ); err != nil {
				t.Fatalf("%v %v: pion: %v", typ, ap, err)
			}
			got, ok := netip.AddrFromSlice(pion.IP)
			if !ok || netip.AddrPortFrom(got, uint16(pion.Port)) != ap {
				t.Errorf("%v: encoded %v, pion decoded %v:%d", typ, ap, pion.IP, pion.Port)
			}
		}
	}
}

// What pion's encoder writes, XORAddress reads as the same address.
func TestXORAddressDecodesPion(t *testing.T) {
	for _, typ := range xorTypes {
		for _, ap := range xorTestAddrs {
			pion := stun.XORMappedAddress{IP: net.IP(ap.Addr().AsSlice()), Port: int(ap.Port())}
			m := stun.New()
			m.TransactionID = stun.NewTransactionID()
			if err := pion.AddToAs(m, typ); err != nil {
				t.Fatal(err)
			}
			v, err := m.Get(typ)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := XORAddress(v, m.TransactionID); err != nil || got != ap {
				t.Errorf("%v: pion encoded %v, XORAddress = %v, %v", typ, ap, got, err)
			}
		}
	}
}

// An IPv4-mapped IPv6 address goes out as IPv6 and comes back as the same mapped address:
// the encoder does not change what it is given.
func TestXORAddressAttrMappedIPv4(t *testing.T) {
	ap := netip.MustParseAddrPort("[::ffff:192.0.2.1]:9")
	m, err := stun.Build(stun.TransactionID, XORAddressAttr{Type: stun.AttrXORPeerAddress, Addr: ap})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := m.Get(stun.AttrXORPeerAddress)
	if len(v) != 20 || v[1] != FamilyIPv6 {
		t.Fatalf("value %x: want 20 bytes of family IPv6", v)
	}
	if got, err := XORAddress(v, m.TransactionID); err != nil || got != ap {
		t.Errorf("XORAddress = %v, %v; want %v", got, err, ap)
	}
}

func TestXORAddressAttrInvalid(t *testing.T) {
	_, err := stun.Build(stun.TransactionID, XORAddressAttr{Type: stun.AttrXORPeerAddress})
	if err == nil {
		t.Error("an XOR address without an address encoded")
	}
}

func TestXORAddressAllocs(t *testing.T) {
	v := unhex(t, "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")
	bad := v[:19]
	if n := testing.AllocsPerRun(100, func() {
		_, _ = XORAddress(v, rfc5769TxID)
		_, _ = XORAddress(bad, rfc5769TxID)
	}); n != 0 {
		t.Errorf("XORAddress allocates %v times", n)
	}
}
