package turnwire

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/pion/stun/v4"
)

// MessageIntegritySHA256 is a long-term (KeySHA256, KeyMD5) or short-term key that signs
// and checks MESSAGE-INTEGRITY-SHA256 (RFC 8489 section 14.6), which pion/stun v4.0.0
// lacks: an HMAC-SHA256 of the message up to the attribute, with the header's length
// counting up to the end of the attribute, as if it were the last one.
type MessageIntegritySHA256 []byte

// Sizes of the MESSAGE-INTEGRITY-SHA256 value: the full HMAC is sent, and a receiver takes
// a truncated one of 16 bytes or more, in steps of 4 (RFC 8489 section 14.6).
const (
	integritySHA256Size = sha256.Size
	integritySHA256Min  = 16
)

// AddTo appends MESSAGE-INTEGRITY-SHA256 with the full 32-byte HMAC to m (stun.Setter).
// Only FINGERPRINT may follow it (RFC 8489 section 14.6), so it refuses a message that has
// one already.
func (k MessageIntegritySHA256) AddTo(m *stun.Message) error {
	for _, a := range m.Attributes {
		switch a.Type {
		case stun.AttrFingerprint:
			return fmt.Errorf("turnwire: adding MESSAGE-INTEGRITY-SHA256: %w", stun.ErrFingerprintBeforeIntegrity)
		case stun.AttrMessageIntegritySHA256:
			return errors.New("turnwire: message has MESSAGE-INTEGRITY-SHA256 already")
		}
	}
	end := HeaderSize + int(m.Length)
	if end > len(m.Raw) || end+AttrHeaderSize+integritySHA256Size-HeaderSize > math.MaxUint16 {
		return fmt.Errorf("turnwire: adding MESSAGE-INTEGRITY-SHA256: %w", ErrMalformed)
	}
	mac := k.sum(m.Raw[:end], end+AttrHeaderSize+integritySHA256Size-HeaderSize)
	m.Add(stun.AttrMessageIntegritySHA256, mac[:])
	return nil
}

// Check verifies the MESSAGE-INTEGRITY-SHA256 of m, the first one if there are more: the
// HMAC of what precedes it, compared in constant time with as many bytes as the attribute
// carries (16 to 32, a multiple of 4; anything else is malformed). It reads m.Raw and
// leaves it as it is, so a decoded message may be checked against several keys.
func (k MessageIntegritySHA256) Check(m *stun.Message) error {
	off, v, err := findIntegritySHA256(m)
	if err != nil {
		return err
	}
	if len(v) < integritySHA256Min || len(v) > integritySHA256Size || len(v)%4 != 0 {
		return fmt.Errorf("%w: MESSAGE-INTEGRITY-SHA256 of %d bytes", ErrMalformed, len(v))
	}
	mac := k.sum(m.Raw[:off], off+AttrHeaderSize+len(v)-HeaderSize)
	if !hmac.Equal(v, mac[:len(v)]) {
		return fmt.Errorf("turnwire: MESSAGE-INTEGRITY-SHA256: %w", stun.ErrIntegrityMismatch)
	}
	return nil
}

// sum is the HMAC-SHA256 of msg, a STUN header and the attributes before
// MESSAGE-INTEGRITY-SHA256, with length in place of the header's length field (RFC 8489
// section 14.6). msg itself is not changed.
func (k MessageIntegritySHA256) sum(msg []byte, length int) [sha256.Size]byte {
	hdr := [HeaderSize]byte(msg[:HeaderSize])
	binary.BigEndian.PutUint16(hdr[2:], uint16(length))
	h := hmac.New(sha256.New, k)
	h.Write(hdr[:])
	h.Write(msg[HeaderSize:])
	return [sha256.Size]byte(h.Sum(nil))
}

// findIntegritySHA256 walks the attributes of m.Raw for the first
// MESSAGE-INTEGRITY-SHA256: its offset in m.Raw and its value. It walks the bytes rather
// than m.Attributes because Decode leaves out some attributes before it (those after a
// MESSAGE-INTEGRITY), and the HMAC covers them all.
func findIntegritySHA256(m *stun.Message) (int, []byte, error) {
	if len(m.Raw) < HeaderSize {
		return 0, nil, fmt.Errorf("%w: message shorter than its header", ErrMalformed)
	}
	end := HeaderSize + int(binary.BigEndian.Uint16(m.Raw[2:]))
	if end > len(m.Raw) {
		return 0, nil, fmt.Errorf("%w: message length past its end", ErrMalformed)
	}
	for off := HeaderSize; off+AttrHeaderSize <= end; {
		length := int(binary.BigEndian.Uint16(m.Raw[off+2:]))
		value := off + AttrHeaderSize
		if value+length > end {
			return 0, nil, fmt.Errorf("%w: attribute past the end of the message", ErrMalformed)
		}
		if stun.AttrType(binary.BigEndian.Uint16(m.Raw[off:])) == stun.AttrMessageIntegritySHA256 {
			return off, m.Raw[value : value+length], nil
		}
		off = value + pad4(length)
	}
	return 0, nil, fmt.Errorf("turnwire: MESSAGE-INTEGRITY-SHA256: %w", stun.ErrAttributeNotFound)
}

// Algorithm is a password algorithm: how a long-term password becomes the key of the
// message integrity (RFC 8489 section 18.5).
type Algorithm uint16

// The password algorithms of RFC 8489 section 18.5.1; neither has parameters.
const (
	AlgorithmMD5    Algorithm = 1 // KeyMD5: what RFC 5389 clients use
	AlgorithmSHA256 Algorithm = 2 // KeySHA256
)

// algorithmEntry reads one algorithm at the start of v, the value of PASSWORD-ALGORITHM
// or part of PASSWORD-ALGORITHMS (RFC 8489 sections 14.11, 14.12): its number, the
// length of its parameters, and the parameters padded to 4 bytes. The padding may be
// missing at the very end of v, where the attribute's own padding takes its place. It
// returns the rest of v. MD5 and SHA-256 have no parameters, so parameters for them are
// malformed; those of an algorithm Ferry does not know are skipped.
func algorithmEntry(v []byte) (Algorithm, []byte, error) {
	if len(v) < 4 {
		return 0, nil, fmt.Errorf("%w: password algorithm of %d bytes", ErrMalformed, len(v))
	}
	alg := Algorithm(binary.BigEndian.Uint16(v))
	params := int(binary.BigEndian.Uint16(v[2:]))
	switch {
	case 4+params > len(v):
		return 0, nil, fmt.Errorf("%w: password algorithm parameters past the end", ErrMalformed)
	case params != 0 && (alg == AlgorithmMD5 || alg == AlgorithmSHA256):
		return 0, nil, fmt.Errorf("%w: parameters for password algorithm %d", ErrMalformed, alg)
	}
	return alg, v[min(4+pad4(params), len(v)):], nil
}

// PasswordAlgorithm decodes PASSWORD-ALGORITHM (RFC 8489 section 14.12): the one
// algorithm a client chose from the server's PASSWORD-ALGORITHMS.
func PasswordAlgorithm(v []byte) (Algorithm, error) {
	alg, rest, err := algorithmEntry(v)
	if err != nil {
		return 0, err
	}
	if len(rest) != 0 {
		return 0, fmt.Errorf("%w: %d bytes after PASSWORD-ALGORITHM", ErrMalformed, len(rest))
	}
	return alg, nil
}

// PasswordAlgorithms decodes PASSWORD-ALGORITHMS (RFC 8489 section 14.11): the algorithms
// a server offers, in its order of preference, which a client echoes in its request so
// that the server can tell that no one in between took the stronger ones out (section
// 9.2.4). An empty list is malformed.
func PasswordAlgorithms(v []byte) ([]Algorithm, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("%w: empty PASSWORD-ALGORITHMS", ErrMalformed)
	}
	var algs []Algorithm
	for len(v) > 0 {
		alg, rest, err := algorithmEntry(v)
		if err != nil {
			return nil, err
		}
		algs = append(algs, alg)
		v = rest
	}
	return algs, nil
}

// PasswordAlgorithmAttr is PASSWORD-ALGORITHM to add to a message (stun.Setter), without
// parameters.
type PasswordAlgorithmAttr Algorithm

// AddTo adds the attribute to m.
func (a PasswordAlgorithmAttr) AddTo(m *stun.Message) error {
	var v [4]byte
	binary.BigEndian.PutUint16(v[:], uint16(a))
	m.Add(stun.AttrPasswordAlgorithm, v[:])
	return nil
}

// PasswordAlgorithmsAttr is PASSWORD-ALGORITHMS to add to a message (stun.Setter): each
// algorithm without parameters, in order.
type PasswordAlgorithmsAttr []Algorithm

// AddTo adds the attribute to m.
func (a PasswordAlgorithmsAttr) AddTo(m *stun.Message) error {
	if len(a) == 0 || 4*len(a) > math.MaxUint16 {
		return fmt.Errorf("turnwire: PASSWORD-ALGORITHMS of %d algorithms", len(a))
	}
	v := make([]byte, 4*len(a))
	for i, alg := range a {
		binary.BigEndian.PutUint16(v[4*i:], uint16(alg))
	}
	m.Add(stun.AttrPasswordAlgorithms, v)
	return nil
}

// KeyMD5 is the long-term key of algorithm MD5 (RFC 8489 section 9.2.2): MD5 of user,
// realm and password joined by colons; the HA1 of Ferry's users file, and pion's
// stun.NewLongTermIntegrity. MD5 is weak, but it is the key every RFC 5389 client uses. The strings are used as they are: the OpaqueString
// preparation (RFC 8265) that section 9.2.2 applies to realm and password is not done
// here, so the caller passes them prepared (for ASCII they are already).
func KeyMD5(user, realm, password string) []byte {
	sum := md5.Sum([]byte(user + ":" + realm + ":" + password))
	return sum[:]
}

// KeySHA256 is the long-term key of algorithm SHA-256 (RFC 8489 section 9.2.2): SHA-256 of
// user, realm and password joined by colons. As with KeyMD5, no OpaqueString preparation
// is done.
func KeySHA256(user, realm, password string) []byte {
	sum := sha256.Sum256([]byte(user + ":" + realm + ":" + password))
	return sum[:]
}

// UserHash is the value of USERHASH (RFC 8489 section 14.4): SHA-256 of user and realm
// joined by a colon, which a client sends in place of USERNAME to hide it, and a server
// looks its users up by. No OpaqueString preparation is done.
func UserHash(user, realm string) [sha256.Size]byte {
	return sha256.Sum256([]byte(user + ":" + realm))
}
