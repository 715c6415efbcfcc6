package turnserver

import (
	"errors"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/turnwire"
	"github.com/ferry-rtc/ferry/relay"
)

// The client → peer direction of the data plane: ChannelData (RFC 8656 section 12.4) and
// Send indications (section 11.2) from a client go out of the allocation's relay socket.
// It runs on the listener's read loop, for one batch at a time; it takes no lock and, past
// its batch scratch, allocates nothing.

// toPeers relays b if it is ChannelData or a Send indication from the client of a (nil:
// none), and reports whether it was.
func (s *Server) toPeers(a *allocation, b []byte, out *relayBatch, now time.Time) bool {
	if channel, payload, ok := turnwire.ChannelData(b); ok {
		s.channelData(a, channel, payload, out, now)
		return true
	}
	if isSendIndication(b) {
		s.sendIndication(a, b, out, now)
		return true
	}
	return false
}

// isSendIndication reports whether b starts like a Send indication (RFC 8656 section 17).
func isSendIndication(b []byte) bool {
	return stun.IsMessage(b) && b[0] == 0x00 && b[1] == 0x16 // a header with the magic cookie
}

// channelData relays a ChannelData message from the client of a (nil: none) to the peer
// its channel is bound to, if the binding and the peer's permission are live.
func (s *Server) channelData(a *allocation, channel uint16, payload []byte, out *relayBatch, now time.Time) {
	var r route // an unbound channel's: expired
	if a != nil {
		r = a.peers.Load().byNumber[channel]
	}
	if now.UnixNano() >= r.until {
		s.meters.dropped[dropUnrelayable].Inc()
		return
	}
	out.add(a.relayFor(r.peer.Addr().Is6()), payload, r.peer)
}

// sendIndication relays the DATA of a Send indication from the client of a (nil: none) to
// its XOR-PEER-ADDRESS, if the allocation has a live permission for the peer and the peer
// is allowed. Whatever it cannot relay is dropped and counted by its reason.
func (s *Server) sendIndication(a *allocation, b []byte, out *relayBatch, now time.Time) {
	peer, data, err := turnwire.ParseSend(b)
	peer = relay.Unmap(peer)
	switch {
	case errors.Is(err, turnwire.ErrFingerprint):
		s.meters.dropped[dropFingerprint].Inc()
	case errors.Is(err, turnwire.ErrUnknownAttribute):
		s.meters.dropped[dropUnknownAttribute].Inc()
	case err != nil:
		s.meters.dropped[dropMalformed].Inc()
	case a == nil:
		s.meters.dropped[dropUnrelayable].Inc()
	case s.checkPeer(a, peer, relay.UDP, false, deniedSend) == stun.CodeForbidden:
		// counted as a denial by checkPeer; a peer of another family has no relay below
	default:
		exp, ok := a.peers.Load().perms[peer.Addr()]
		rl := a.relayFor(peer.Addr().Is6())
		if !ok || now.UnixNano() >= exp || rl == nil {
			s.meters.dropped[dropUnrelayable].Inc()
			return
		}
		out.add(rl, data, peer)
	}
}

// relayBatch collects what one read of a client's listener (or stream) sends to peers, so
// that datagrams to one peer through one relay go out together: one sendmmsg instead of
// one sendto each. A batch's datagrams point into the read buffers and are sent before the
// next read.
type relayBatch struct {
	n     int
	via   [readBatch]*udpRelay
	to    [readBatch]netip.AddrPort
	bufs  [readBatch][]byte
	group [readBatch][]byte
}

// add queues payload for peer through rl (nil: the allocation has no relay of the peer's
// family, which its checks rule out).
func (b *relayBatch) add(rl *udpRelay, payload []byte, peer netip.AddrPort) {
	if rl == nil {
		return
	}
	if b.n == len(b.bufs) { // a UDP read holds at most this many, a stream read one: a safety net
		b.flush()
	}
	b.via[b.n], b.to[b.n], b.bufs[b.n] = rl, peer, payload
	b.n++
}

// flush sends what the batch holds: runs of datagrams with the same relay and peer go out
// in one system call.
func (b *relayBatch) flush() {
	for i := 0; i < b.n; {
		j := i + 1
		for j < b.n && b.via[j] == b.via[i] && b.to[j] == b.to[i] {
			j++
		}
		k := copy(b.group[:], b.bufs[i:j])
		b.via[i].toPeer(b.group[:k], b.to[i])
		clear(b.group[:k])
		i = j
	}
	clear(b.via[:b.n])
	clear(b.bufs[:b.n])
	b.n = 0
}
