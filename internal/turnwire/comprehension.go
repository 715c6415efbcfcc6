package turnwire

import (
	"slices"

	"github.com/pion/stun/v4"
)

// Understood reports whether a TURN server understands the comprehension-required
// attribute t (below 0x8000; RFC 8489 section 14): those of STUN (RFC 8489), TURN (RFC
// 8656), TCP allocations (RFC 6062: CONNECTION-ID), IPv6 (RFC 6156:
// REQUESTED-ADDRESS-FAMILY), and ICE's PRIORITY and USE-CANDIDATE, which a client may put
// into a Binding request (RFC 8445 section 16.1). RFC 5780's CHANGE-REQUEST, PADDING and
// RESPONSE-PORT are not understood: Ferry does no NAT behaviour discovery, and a client
// that asks for it must learn so from a 420. It is a switch rather than
// stun.AttrType.Known, which builds a map on every call, and it runs for every attribute of
// every message.
func Understood(t stun.AttrType) bool {
	switch t {
	case stun.AttrMappedAddress, stun.AttrUsername, stun.AttrMessageIntegrity,
		stun.AttrErrorCode, stun.AttrUnknownAttributes, stun.AttrRealm, stun.AttrNonce,
		stun.AttrMessageIntegritySHA256, stun.AttrPasswordAlgorithm, stun.AttrUserhash,
		stun.AttrXORMappedAddress, // RFC 8489
		stun.AttrChannelNumber, stun.AttrLifetime, stun.AttrXORPeerAddress, stun.AttrData,
		stun.AttrXORRelayedAddress, stun.AttrRequestedAddressFamily, stun.AttrEvenPort,
		stun.AttrRequestedTransport, stun.AttrDontFragment, stun.AttrReservationToken, // RFC 8656
		stun.AttrConnectionID,                    // RFC 6062
		stun.AttrPriority, stun.AttrUseCandidate: // RFC 8445
		return true
	}
	return false
}

// UnknownRequired lists, once each, the comprehension-required attributes of m that
// Understood does not know: a request with any gets 420 with them in UNKNOWN-ATTRIBUTES,
// an indication with any is discarded (RFC 8489 section 6.3). It returns nil without
// allocating for the usual message, which has none.
func UnknownRequired(m *stun.Message) []stun.AttrType {
	var unknown []stun.AttrType
	for _, a := range m.Attributes {
		if a.Type.Required() && !Understood(a.Type) && !slices.Contains(unknown, a.Type) {
			unknown = append(unknown, a.Type)
		}
	}
	return unknown
}
