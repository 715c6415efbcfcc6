package turnserver

import (
	"encoding/binary"
	"testing"

	"github.com/pion/stun/v4"
)

func TestFrameSize(t *testing.T) {
	tests := []struct {
		name    string
		hdr     []byte
		want    int
		wantErr bool
	}{
		{"STUN, no attributes", []byte{0x00, 0x01, 0x00, 0x00}, 20, false},
		{"STUN with 8 bytes of attributes", []byte{0x01, 0x01, 0x00, 0x08}, 28, false},
		{"ChannelData, 4 bytes", []byte{0x40, 0x00, 0x00, 0x04}, 8, false},
		{"ChannelData padded to 4", []byte{0x40, 0x01, 0x00, 0x05}, 12, false},
		{"ChannelData, empty", []byte{0x7f, 0xff, 0x00, 0x00}, 4, false},
		{"ChannelData at the 16-bit limit", []byte{0x40, 0x00, 0xff, 0xff}, 4 + 0x10000, false},
		{"neither (0xc0)", []byte{0xc0, 0x03, 0x01, 0x00}, 0, true},
		{"neither (0x80)", []byte{0x80, 0x00, 0x00, 0x00}, 0, true},
	}
	for _, tt := range tests {
		got, err := frameSize(tt.hdr)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: frameSize = %d, %v; want %d, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestStripIntegrity(t *testing.T) {
	key := stun.NewLongTermIntegrity("alice", "ferry.test", "pw")
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername("alice"), stun.NewRealm("ferry.test"), stun.NewNonce("abc"), key, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), m.Raw...)
	n := stripIntegrity(b)

	stripped := &stun.Message{Raw: b[:n]}
	if err := stripped.Decode(); err != nil {
		t.Fatalf("stripped message does not decode: %v", err)
	}
	if stripped.Contains(stun.AttrMessageIntegrity) || stripped.Contains(stun.AttrFingerprint) {
		t.Errorf("MESSAGE-INTEGRITY or FINGERPRINT survived: %v", stripped)
	}
	for _, a := range []stun.AttrType{stun.AttrUsername, stun.AttrRealm, stun.AttrNonce} {
		if !stripped.Contains(a) {
			t.Errorf("%v was cut", a)
		}
	}
	if int(binary.BigEndian.Uint16(b[2:4])) != n-stunHeaderSize {
		t.Errorf("header length %d, want %d", binary.BigEndian.Uint16(b[2:4]), n-stunHeaderSize)
	}

	// A message without MESSAGE-INTEGRITY, and a truncated attribute list, are left whole.
	plain, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewSoftware("x"))
	if got := stripIntegrity(append([]byte(nil), plain.Raw...)); got != len(plain.Raw) {
		t.Errorf("message without integrity cut to %d of %d bytes", got, len(plain.Raw))
	}
	truncated := append([]byte(nil), m.Raw[:stunHeaderSize+6]...)
	if got := stripIntegrity(truncated); got != len(truncated) {
		t.Errorf("truncated message cut to %d of %d bytes", got, len(truncated))
	}
}

func TestMessageType(t *testing.T) {
	resp, _ := stun.Build(stun.TransactionID, connectionBindSuccess)
	if typ, ok := messageType(resp.Raw); !ok || typ != connectionBindSuccess {
		t.Errorf("messageType = %v, %v; want %v", typ, ok, connectionBindSuccess)
	}
	for _, b := range [][]byte{nil, resp.Raw[:19], {0x40, 0x00, 0x00, 0x00}, make([]byte, 20)} {
		if _, ok := messageType(b); ok {
			t.Errorf("messageType(%x) accepted a non-STUN message", b)
		}
	}
}

func TestRawErrorCode(t *testing.T) {
	build := func(setters ...stun.Setter) []byte {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m.Raw
	}
	allocErr := stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse)
	tests := []struct {
		name   string
		msg    []byte
		want   int
		wantOK bool
	}{
		{"401 first", build(allocErr, stun.CodeUnauthorized, stun.NewNonce("n")), 401, true},
		{"438 after another attribute", build(allocErr, stun.NewRealm("r"), stun.CodeStaleNonce), 438, true},
		{"508", build(allocErr, stun.CodeInsufficientCapacity), 508, true},
		{"300", build(allocErr, stun.CodeTryAlternate), 300, true},
		{"error without ERROR-CODE", build(allocErr, stun.NewRealm("r")), 0, false},
		{"success response", build(stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse)), 0, false},
		{"ChannelData", []byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, 0, false},
		{"truncated ERROR-CODE", build(allocErr, stun.CodeUnauthorized)[:stunHeaderSize+attrHeaderSize+2], 0, false},
	}
	for _, tt := range tests {
		got, ok := rawErrorCode(tt.msg)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: rawErrorCode = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}
