package turnserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/relay"
)

const (
	stunHeaderSize        = 20
	channelDataHeaderSize = 4
	attrHeaderSize        = 4
	magicCookie           = 0x2112A442 // RFC 8489 section 5
)

var errNotTURNFrame = errors.New("turnserver: stream data is neither STUN nor ChannelData")

// frameSize returns the size of the STUN message or ChannelData frame that starts with hdr
// (at least 4 bytes) on a stream transport. ChannelData is padded to 4 bytes there (RFC 8656
// section 12.5).
func frameSize(hdr []byte) (int, error) {
	length := int(binary.BigEndian.Uint16(hdr[2:4]))
	switch hdr[0] >> 6 {
	case 0:
		return stunHeaderSize + length, nil
	case 1:
		return channelDataHeaderSize + (length+3)&^3, nil
	default:
		return 0, fmt.Errorf("%w (first byte 0x%02x)", errNotTURNFrame, hdr[0])
	}
}

// stripIntegrity cuts a STUN message before its MESSAGE-INTEGRITY (or -SHA256) attribute
// and fixes the header length, in place; it returns the new size. Everything after that
// attribute (FINGERPRINT) is covered by it and goes too. Ferry uses this to let pion/turn
// answer a request whose credentials failed with 401 and a fresh nonce, as it does for
// requests without credentials: pion itself would answer 400.
func stripIntegrity(msg []byte) int {
	off := stunHeaderSize
	for off+attrHeaderSize <= len(msg) {
		typ := stun.AttrType(binary.BigEndian.Uint16(msg[off:]))
		if typ == stun.AttrMessageIntegrity || typ == stun.AttrMessageIntegritySHA256 {
			binary.BigEndian.PutUint16(msg[2:4], uint16(off-stunHeaderSize))
			return off
		}
		length := int(binary.BigEndian.Uint16(msg[off+2:]))
		off += attrHeaderSize + (length+3)&^3
	}
	return len(msg)
}

// Message types whose responses pion/turn v5.1.0 sends without MESSAGE-INTEGRITY.
var (
	connectionBindSuccess = stun.NewType(stun.MethodConnectionBind, stun.ClassSuccessResponse)
	connectionBindError   = stun.NewType(stun.MethodConnectionBind, stun.ClassErrorResponse)
	connectError          = stun.NewType(stun.MethodConnect, stun.ClassErrorResponse)
)

// messageType reads the type of the STUN message in b, if b is one.
func messageType(b []byte) (stun.MessageType, bool) {
	if len(b) < stunHeaderSize || !stun.IsMessage(b) {
		return stun.MessageType{}, false
	}
	var t stun.MessageType
	t.ReadValue(binary.BigEndian.Uint16(b))
	return t, true
}

// rawErrorCode returns the ERROR-CODE of b if b is a STUN error response (RFC 8489 section
// 14.8: two reserved bytes, the class in the low 3 bits of the third, the number in the
// fourth). It reads in place: every message Ferry sends passes here.
func rawErrorCode(b []byte) (int, bool) {
	t, ok := messageType(b)
	if !ok || t.Class != stun.ClassErrorResponse {
		return 0, false
	}
	off := stunHeaderSize
	for off+attrHeaderSize <= len(b) {
		typ := stun.AttrType(binary.BigEndian.Uint16(b[off:]))
		length := int(binary.BigEndian.Uint16(b[off+2:]))
		value := off + attrHeaderSize
		if typ == stun.AttrErrorCode && length >= 4 && value+4 <= len(b) {
			return int(b[value+2]&0x07)*100 + int(b[value+3]), true
		}
		off = value + (length+3)&^3
	}
	return 0, false
}

// channelFrame turns frame (a peer datagram after relay.Headroom) into a ChannelData message
// for channel n in place, padded to 4 bytes on a stream transport (RFC 8656 section 12.5).
func channelFrame(frame []byte, n uint16, stream bool) []byte {
	size := len(frame) - relay.Headroom
	end := len(frame)
	if stream {
		end = relay.Headroom + (size+3)&^3
	}
	out := frame[relay.Headroom-channelDataHeaderSize : end]
	clear(out[channelDataHeaderSize+size:])
	binary.BigEndian.PutUint16(out, n)
	binary.BigEndian.PutUint16(out[2:], uint16(size))
	return out
}

// dataIndication turns frame (a peer datagram after relay.Headroom) into a Data indication
// from peer in place: XOR-PEER-ADDRESS and DATA (RFC 8656 section 11.4), with a random
// transaction ID.
func dataIndication(frame []byte, peer netip.AddrPort) []byte {
	size := len(frame) - relay.Headroom
	addrLen := 8
	if peer.Addr().Is6() {
		addrLen = 20
	}
	start := relay.Headroom - stunHeaderSize - attrHeaderSize - addrLen - attrHeaderSize
	out := frame[start : relay.Headroom+(size+3)&^3]
	clear(frame[relay.Headroom+size : relay.Headroom+(size+3)&^3])

	binary.BigEndian.PutUint16(out, dataIndicationType)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)-stunHeaderSize))
	binary.BigEndian.PutUint32(out[4:], magicCookie)
	binary.LittleEndian.PutUint64(out[8:], rand.Uint64())
	binary.LittleEndian.PutUint32(out[16:], rand.Uint32())

	attr := out[stunHeaderSize:]
	binary.BigEndian.PutUint16(attr, uint16(stun.AttrXORPeerAddress))
	binary.BigEndian.PutUint16(attr[2:], uint16(addrLen))
	putXORAddress(attr[attrHeaderSize:attrHeaderSize+addrLen], peer, out[4:stunHeaderSize])

	data := attr[attrHeaderSize+addrLen:]
	binary.BigEndian.PutUint16(data, uint16(stun.AttrData))
	binary.BigEndian.PutUint16(data[2:], uint16(size))
	return out
}

const dataIndicationType = 0x0017 // Data method, indication class (RFC 8656 section 17)

// putXORAddress writes the value of an XOR-…-ADDRESS attribute (RFC 8489 section 14.2) into v
// (8 bytes for IPv4, 20 for IPv6); key is the magic cookie followed by the transaction ID.
func putXORAddress(v []byte, ap netip.AddrPort, key []byte) {
	v[0] = 0
	v[1] = 0x01
	if ap.Addr().Is6() {
		v[1] = 0x02
	}
	binary.BigEndian.PutUint16(v[2:], ap.Port()^binary.BigEndian.Uint16(key))
	ip := ap.Addr().As16()
	if ap.Addr().Is4() {
		ip4 := ap.Addr().As4()
		copy(ip[:], ip4[:])
	}
	for i := range len(v) - 4 {
		v[4+i] = ip[i] ^ key[i]
	}
}

// badFingerprint reports whether m carries a FINGERPRINT that does not match its bytes, or
// one that is not its last attribute (RFC 8489 section 14.7).
func badFingerprint(m *stun.Message) bool {
	return m.Contains(stun.AttrFingerprint) && stun.Fingerprint.Check(m) != nil
}

// Protocol numbers of REQUESTED-TRANSPORT (RFC 8656 section 18.8, RFC 6062 section 6.1).
const protoTCP = 6

// requestsTCP reports whether an Allocate asks for a TCP relay (RFC 6062).
func requestsTCP(m *stun.Message) bool {
	v, err := m.Get(stun.AttrRequestedTransport)
	return err == nil && len(v) >= 1 && v[0] == protoTCP
}
