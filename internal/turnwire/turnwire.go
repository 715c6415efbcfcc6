// Package turnwire is the TURN wire format that github.com/pion/stun/v4 leaves out, written
// from the RFCs: the TURN attributes (RFC 8656 section 18, RFC 6062, RFC 6156), the XOR
// address encoding (RFC 8489 section 14.2), ChannelData and stream framing (RFC 8656
// section 12), Send and Data indications on the data path (RFC 8656 section 11), and
// MESSAGE-INTEGRITY-SHA256 with the password algorithms (RFC 8489 sections 9.2, 14.6, 14.11,
// 14.12).
//
// Messages, generic attributes, MESSAGE-INTEGRITY and FINGERPRINT stay with pion/stun: the
// decoders here take an attribute's value as stun.Message.Get returns it, and the encoders
// are stun.Setter values for stun.Build. Every decoder is strict: a value whose length does
// not fit its attribute is an error wrapping ErrMalformed, never a partial read, since a
// lenient read of a peer address names a different peer than the one a policy checked.
// The data-path functions (ChannelData, StreamFrameSize, FrameChannelData,
// FrameDataIndication, ParseSend, XORAddress) work in place and allocate nothing, not even
// for their errors: they run for every relayed packet, and for every dropped one.
package turnwire

import (
	"errors"

	"github.com/pion/stun/v4"
)

// Sizes and numbers of the wire format.
const (
	// MagicCookie is the fixed second word of every STUN message header (RFC 8489 section
	// 5); it also keys the XOR address encoding (section 14.2).
	MagicCookie = 0x2112A442
	// HeaderSize is the size of a STUN message header: type, length, magic cookie and
	// transaction ID (RFC 8489 section 5).
	HeaderSize = 20
	// AttrHeaderSize is the size of an attribute's type and length (RFC 8489 section 14).
	AttrHeaderSize = 4
	// ChannelHeaderSize is the size of a ChannelData header: channel number and length
	// (RFC 8656 section 12.4).
	ChannelHeaderSize = 4

	// MinChannel and MaxChannel bound the channel numbers Ferry accepts: the range of RFC
	// 5766 section 11, whose clients may still use all of it. RFC 8656 section 12 narrowed
	// it to 0x4000-0x4FFF; both start with the bits 01 that tell ChannelData from STUN.
	MinChannel = 0x4000
	MaxChannel = 0x7FFF

	// ProtoUDP and ProtoTCP are the protocol numbers of REQUESTED-TRANSPORT: UDP (RFC 8656
	// section 18.8) and TCP for a TCP allocation (RFC 6062 sections 4.1, 5.1).
	ProtoUDP = 17
	ProtoTCP = 6

	// FamilyIPv4 and FamilyIPv6 are the address families of the XOR address attributes
	// (RFC 8489 section 14.1) and of REQUESTED-/ADDITIONAL-ADDRESS-FAMILY (RFC 8656
	// sections 18.6, 18.11).
	FamilyIPv4 = 1
	FamilyIPv6 = 2

	// Headroom is the largest TURN header that goes before relayed data: a Data indication
	// with an IPv6 XOR-PEER-ADDRESS (20 + 24 + 4 bytes). A relay that reads a peer's
	// datagram this far into its buffer lets FrameChannelData and FrameDataIndication
	// frame it for the client without copying it.
	Headroom = HeaderSize + AttrHeaderSize + xorIPv6Size + AttrHeaderSize
	// Tailroom is the padding to a multiple of 4 that DATA (RFC 8489 section 14) and
	// ChannelData over a stream (RFC 8656 section 12.5) may need after relayed data.
	Tailroom = 3
)

// Sizes of the XOR address values: family, port and address (RFC 8489 section 14.2).
const (
	xorIPv4Size = 8
	xorIPv6Size = 20
)

// Attribute types pion/stun v4.0.0 has no constants for.
const (
	// AttrAdditionalAddressFamily asks for a second relayed address of the other family
	// (RFC 8656 section 18.11).
	AttrAdditionalAddressFamily stun.AttrType = 0x8000
	// AttrAddressErrorCode tells why one of two requested families got no relayed address
	// (RFC 8656 section 18.12).
	AttrAddressErrorCode stun.AttrType = 0x8001
	// AttrICMP carries an ICMP error a relay received, in a Data indication (RFC 8656
	// section 18.13).
	AttrICMP stun.AttrType = 0x8004
)

// Errors. The data path returns them, or errors wrapping them, without allocating, so that
// a caller can count its drops by reason with errors.Is.
var (
	// ErrMalformed is a value, attribute or message whose lengths or fields do not fit
	// the RFC's layout.
	ErrMalformed = errors.New("turnwire: malformed")
	// ErrNotSend is a message ParseSend was given that is not a Send indication.
	ErrNotSend = errors.New("turnwire: not a Send indication")
	// ErrFingerprint is a FINGERPRINT that does not match the message, or that is not its
	// last attribute (RFC 8489 section 14.7).
	ErrFingerprint = errors.New("turnwire: FINGERPRINT does not match")
	// ErrUnknownAttribute is a comprehension-required attribute a TURN server does not
	// understand, which makes it discard an indication (RFC 8489 section 6.3).
	ErrUnknownAttribute = errors.New("turnwire: unknown comprehension-required attribute")
	// ErrNoPeer is a Send indication without XOR-PEER-ADDRESS (RFC 8656 section 11.2).
	ErrNoPeer = errors.New("turnwire: Send indication without XOR-PEER-ADDRESS")
	// ErrNoData is a Send indication without DATA (RFC 8656 section 11.2).
	ErrNoData = errors.New("turnwire: Send indication without DATA")
)

// pad4 rounds n up to a multiple of 4, the alignment of STUN attributes (RFC 8489 section
// 14) and of ChannelData on streams (RFC 8656 section 12.5).
func pad4(n int) int {
	return (n + 3) &^ 3
}
