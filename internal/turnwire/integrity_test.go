package turnwire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pion/stun/v4"
)

// The sample request of RFC 8489 Appendix B.1, with USERHASH and MESSAGE-INTEGRITY-SHA256,
// as corrected by erratum 6268 (the published one has the whole size in its length field,
// lacks PASSWORD-ALGORITHM, and its HMAC matches neither). User "マトリックス", realm
// "example.org", password "The<U+00AD>M<U+00AA>tr<U+2168>", "TheMatrIX" after OpaqueString.
const (
	rfc8489User     = "\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9"
	rfc8489Realm    = "example.org"
	rfc8489Password = "TheMatrIX"
	rfc8489Nonce    = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"
	rfc8489B1       = "000100902112a44278ad3433c6ad72c029da412e" + // header
		"001e0020" + "4a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704" + // USERHASH
		"00150029" + "6f624d61744a6f7332414141" + "43662f2f3439396b39353464" +
		"364f4c33346f4c394653547679363473" + "41000000" + // NONCE, padded
		"0014000b" + "6578616d706c652e6f726700" + // REALM, padded
		"001d0004" + "00020000" + // PASSWORD-ALGORITHM: SHA-256
		"001c0020" + "b5c7bf005b6c52a21c51c5e892f81924136296cb927c43149309278cc6518e65" // MESSAGE-INTEGRITY-SHA256
)

func decodeHex(t *testing.T, s string) *stun.Message {
	t.Helper()
	var m stun.Message
	if err := stun.Decode(unhex(t, s), &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestIntegritySHA256RFC8489Sample(t *testing.T) {
	m := decodeHex(t, rfc8489B1)
	key := MessageIntegritySHA256(KeySHA256(rfc8489User, rfc8489Realm, rfc8489Password))
	if err := key.Check(m); err != nil {
		t.Fatalf("the RFC's sample does not check: %v", err)
	}
	if hash, _ := m.Get(stun.AttrUserhash); !bytes.Equal(hash, func() []byte { h := UserHash(rfc8489User, rfc8489Realm); return h[:] }()) {
		t.Errorf("UserHash = %x; the sample has %x", UserHash(rfc8489User, rfc8489Realm), hash)
	}
	if v, _ := m.Get(stun.AttrPasswordAlgorithm); func() bool { a, err := PasswordAlgorithm(v); return err != nil || a != AlgorithmSHA256 }() {
		t.Errorf("PASSWORD-ALGORITHM %x is not SHA-256", v)
	}
	for name, k := range map[string]MessageIntegritySHA256{
		"MD5 key":        MessageIntegritySHA256(KeyMD5(rfc8489User, rfc8489Realm, rfc8489Password)),
		"wrong password": MessageIntegritySHA256(KeySHA256(rfc8489User, rfc8489Realm, "TheMatrix")),
	} {
		if err := k.Check(m); !errors.Is(err, stun.ErrIntegrityMismatch) {
			t.Errorf("%s: Check = %v; want a mismatch", name, err)
		}
	}

	// Built again from its parts, the message is the RFC's byte for byte.
	hash := UserHash(rfc8489User, rfc8489Realm)
	built, err := stun.Build(
		stun.NewTransactionIDSetter(m.TransactionID), stun.BindingRequest,
		stun.RawAttribute{Type: stun.AttrUserhash, Value: hash[:]},
		stun.NewNonce(rfc8489Nonce), stun.NewRealm(rfc8489Realm),
		PasswordAlgorithmAttr(AlgorithmSHA256), key,
	)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built.Raw, m.Raw) {
		t.Errorf("built\n%x\nthe RFC's\n%x", built.Raw, m.Raw)
	}
}

// Every byte the HMAC covers counts, the header's length included.
func TestIntegritySHA256CoversEveryByte(t *testing.T) {
	raw := unhex(t, rfc8489B1)
	key := MessageIntegritySHA256(KeySHA256(rfc8489User, rfc8489Realm, rfc8489Password))
	for i := range len(raw) - 32 {
		if i >= 4 && i < 8 {
			continue // a changed cookie is no STUN message
		}
		changed := bytes.Clone(raw)
		changed[i] ^= 0x01
		var m stun.Message
		if stun.Decode(changed, &m) != nil {
			continue // a length that no longer fits
		}
		if err := key.Check(&m); err == nil {
			t.Errorf("a flipped bit in byte %d checks", i)
		}
	}
}

// independentHMAC is the MESSAGE-INTEGRITY-SHA256 value of raw, a message whose last
// attributes are MESSAGE-INTEGRITY-SHA256 (size bytes) and then tail bytes of others,
// computed here from RFC 8489 section 14.6 and not by the code under test: the length in a
// copy of the header is set to end with the attribute, and the attribute's value is left
// out.
func independentHMAC(key, raw []byte, size, tail int) []byte {
	hmacInput := bytes.Clone(raw[:len(raw)-tail-size-AttrHeaderSize])
	binary.BigEndian.PutUint16(hmacInput[2:], uint16(len(raw)-tail-HeaderSize))
	h := hmac.New(sha256.New, key)
	h.Write(hmacInput)
	return h.Sum(nil)
}

func TestIntegritySHA256AddTo(t *testing.T) {
	key := []byte("a short-term password")
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("u"),
		MessageIntegritySHA256(key), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	v, err := m.Get(stun.AttrMessageIntegritySHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := independentHMAC(key, m.Raw, 32, 8); !bytes.Equal(v, want) {
		t.Errorf("MESSAGE-INTEGRITY-SHA256 = %x; want %x", v, want)
	}
	raw := bytes.Clone(m.Raw)
	if err := MessageIntegritySHA256(key).Check(m); err != nil {
		t.Errorf("Check with FINGERPRINT after it: %v", err)
	}
	if !bytes.Equal(raw, m.Raw) {
		t.Error("Check changed the message")
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Errorf("FINGERPRINT: %v", err)
	}
}

// After MESSAGE-INTEGRITY, both are right: pion's HMAC-SHA1 does not cover the new
// attribute, and the SHA-256 one covers MESSAGE-INTEGRITY.
func TestIntegritySHA256AfterSHA1(t *testing.T) {
	key := KeyMD5("u", "r", "p")
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("u"),
		stun.MessageIntegrity(key), MessageIntegritySHA256(key))
	if err != nil {
		t.Fatal(err)
	}
	if err := stun.MessageIntegrity(key).Check(m); err != nil {
		t.Errorf("MESSAGE-INTEGRITY: %v", err)
	}
	if err := MessageIntegritySHA256(key).Check(m); err != nil {
		t.Errorf("MESSAGE-INTEGRITY-SHA256: %v", err)
	}
}

func TestIntegritySHA256AddToRefuses(t *testing.T) {
	for name, setters := range map[string][]stun.Setter{
		"after FINGERPRINT": {stun.Fingerprint, MessageIntegritySHA256("k")},
		"twice":             {MessageIntegritySHA256("k"), MessageIntegritySHA256("k")},
	} {
		if _, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, setters...)...); err == nil {
			t.Errorf("%s: added", name)
		}
	}
}

// A receiver takes the HMAC truncated to 16 bytes or more in steps of 4, and nothing else
// (RFC 8489 section 14.6).
func TestIntegritySHA256Truncated(t *testing.T) {
	key := []byte("k")
	for size := 0; size <= 36; size++ {
		m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("u"))
		if err != nil {
			t.Fatal(err)
		}
		m.Add(stun.AttrMessageIntegritySHA256, make([]byte, size))
		mac := independentHMAC(key, m.Raw, pad4(size), 0)
		copy(m.Attributes[len(m.Attributes)-1].Value, mac) // in place in m.Raw
		var decoded stun.Message
		if err := stun.Decode(m.Raw, &decoded); err != nil {
			t.Fatal(err)
		}
		err = MessageIntegritySHA256(key).Check(&decoded)
		if valid := size >= 16 && size <= 32 && size%4 == 0; valid != (err == nil) {
			t.Errorf("%d bytes: Check = %v", size, err)
		} else if !valid && !errors.Is(err, ErrMalformed) {
			t.Errorf("%d bytes: Check = %v; want ErrMalformed", size, err)
		}
	}
}

func TestIntegritySHA256Missing(t *testing.T) {
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.MessageIntegrity("k"))
	if err != nil {
		t.Fatal(err)
	}
	if err := MessageIntegritySHA256("k").Check(m); !errors.Is(err, stun.ErrAttributeNotFound) {
		t.Errorf("Check = %v; want ErrAttributeNotFound", err)
	}
}

// KeyMD5 is pion's long-term key and checks the long-term sample request of RFC 5769
// section 2.4.
func TestKeyMD5(t *testing.T) {
	if got, want := KeyMD5("user", "realm", "pass"), stun.NewLongTermIntegrity("user", "realm", "pass"); !bytes.Equal(got, want) {
		t.Errorf("KeyMD5 = %x; pion's = %x", got, want)
	}
	m := decodeHex(t, "000100602112a44278ad3433c6ad72c029da412e"+
		"00060012"+"e3839ee38388e383aae38383e382afe382b90000"+ // USERNAME
		"0015001c"+"662f2f3439396b39353464364f4c33346f4c39465354767936347341"+ // NONCE
		"0014000b"+"6578616d706c652e6f726700"+ // REALM
		"00080014"+"f67024656dd64a3e02b8e0712e85c9a28ca89666") // MESSAGE-INTEGRITY
	if err := stun.MessageIntegrity(KeyMD5(rfc8489User, rfc8489Realm, rfc8489Password)).Check(m); err != nil {
		t.Errorf("RFC 5769 section 2.4: %v", err)
	}
}

func TestKeySHA256(t *testing.T) {
	want := sha256.Sum256([]byte("user:realm:pass"))
	if got := KeySHA256("user", "realm", "pass"); !bytes.Equal(got, want[:]) {
		t.Errorf("KeySHA256 = %x; want %x", got, want)
	}
}

func TestPasswordAlgorithms(t *testing.T) {
	for v, want := range map[string][]Algorithm{
		"\x00\x01\x00\x00\x00\x02\x00\x00":                 {AlgorithmMD5, AlgorithmSHA256},
		"\x00\x02\x00\x00":                                 {AlgorithmSHA256},
		"\x00\x09\x00\x03abc\x00\x00\x02\x00\x00":          {9, AlgorithmSHA256}, // unknown, with parameters
		"\x00\x02\x00\x00\x00\x09\x00\x03abc":              {AlgorithmSHA256, 9}, // last padding left to the attribute
		"\x00\x09\x00\x04abcd\x00\x01\x00\x00":             {9, AlgorithmMD5},
		"\x00\x09\x00\x00\x00\x09\x00\x00\x00\x09\x00\x00": {9, 9, 9},
	} {
		if got, err := PasswordAlgorithms([]byte(v)); err != nil || !slices.Equal(got, want) {
			t.Errorf("PasswordAlgorithms(%x) = %v, %v; want %v", v, got, err, want)
		}
	}
	wantMalformed(t, "PasswordAlgorithms", PasswordAlgorithms,
		nil, []byte{0, 1, 0}, []byte{0, 1, 0, 0, 0}, []byte{0, 9, 0, 5, 'a', 'b', 'c', 'd'},
		[]byte{0, 1, 0, 4, 0, 0, 0, 0}, []byte{0, 2, 0, 1, 0, 0, 0, 0})

	v := buildValue(t, PasswordAlgorithmsAttr{AlgorithmMD5, AlgorithmSHA256}, stun.AttrPasswordAlgorithms)
	if string(v) != "\x00\x01\x00\x00\x00\x02\x00\x00" {
		t.Errorf("PasswordAlgorithmsAttr = %x", v)
	}
	if _, err := stun.Build(PasswordAlgorithmsAttr{}); err == nil {
		t.Error("an empty PASSWORD-ALGORITHMS encoded")
	}
}

func TestPasswordAlgorithm(t *testing.T) {
	for v, want := range map[string]Algorithm{
		"\x00\x01\x00\x00":           AlgorithmMD5,
		"\x00\x02\x00\x00":           AlgorithmSHA256,
		"\x00\x09\x00\x02ab":         9,
		"\x00\x09\x00\x02ab\x00\x00": 9,
	} {
		if got, err := PasswordAlgorithm([]byte(v)); err != nil || got != want {
			t.Errorf("PasswordAlgorithm(%x) = %v, %v; want %v", v, got, err, want)
		}
	}
	wantMalformed(t, "PasswordAlgorithm", PasswordAlgorithm,
		nil, []byte{0, 1}, []byte{0, 1, 0, 0, 0, 2, 0, 0}, []byte{0, 1, 0, 4, 0, 0, 0, 0}, []byte{0, 9, 0, 3, 'a'},
		[]byte(strings.Repeat("\x00", 5)))
	if v := buildValue(t, PasswordAlgorithmAttr(AlgorithmMD5), stun.AttrPasswordAlgorithm); string(v) != "\x00\x01\x00\x00" {
		t.Errorf("PasswordAlgorithmAttr = %x", v)
	}
}
