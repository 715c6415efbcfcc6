package turnwire

import (
	"slices"
	"testing"

	"github.com/pion/stun/v4"
)

// Every comprehension-required attribute type the RFCs define, with whether a TURN server
// understands it.
var requiredAttrs = map[stun.AttrType]bool{
	0x0001: true,  // MAPPED-ADDRESS
	0x0002: false, // RESPONSE-ADDRESS (RFC 3489, reserved)
	0x0003: false, // CHANGE-REQUEST (RFC 5780)
	0x0004: false, // SOURCE-ADDRESS (RFC 3489, reserved)
	0x0005: false, // CHANGED-ADDRESS (RFC 3489, reserved)
	0x0006: true,  // USERNAME
	0x0007: false, // PASSWORD (RFC 3489, reserved)
	0x0008: true,  // MESSAGE-INTEGRITY
	0x0009: true,  // ERROR-CODE
	0x000A: true,  // UNKNOWN-ATTRIBUTES
	0x000B: false, // REFLECTED-FROM (RFC 3489, reserved)
	0x000C: true,  // CHANNEL-NUMBER
	0x000D: true,  // LIFETIME
	0x0010: false, // BANDWIDTH (RFC 5766, reserved)
	0x0012: true,  // XOR-PEER-ADDRESS
	0x0013: true,  // DATA
	0x0014: true,  // REALM
	0x0015: true,  // NONCE
	0x0016: true,  // XOR-RELAYED-ADDRESS
	0x0017: true,  // REQUESTED-ADDRESS-FAMILY
	0x0018: true,  // EVEN-PORT
	0x0019: true,  // REQUESTED-TRANSPORT
	0x001A: true,  // DONT-FRAGMENT
	0x001C: true,  // MESSAGE-INTEGRITY-SHA256
	0x001D: true,  // PASSWORD-ALGORITHM
	0x001E: true,  // USERHASH
	0x0020: true,  // XOR-MAPPED-ADDRESS
	0x0021: false, // TIMER-VAL (RFC 5766, reserved)
	0x0022: true,  // RESERVATION-TOKEN
	0x0024: true,  // PRIORITY
	0x0025: true,  // USE-CANDIDATE
	0x0026: false, // PADDING (RFC 5780)
	0x0027: false, // RESPONSE-PORT (RFC 5780)
	0x002A: true,  // CONNECTION-ID
	0x7FFF: false,
}

func TestUnderstood(t *testing.T) {
	for typ, want := range requiredAttrs {
		if got := Understood(typ); got != want {
			t.Errorf("Understood(%#04x %v) = %v; want %v", uint16(typ), typ, got, want)
		}
	}
}

func TestUnknownRequired(t *testing.T) {
	known, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.RawAttribute{Type: stun.AttrPriority, Value: []byte{0, 0, 0, 1}},
		stun.RawAttribute{Type: stun.AttrUseCandidate},
		stun.RawAttribute{Type: stun.AttrSoftware, Value: []byte("x")},
		stun.RawAttribute{Type: 0xC001, Value: []byte("optional, unknown")},
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := UnknownRequired(known); got != nil {
		t.Errorf("UnknownRequired = %v; want nil", got)
	}
	if n := testing.AllocsPerRun(100, func() { UnknownRequired(known) }); n != 0 {
		t.Errorf("UnknownRequired allocates %v times for a message without unknown attributes", n)
	}

	unknown, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}},
		stun.RawAttribute{Type: stun.AttrPadding, Value: []byte{0, 0, 0, 0}},
		stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 0}},
		stun.RawAttribute{Type: 0xC001},
		stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}},
	)
	if err != nil {
		t.Fatal(err)
	}
	want := []stun.AttrType{stun.AttrChangeRequest, stun.AttrPadding}
	if got := UnknownRequired(unknown); !slices.Equal(got, want) {
		t.Errorf("UnknownRequired = %v; want %v", got, want)
	}
}
