package dtlsgate

import "encoding/binary"

// The parts of DTLS 1.2 records (RFC 6347 section 4.1) and handshake messages (section
// 4.2.2) the gate reads. It never decrypts: everything it looks at is epoch 0, plaintext.
const (
	recordHeaderLen    = 13
	handshakeHeaderLen = 12
	contentHandshake   = 22

	typeClientHello        = 1
	typeServerHello        = 2
	typeHelloVerifyRequest = 3

	// helloFixedLen is the start of a ClientHello body up to its session ID's length:
	// client_version (2), random (32), session_id length (1).
	helloFixedLen = 2 + 32 + 1
	maxSessionID  = 32
)

// record is one DTLS record of a datagram.
type record struct {
	contentType byte
	epoch       uint16
	fragment    []byte
}

// nextRecord splits the first record off b; ok is false when b does not start with a
// whole record.
func nextRecord(b []byte) (r record, rest []byte, ok bool) {
	if len(b) < recordHeaderLen {
		return record{}, nil, false
	}
	n := int(binary.BigEndian.Uint16(b[11:13]))
	if len(b) < recordHeaderLen+n {
		return record{}, nil, false
	}
	r = record{contentType: b[0], epoch: binary.BigEndian.Uint16(b[3:5]), fragment: b[recordHeaderLen : recordHeaderLen+n]}
	return r, b[recordHeaderLen+n:], true
}

// isDTLSVersion reports whether a record's version field is DTLS 1.0 (which a first
// ClientHello's record often carries) or DTLS 1.2.
func isDTLSVersion(hi, lo byte) bool { return hi == 0xfe && (lo == 0xff || lo == 0xfd) }

// opensHandshake reports whether b, a datagram from a source the gate has no peer for,
// may begin a handshake: its first record is an epoch-0 handshake record holding a whole
// DTLS 1.2 ClientHello with message_seq 0 and no cookie. Nothing else from an unknown
// source can lead anywhere: a ClientHello with a cookie answers a HelloVerifyRequest of a
// peer the gate has dropped, and pion/dtls cannot take up a handshake in its middle.
func opensHandshake(b []byte) bool {
	r, _, ok := nextRecord(b)
	if !ok || r.contentType != contentHandshake || r.epoch != 0 || !isDTLSVersion(b[1], b[2]) {
		return false
	}
	body, ok := wholeMessage(r.fragment, typeClientHello)
	if !ok || binary.BigEndian.Uint16(r.fragment[4:6]) != 0 {
		return false
	}
	if len(body) < helloFixedLen || body[0] != 0xfe || body[1] != 0xfd {
		return false
	}
	sid := int(body[helloFixedLen-1])
	if sid > maxSessionID || len(body) <= helloFixedLen+sid {
		return false
	}
	return body[helloFixedLen+sid] == 0 // cookie length
}

// wholeMessage returns the body of the handshake message of type typ that starts
// fragment, if the fragment holds all of it.
func wholeMessage(fragment []byte, typ byte) ([]byte, bool) {
	if len(fragment) < handshakeHeaderLen || fragment[0] != typ {
		return nil, false
	}
	length, offset, fragLen := uint24(fragment[1:4]), uint24(fragment[6:9]), uint24(fragment[9:12])
	if offset != 0 || fragLen != length || len(fragment)-handshakeHeaderLen < length {
		return nil, false
	}
	return fragment[handshakeHeaderLen : handshakeHeaderLen+length], true
}

func uint24(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }

// flight is what a datagram pion sends during a handshake says about it.
type flight struct {
	helloVerify bool // a HelloVerifyRequest: pion asks the client to prove its address
	serverHello bool // a ServerHello: pion took the client's cookie
}

// readFlight looks at the epoch-0 handshake records of a datagram pion sends.
func readFlight(b []byte) flight {
	var f flight
	for {
		r, rest, ok := nextRecord(b)
		if !ok {
			return f
		}
		if r.contentType == contentHandshake && r.epoch == 0 && len(r.fragment) > 0 {
			f.helloVerify = f.helloVerify || r.fragment[0] == typeHelloVerifyRequest
			f.serverHello = f.serverHello || r.fragment[0] == typeServerHello
		}
		b = rest
	}
}
