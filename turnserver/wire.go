package turnserver

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pion/stun/v4"
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
