package turnwire

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/pion/stun/v4"
)

// Reasons an XOR address does not decode. They are prebuilt because ParseSend decodes
// XOR-PEER-ADDRESS for every Send indication, and drops must not allocate either.
var (
	errXORIPv4Size = fmt.Errorf("%w: XOR address of family IPv4 is not 8 bytes", ErrMalformed)
	errXORIPv6Size = fmt.Errorf("%w: XOR address of family IPv6 is not 20 bytes", ErrMalformed)
	errXORFamily   = fmt.Errorf("%w: XOR address of an unknown family (or shorter than 4 bytes)", ErrMalformed)
)

// XORAddress decodes the value of XOR-MAPPED-ADDRESS (RFC 8489 section 14.2),
// XOR-PEER-ADDRESS (RFC 8656 section 18.3) or XOR-RELAYED-ADDRESS (section 18.5) of the
// message with transaction ID txID: the port is XORed with the top half of the magic
// cookie, the address with the magic cookie followed by the transaction ID. The value must
// be exactly 8 bytes for family IPv4 and 20 for IPv6: a shorter or longer one would be
// read as some other address. An IPv4 address comes back as a 4-byte netip.Addr; an IPv6
// one as 16 bytes, IPv4-mapped or not, exactly as sent. The first byte is reserved, and
// ignored as section 14.1 says.
func XORAddress(v []byte, txID [stun.TransactionIDSize]byte) (netip.AddrPort, error) {
	var family byte
	if len(v) >= 2 {
		family = v[1]
	}
	switch {
	case family == FamilyIPv4 && len(v) == xorIPv4Size:
		var ip [4]byte
		xorInto(ip[:], v[4:], txID)
		return netip.AddrPortFrom(netip.AddrFrom4(ip), xorPort(v)), nil
	case family == FamilyIPv6 && len(v) == xorIPv6Size:
		var ip [16]byte
		xorInto(ip[:], v[4:], txID)
		return netip.AddrPortFrom(netip.AddrFrom16(ip), xorPort(v)), nil
	case family == FamilyIPv4 && len(v) >= 4:
		return netip.AddrPort{}, errXORIPv4Size
	case family == FamilyIPv6 && len(v) >= 4:
		return netip.AddrPort{}, errXORIPv6Size
	}
	return netip.AddrPort{}, errXORFamily
}

// xorPort reads the X-Port field of an XOR address value (at least 4 bytes).
func xorPort(v []byte) uint16 {
	return binary.BigEndian.Uint16(v[2:4]) ^ MagicCookie>>16
}

// xorInto sets dst to src XORed with the magic cookie followed by txID, the key of the
// X-Address field (RFC 8489 section 14.2); len(dst) is 4 or 16, and src at least as long.
func xorInto(dst, src []byte, txID [stun.TransactionIDSize]byte) {
	var key [4 + stun.TransactionIDSize]byte
	binary.BigEndian.PutUint32(key[:4], MagicCookie)
	copy(key[4:], txID[:])
	for i := range dst {
		dst[i] = src[i] ^ key[i]
	}
}

// xorAddressSize is the size of the XOR address value of ap: 8 bytes for an IPv4 address,
// 20 for any other (IPv6, IPv4-mapped IPv6 included).
func xorAddressSize(ap netip.AddrPort) int {
	if ap.Addr().Is4() {
		return xorIPv4Size
	}
	return xorIPv6Size
}

// putXORAddress writes the XOR address value of ap into v, which is xorAddressSize(ap)
// bytes long. The family follows the address as it is: an IPv4-mapped IPv6 address goes
// out as IPv6, so that decoding gives back what was encoded; a caller that means the IPv4
// peer unmaps it first.
func putXORAddress(v []byte, ap netip.AddrPort, txID [stun.TransactionIDSize]byte) {
	v[0] = 0 // reserved (RFC 8489 section 14.1)
	v[1] = FamilyIPv6
	if ap.Addr().Is4() {
		v[1] = FamilyIPv4
	}
	binary.BigEndian.PutUint16(v[2:4], ap.Port()^MagicCookie>>16)
	ip := ap.Addr().As16()
	if ap.Addr().Is4() {
		ip4 := ap.Addr().As4()
		copy(ip[:], ip4[:])
	}
	xorInto(v[4:], ip[:len(v)-4], txID)
}

// XORAddressAttr is an XOR address attribute to add to a message: Type is
// stun.AttrXORPeerAddress, stun.AttrXORRelayedAddress or stun.AttrXORMappedAddress. It
// uses the message's transaction ID, so it must come after the transaction ID is set.
type XORAddressAttr struct {
	Type stun.AttrType
	Addr netip.AddrPort
}

// AddTo adds the attribute to m (stun.Setter).
func (a XORAddressAttr) AddTo(m *stun.Message) error {
	if !a.Addr.Addr().IsValid() {
		return fmt.Errorf("turnwire: %v without an address", a.Type)
	}
	var v [xorIPv6Size]byte
	size := xorAddressSize(a.Addr)
	putXORAddress(v[:size], a.Addr, m.TransactionID)
	m.Add(a.Type, v[:size])
	return nil
}
