package turnwire

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Reasons a stream frame has no size, prebuilt: a stream that sends garbage is closed, and
// closing it should not cost an allocation per attempt.
var (
	errFrameShort   = fmt.Errorf("%w: fewer than 4 bytes of a frame header", ErrMalformed)
	errFrameKind    = fmt.Errorf("%w: stream data is neither STUN nor ChannelData", ErrMalformed)
	errFrameSTUNLen = fmt.Errorf("%w: STUN message length is not a multiple of 4", ErrMalformed)
)

// ChannelData reads the ChannelData message (RFC 8656 section 12.4) that b holds, a
// datagram or a stream frame: its channel number and, in place, its payload. ok is false
// unless the number is within MinChannel-MaxChannel and the length fits b with at most
// the 3 bytes of padding after it that RFC 8656 section 12.5 allows (required on streams,
// optional on UDP); anything longer is not one ChannelData message.
func ChannelData(b []byte) (channel uint16, payload []byte, ok bool) {
	if len(b) < ChannelHeaderSize {
		return 0, nil, false
	}
	channel = binary.BigEndian.Uint16(b)
	end := ChannelHeaderSize + int(binary.BigEndian.Uint16(b[2:]))
	if channel < MinChannel || channel > MaxChannel || end > len(b) || len(b) > pad4(end) {
		return 0, nil, false
	}
	return channel, b[ChannelHeaderSize:end], true
}

// StreamFrameSize is the size of the frame that starts with hdr (at least its first 4
// bytes) on a stream transport, where nothing else marks where one message ends (RFC 8656
// section 12.5): a STUN message, whose first two bits are 00, is its header and length; a
// ChannelData message, whose first two bits are 01, is its header and length padded to 4.
// Anything else, or a STUN length that is not a multiple of 4 (RFC 8489 section 5), is an
// error: the stream has lost its framing and cannot be read any further. The caller checks
// the rest of the frame (magic cookie, channel) once it has read it.
func StreamFrameSize(hdr []byte) (int, error) {
	if len(hdr) < 4 {
		return 0, errFrameShort
	}
	length := int(binary.BigEndian.Uint16(hdr[2:4]))
	switch hdr[0] >> 6 {
	case 0:
		if length%4 != 0 {
			return 0, errFrameSTUNLen
		}
		return HeaderSize + length, nil
	case 1:
		return ChannelHeaderSize + pad4(length), nil
	}
	return 0, errFrameKind
}

// FrameChannelData turns frame, Headroom bytes followed by a peer's datagram, into a
// ChannelData message for channel in place (RFC 8656 section 12.7), and returns it: a
// subslice of frame that starts ChannelHeaderSize bytes before the datagram. padded pads
// it to a multiple of 4 with zeros, as a stream needs (section 12.5), which takes up to
// Tailroom bytes of frame's capacity past its length. It returns nil if channel is outside
// MinChannel-MaxChannel, or frame is shorter than Headroom, lacks that capacity, or holds
// more than a ChannelData length can count.
func FrameChannelData(frame []byte, channel uint16, padded bool) []byte {
	if channel < MinChannel || channel > MaxChannel || len(frame) < Headroom {
		return nil
	}
	size := len(frame) - Headroom
	end := len(frame)
	if padded {
		end = Headroom + pad4(size)
	}
	if size > math.MaxUint16 || end > cap(frame) {
		return nil
	}
	out := frame[Headroom-ChannelHeaderSize : end]
	clear(out[ChannelHeaderSize+size:])
	binary.BigEndian.PutUint16(out, channel)
	binary.BigEndian.PutUint16(out[2:], uint16(size))
	return out
}
