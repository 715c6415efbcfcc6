package turnwire

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// wantMalformed checks that each value in bad fails decode with ErrMalformed.
func wantMalformed[T any](t *testing.T, name string, decode func([]byte) (T, error), bad ...[]byte) {
	t.Helper()
	for _, v := range bad {
		if got, err := decode(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s(%x) = %v, %v; want ErrMalformed", name, v, got, err)
		}
	}
}

// buildValue adds s to a fresh message and returns the value of its attribute typ.
func buildValue(t *testing.T, s stun.Setter, typ stun.AttrType) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, s)
	if err != nil {
		t.Fatal(err)
	}
	var decoded stun.Message
	if err := stun.Decode(m.Raw, &decoded); err != nil {
		t.Fatal(err)
	}
	v, err := decoded.Get(typ)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestChannelNumber(t *testing.T) {
	for v, want := range map[string]uint16{
		"\x40\x00\x00\x00": 0x4000,
		"\x7f\xff\x00\x00": 0x7fff,
		"\x4f\xff\xff\xff": 0x4fff, // RFFU is ignored
	} {
		if got, err := ChannelNumber([]byte(v)); err != nil || got != want {
			t.Errorf("ChannelNumber(%x) = %#x, %v; want %#x", v, got, err, want)
		}
	}
	wantMalformed(t, "ChannelNumber", ChannelNumber,
		nil, []byte{0x40, 0}, []byte{0x40, 0, 0}, []byte{0x40, 0, 0, 0, 0},
		[]byte{0x3f, 0xff, 0, 0}, []byte{0x80, 0, 0, 0}, []byte{0, 0, 0, 0})
}

func TestLifetime(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"\x00\x00\x02\x58": 600 * time.Second,
		"\x00\x00\x00\x00": 0,
		"\xff\xff\xff\xff": 0xffffffff * time.Second,
	} {
		if got, err := Lifetime([]byte(v)); err != nil || got != want {
			t.Errorf("Lifetime(%x) = %v, %v; want %v", v, got, err, want)
		}
	}
	wantMalformed(t, "Lifetime", Lifetime, nil, []byte{0, 0, 2}, []byte{0, 0, 2, 0x58, 0})
}

func TestLifetimeAttr(t *testing.T) {
	for d, want := range map[time.Duration]string{
		600 * time.Second:             "\x00\x00\x02\x58",
		1500 * time.Millisecond:       "\x00\x00\x00\x01", // whole seconds
		0:                             "\x00\x00\x00\x00",
		0xffffffff * time.Second:      "\xff\xff\xff\xff",
		time.Second - time.Nanosecond: "\x00\x00\x00\x00",
	} {
		if v := buildValue(t, LifetimeAttr(d), stun.AttrLifetime); string(v) != want {
			t.Errorf("LifetimeAttr(%v) = %x; want %x", d, v, want)
		}
	}
	for _, d := range []time.Duration{-time.Second, 0x100000000 * time.Second} {
		if _, err := stun.Build(LifetimeAttr(d)); err == nil {
			t.Errorf("LifetimeAttr(%v) encoded", d)
		}
	}
}

func TestRequestedTransport(t *testing.T) {
	for v, want := range map[string]uint8{"\x11\x00\x00\x00": ProtoUDP, "\x06\xff\xff\xff": ProtoTCP} {
		if got, err := RequestedTransport([]byte(v)); err != nil || got != want {
			t.Errorf("RequestedTransport(%x) = %d, %v; want %d", v, got, err, want)
		}
	}
	wantMalformed(t, "RequestedTransport", RequestedTransport, nil, []byte{17}, []byte{17, 0, 0, 0, 0})
}

func TestAddressFamily(t *testing.T) {
	for v, want := range map[string]uint8{"\x01\x00\x00\x00": FamilyIPv4, "\x02\xff\xff\xff": FamilyIPv6} {
		if got, err := AddressFamily([]byte(v)); err != nil || got != want {
			t.Errorf("AddressFamily(%x) = %d, %v; want %d", v, got, err, want)
		}
	}
	wantMalformed(t, "AddressFamily", AddressFamily,
		nil, []byte{1}, []byte{1, 0, 0, 0, 0}, []byte{0, 0, 0, 0}, []byte{3, 0, 0, 0}, []byte{0, 1, 0, 0})
}

func TestEvenPort(t *testing.T) {
	for v, want := range map[string]bool{"\x80": true, "\xff": true, "\x00": false, "\x7f": false} {
		if got, err := EvenPort([]byte(v)); err != nil || got != want {
			t.Errorf("EvenPort(%x) = %v, %v; want %v", v, got, err, want)
		}
	}
	wantMalformed(t, "EvenPort", EvenPort, nil, []byte{0x80, 0, 0, 0})
}

func TestReservationToken(t *testing.T) {
	token := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	v := buildValue(t, ReservationTokenAttr(token), stun.AttrReservationToken)
	if !bytes.Equal(v, token[:]) {
		t.Errorf("ReservationTokenAttr = %x; want %x", v, token)
	}
	if got, err := ReservationToken(v); err != nil || got != token {
		t.Errorf("ReservationToken(%x) = %x, %v", v, got, err)
	}
	wantMalformed(t, "ReservationToken", ReservationToken, nil, token[:7], append(token[:], 9))
}

func TestConnectionID(t *testing.T) {
	v := buildValue(t, ConnectionIDAttr(0x01020304), stun.AttrConnectionID)
	if string(v) != "\x01\x02\x03\x04" {
		t.Errorf("ConnectionIDAttr = %x", v)
	}
	if got, err := ConnectionID(v); err != nil || got != 0x01020304 {
		t.Errorf("ConnectionID(%x) = %#x, %v", v, got, err)
	}
	wantMalformed(t, "ConnectionID", ConnectionID, nil, v[:3], append(v, 5))
}

// ADDRESS-ERROR-CODE is laid out as RFC 8656 section 18.12 draws it, and, past the family
// byte, exactly as ERROR-CODE: pion's ERROR-CODE decoder reads the same code and reason.
func TestAddressErrorCodeAttr(t *testing.T) {
	a := AddressErrorCodeAttr{Family: FamilyIPv6, Code: stun.CodeAddrFamilyNotSupported, Reason: "Address Family not Supported"}
	v := buildValue(t, a, AttrAddressErrorCode)
	want := append([]byte{FamilyIPv6, 0, 4, 40}, a.Reason...)
	if !bytes.Equal(v, want) {
		t.Fatalf("ADDRESS-ERROR-CODE = %x; want %x", v, want)
	}
	m, err := stun.Build(stun.RawAttribute{Type: stun.AttrErrorCode, Value: v})
	if err != nil {
		t.Fatal(err)
	}
	var pion stun.ErrorCodeAttribute
	if err := pion.GetFrom(m); err != nil || pion.Code != a.Code || string(pion.Reason) != a.Reason {
		t.Errorf("pion reads %v, %v; want %d %s", pion, err, a.Code, a.Reason)
	}
	for _, bad := range []AddressErrorCodeAttr{
		{Family: 0, Code: 440},
		{Family: 3, Code: 440},
		{Family: FamilyIPv4, Code: 299},
		{Family: FamilyIPv4, Code: 700},
		{Family: FamilyIPv4, Code: 508, Reason: "\xff"},
		{Family: FamilyIPv4, Code: 508, Reason: string(make([]byte, 510))},
	} {
		if _, err := stun.Build(bad); err == nil {
			t.Errorf("%+v encoded", bad)
		}
	}
}
