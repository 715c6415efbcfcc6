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
// may begin a handshake: its first record is an epoch-0 handshake record holding the
// start of a ClientHello with message_seq 0 and no cookie. Whatever the ClientHello
// offers, DTLS 1.0 included, pion answers: with an alert if it cannot take it. Nothing
// else from an unknown source can lead anywhere: a ClientHello with a cookie answers a
// HelloVerifyRequest of a peer the gate has dropped, and pion/dtls cannot take up a
// handshake in its middle.
func opensHandshake(b []byte) bool {
	r, _, ok := nextRecord(b)
	if !ok || r.contentType != contentHandshake || r.epoch != 0 || !isDTLSVersion(b[1], b[2]) {
		return false
	}
	f, ok := parseFragment(r.fragment)
	if !ok || f.typ != typeClientHello || f.seq != 0 || f.offset != 0 || len(f.body) < helloFixedLen {
		return false
	}
	sid := int(f.body[helloFixedLen-1])
	if sid > maxSessionID || len(f.body) <= helloFixedLen+sid {
		return false
	}
	return f.body[helloFixedLen+sid] == 0 // cookie length
}

// fragment is one fragment of a handshake message (RFC 6347 section 4.2.2).
type fragment struct {
	typ            byte
	seq            uint16
	length, offset int // of the whole message, and of this fragment in it
	body           []byte
}

// parseFragment reads the handshake fragment a record starts with.
func parseFragment(b []byte) (fragment, bool) {
	if len(b) < handshakeHeaderLen {
		return fragment{}, false
	}
	f := fragment{typ: b[0], length: uint24(b[1:4]), seq: binary.BigEndian.Uint16(b[4:6]), offset: uint24(b[6:9])}
	n := uint24(b[9:12])
	if f.offset+n > f.length || len(b)-handshakeHeaderLen < n {
		return fragment{}, false
	}
	f.body = b[handshakeHeaderLen : handshakeHeaderLen+n]
	return f, true
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
