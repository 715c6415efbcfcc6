package turnwire

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/pion/stun/v4"
)

// sizeError is the error for an attribute value of the wrong size. The decoders below run
// once per request, not per packet, so they may say exactly what was wrong.
func sizeError(attr string, got, want int) error {
	return fmt.Errorf("%w: %s is %d bytes, not %d", ErrMalformed, attr, got, want)
}

// ChannelNumber decodes CHANNEL-NUMBER (RFC 8656 section 18.1): the number, then two RFFU
// bytes, which are ignored. A number outside MinChannel-MaxChannel is an error as well: no
// ChannelData message could carry it (RFC 8656 section 12).
func ChannelNumber(v []byte) (uint16, error) {
	if len(v) != 4 {
		return 0, sizeError("CHANNEL-NUMBER", len(v), 4)
	}
	n := binary.BigEndian.Uint16(v)
	if n < MinChannel || n > MaxChannel {
		return 0, fmt.Errorf("%w: channel number 0x%04x outside 0x%04x-0x%04x", ErrMalformed, n, MinChannel, MaxChannel)
	}
	return n, nil
}

// Lifetime decodes LIFETIME (RFC 8656 section 18.2): an unsigned number of seconds.
func Lifetime(v []byte) (time.Duration, error) {
	if len(v) != 4 {
		return 0, sizeError("LIFETIME", len(v), 4)
	}
	return time.Duration(binary.BigEndian.Uint32(v)) * time.Second, nil
}

// LifetimeAttr is LIFETIME to add to a message (stun.Setter), in whole seconds: a fraction
// of a second is cut off, since the attribute cannot carry it.
type LifetimeAttr time.Duration

// AddTo adds the attribute to m.
func (l LifetimeAttr) AddTo(m *stun.Message) error {
	d := time.Duration(l)
	if d < 0 || d/time.Second > math.MaxUint32 {
		return fmt.Errorf("turnwire: LIFETIME %v does not fit 32 bits of seconds", d)
	}
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(d/time.Second))
	m.Add(stun.AttrLifetime, v[:])
	return nil
}

// RequestedTransport decodes REQUESTED-TRANSPORT (RFC 8656 section 18.8): the protocol
// number (ProtoUDP, or ProtoTCP for an RFC 6062 allocation), then three RFFU bytes, which are ignored.
// Whether the protocol is one the server relays is the handler's question (442).
func RequestedTransport(v []byte) (uint8, error) {
	if len(v) != 4 {
		return 0, sizeError("REQUESTED-TRANSPORT", len(v), 4)
	}
	return v[0], nil
}

// AddressFamily decodes REQUESTED-ADDRESS-FAMILY (RFC 8656 section 18.6, RFC 6156 section
// 4.1.1) or ADDITIONAL-ADDRESS-FAMILY (RFC 8656 section 18.11): the family, then three
// reserved bytes, which are ignored. A family other than FamilyIPv4 or FamilyIPv6 is an
// error; which of the two each attribute may name in which request is the handler's rule
// (RFC 8656 section 7.2).
func AddressFamily(v []byte) (uint8, error) {
	if len(v) != 4 {
		return 0, sizeError("address family attribute", len(v), 4)
	}
	if v[0] != FamilyIPv4 && v[0] != FamilyIPv6 {
		return 0, fmt.Errorf("%w: address family 0x%02x", ErrMalformed, v[0])
	}
	return v[0], nil
}

// EvenPort decodes EVEN-PORT (RFC 8656 section 18.7): one byte whose top bit, R, asks the
// server to reserve the next port up as well; the other seven bits are RFFU.
func EvenPort(v []byte) (reserveNext bool, err error) {
	if len(v) != 1 {
		return false, sizeError("EVEN-PORT", len(v), 1)
	}
	return v[0]&0x80 != 0, nil
}

// ReservationToken decodes RESERVATION-TOKEN (RFC 8656 section 18.10): 8 opaque bytes that
// name a relayed port the server keeps for a later Allocate.
func ReservationToken(v []byte) ([8]byte, error) {
	if len(v) != 8 {
		return [8]byte{}, sizeError("RESERVATION-TOKEN", len(v), 8)
	}
	return [8]byte(v), nil
}

// ReservationTokenAttr is RESERVATION-TOKEN to add to a message (stun.Setter).
type ReservationTokenAttr [8]byte

// AddTo adds the attribute to m.
func (t ReservationTokenAttr) AddTo(m *stun.Message) error {
	m.Add(stun.AttrReservationToken, t[:])
	return nil
}

// ConnectionID decodes CONNECTION-ID (RFC 6062 section 6.2.1): the 32-bit number a server
// gives a peer's TCP connection until the client binds a data connection to it.
func ConnectionID(v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, sizeError("CONNECTION-ID", len(v), 4)
	}
	return binary.BigEndian.Uint32(v), nil
}

// ConnectionIDAttr is CONNECTION-ID to add to a message (stun.Setter).
type ConnectionIDAttr uint32

// AddTo adds the attribute to m.
func (c ConnectionIDAttr) AddTo(m *stun.Message) error {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(c))
	m.Add(stun.AttrConnectionID, v[:])
	return nil
}

// maxReasonBytes is the longest reason phrase a sender may put into an error code: fewer
// than 128 characters, at most 509 bytes when encoding them (RFC 8489 section 14.8).
const maxReasonBytes = 509

// AddressErrorCodeAttr is ADDRESS-ERROR-CODE to add to a message (stun.Setter): the reason
// an Allocate for two address families got no relayed address of Family (RFC 8656 section
// 18.12; 440 or 508, section 7.2). Its layout is ERROR-CODE's (RFC 8489 section 14.8) with
// the family in the first byte: family, a reserved byte, the class (hundreds) in the low 3
// bits of the third byte, the number (the rest) in the fourth, then the UTF-8 reason.
type AddressErrorCodeAttr struct {
	Family uint8 // FamilyIPv4 or FamilyIPv6
	Code   stun.ErrorCode
	Reason string
}

// AddTo adds the attribute to m.
func (a AddressErrorCodeAttr) AddTo(m *stun.Message) error {
	switch {
	case a.Family != FamilyIPv4 && a.Family != FamilyIPv6:
		return fmt.Errorf("turnwire: ADDRESS-ERROR-CODE for address family %d", a.Family)
	case a.Code < 300 || a.Code > 699:
		return fmt.Errorf("turnwire: ADDRESS-ERROR-CODE with code %d, not 300-699", a.Code)
	case len(a.Reason) > maxReasonBytes || !utf8.ValidString(a.Reason):
		return fmt.Errorf("turnwire: ADDRESS-ERROR-CODE reason is not UTF-8 of at most %d bytes", maxReasonBytes)
	}
	v := make([]byte, 4+len(a.Reason))
	v[0] = a.Family
	v[2] = byte(a.Code / 100)
	v[3] = byte(a.Code % 100)
	copy(v[4:], a.Reason)
	m.Add(AttrAddressErrorCode, v)
	return nil
}
