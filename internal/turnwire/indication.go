package turnwire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"net/netip"

	"github.com/pion/stun/v4"
)

// Message types of the indications on the data path: the method's bits with the
// indication class bit (RFC 8489 section 5; methods in RFC 8656 section 17).
const (
	sendIndication = 0x0016 // Send (0x006)
	dataIndication = 0x0017 // Data (0x007)
)

// fingerprintXOR is XORed into the CRC-32 of FINGERPRINT, so that it differs from the
// CRC-32 of another protocol that carries the message (RFC 8489 section 14.7).
const fingerprintXOR = 0x5354554e

// Reasons a Send indication does not parse, prebuilt so that a flood of bad ones does not
// allocate: they all wrap ErrMalformed.
var (
	errSendLength     = fmt.Errorf("%w: message length does not match the datagram or frame", ErrMalformed)
	errAttrHeader     = fmt.Errorf("%w: attribute header past the end of the message", ErrMalformed)
	errAttrValue      = fmt.Errorf("%w: attribute value past the end of the message", ErrMalformed)
	errDuplicatePeer  = fmt.Errorf("%w: more than one XOR-PEER-ADDRESS in a Send indication", ErrMalformed)
	errDuplicateData  = fmt.Errorf("%w: more than one DATA in a Send indication", ErrMalformed)
	errFingerprintLen = fmt.Errorf("%w: FINGERPRINT is not 4 bytes", ErrMalformed)
	errFingerprintPos = fmt.Errorf("%w: it is not the last attribute", ErrFingerprint)
)

// FrameDataIndication turns frame, Headroom bytes followed by a datagram from peer, into a
// Data indication in place (RFC 8656 section 11.3) and returns it: a subslice of frame
// with XOR-PEER-ADDRESS and then DATA, whose padding takes up to Tailroom bytes of frame's
// capacity past its length. Its transaction ID comes from math/rand/v2, whose generator
// (ChaCha8, seeded by the system) is as unpredictable as RFC 8489 section 5 asks, and
// costs no system call per packet. peer goes out as it is (see XORAddressAttr). It returns
// nil if peer is not valid, or frame is shorter than Headroom, lacks the capacity, or
// holds more than a STUN length can count.
func FrameDataIndication(frame []byte, peer netip.AddrPort) []byte {
	if !peer.Addr().IsValid() || len(frame) < Headroom {
		return nil
	}
	size := len(frame) - Headroom
	addrSize := xorAddressSize(peer)
	start := Headroom - AttrHeaderSize - addrSize - AttrHeaderSize - HeaderSize
	end := Headroom + pad4(size)
	if end-start-HeaderSize > math.MaxUint16 || end > cap(frame) {
		return nil
	}
	out := frame[start:end]
	clear(frame[len(frame):end])

	var txID [stun.TransactionIDSize]byte
	binary.LittleEndian.PutUint64(txID[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(txID[8:], rand.Uint32())
	putHeader(out, dataIndication, txID)

	attr := out[HeaderSize:]
	putAttrHeader(attr, stun.AttrXORPeerAddress, addrSize)
	putXORAddress(attr[AttrHeaderSize:AttrHeaderSize+addrSize], peer, txID)
	putAttrHeader(attr[AttrHeaderSize+addrSize:], stun.AttrData, size)
	return out
}

// putHeader writes the STUN header of msg, a whole message, in place.
func putHeader(msg []byte, typ uint16, txID [stun.TransactionIDSize]byte) {
	binary.BigEndian.PutUint16(msg, typ)
	binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)-HeaderSize))
	binary.BigEndian.PutUint32(msg[4:], MagicCookie)
	copy(msg[8:HeaderSize], txID[:])
}

func putAttrHeader(b []byte, t stun.AttrType, length int) {
	binary.BigEndian.PutUint16(b, uint16(t))
	binary.BigEndian.PutUint16(b[2:], uint16(length))
}

// ParseSend reads the Send indication b (RFC 8656 section 11.2), a whole datagram or
// stream frame, in place and without stun.Message.Decode, which the data path cannot
// afford per packet: it returns the peer of its XOR-PEER-ADDRESS and its DATA, a subslice
// of b. It checks what Decode and the server's checks would: the header and magic cookie
// (else ErrNotSend); a length that is b's, every attribute and its padding within it (so
// the length is a multiple of 4, RFC 8489 section 5), one XOR-PEER-ADDRESS that decodes
// strictly, at most one DATA (else ErrMalformed); a FINGERPRINT that matches and comes
// last (else ErrFingerprint, RFC 8489 section 14.7); no comprehension-required attribute
// Understood does not know (else ErrUnknownAttribute: the indication is discarded,
// section 6.3); then XOR-PEER-ADDRESS (else ErrNoPeer) and DATA (else ErrNoData).
// Attributes after MESSAGE-INTEGRITY, but for MESSAGE-INTEGRITY-SHA256 and FINGERPRINT,
// and after MESSAGE-INTEGRITY-SHA256, but for FINGERPRINT, are ignored (sections 14.5,
// 14.6). The errors are the sentinels or wrap them, and never allocate.
func ParseSend(b []byte) (peer netip.AddrPort, data []byte, err error) {
	if len(b) < HeaderSize || binary.BigEndian.Uint16(b) != sendIndication ||
		binary.BigEndian.Uint32(b[4:]) != MagicCookie {
		return netip.AddrPort{}, nil, ErrNotSend
	}
	if HeaderSize+int(binary.BigEndian.Uint16(b[2:])) != len(b) {
		return netip.AddrPort{}, nil, errSendLength
	}
	s := sendScan{txID: [stun.TransactionIDSize]byte(b[8:HeaderSize])}
	for off := HeaderSize; off < len(b); {
		next, err := s.attribute(b, off)
		if err != nil {
			return netip.AddrPort{}, nil, err
		}
		off = next
	}
	switch {
	case s.unknown:
		return netip.AddrPort{}, nil, ErrUnknownAttribute
	case !s.peer.IsValid():
		return netip.AddrPort{}, nil, ErrNoPeer
	case !s.haveData:
		return netip.AddrPort{}, nil, ErrNoData
	}
	return s.peer, s.data, nil
}

// sendScan is what ParseSend has found so far in the attributes of a Send indication.
type sendScan struct {
	txID       [stun.TransactionIDSize]byte
	peer       netip.AddrPort // valid once found: a decoded address always is
	data       []byte
	haveData   bool // DATA may be empty
	unknown    bool // an unknown comprehension-required attribute
	integrity  bool // after MESSAGE-INTEGRITY
	integrity2 bool // after MESSAGE-INTEGRITY-SHA256
}

// attribute reads the attribute at off in the Send indication b, whose length is checked
// already, and returns the offset of the next one.
func (s *sendScan) attribute(b []byte, off int) (int, error) {
	if len(b)-off < AttrHeaderSize {
		return 0, errAttrHeader
	}
	t := stun.AttrType(binary.BigEndian.Uint16(b[off:]))
	length := int(binary.BigEndian.Uint16(b[off+2:]))
	value := off + AttrHeaderSize
	next := value + pad4(length)
	if next > len(b) {
		return 0, errAttrValue
	}
	v := b[value : value+length]
	switch {
	case t == stun.AttrFingerprint:
		return next, checkFingerprint(b, off, v)
	case s.integrity2 || (s.integrity && t != stun.AttrMessageIntegritySHA256):
		return next, nil // ignored (RFC 8489 sections 14.5, 14.6)
	case t == stun.AttrMessageIntegrity:
		s.integrity = true
	case t == stun.AttrMessageIntegritySHA256:
		s.integrity2 = true
	case t == stun.AttrXORPeerAddress:
		if s.peer.IsValid() {
			return 0, errDuplicatePeer
		}
		peer, err := XORAddress(v, s.txID)
		if err != nil {
			return 0, err
		}
		s.peer = peer
	case t == stun.AttrData:
		if s.haveData {
			return 0, errDuplicateData
		}
		s.data, s.haveData = v, true
	case t.Required() && !Understood(t):
		s.unknown = true
	}
	return next, nil
}

// checkFingerprint checks the FINGERPRINT value v at off in the message b: the last
// attribute, 4 bytes, the CRC-32 of everything before it XORed with fingerprintXOR.
func checkFingerprint(b []byte, off int, v []byte) error {
	switch {
	case len(v) != 4:
		return errFingerprintLen
	case off+AttrHeaderSize+len(v) != len(b):
		return errFingerprintPos
	case crc32.ChecksumIEEE(b[:off])^fingerprintXOR != binary.BigEndian.Uint32(v):
		return ErrFingerprint
	}
	return nil
}
