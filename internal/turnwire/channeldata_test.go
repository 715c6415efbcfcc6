package turnwire

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestChannelData(t *testing.T) {
	for _, tc := range []struct {
		name    string
		b       []byte
		channel uint16
		payload []byte
		ok      bool
	}{
		{"min channel", []byte{0x40, 0x00, 0, 2, 'h', 'i'}, 0x4000, []byte("hi"), true},
		{"max channel", []byte{0x7f, 0xff, 0, 2, 'h', 'i'}, 0x7fff, []byte("hi"), true},
		{"padded", []byte{0x40, 0x01, 0, 2, 'h', 'i', 0, 0}, 0x4001, []byte("hi"), true},
		{"3 bytes of padding", []byte{0x40, 0x01, 0, 1, 'h', 0, 0, 0}, 0x4001, []byte("h"), true},
		{"empty", []byte{0x40, 0x01, 0, 0}, 0x4001, []byte{}, true},
		{"4 bytes past the end", []byte{0x40, 0x01, 0, 0, 0, 0, 0, 0}, 0, nil, false},
		{"past padding", []byte{0x40, 0x01, 0, 2, 'h', 'i', 0, 0, 0}, 0, nil, false},
		{"length past the end", []byte{0x40, 0x01, 0, 3, 'h', 'i'}, 0, nil, false},
		{"channel below", []byte{0x3f, 0xff, 0, 2, 'h', 'i'}, 0, nil, false},
		{"channel above", []byte{0x80, 0x00, 0, 2, 'h', 'i'}, 0, nil, false},
		{"short header", []byte{0x40, 0x01, 0}, 0, nil, false},
		{"nothing", nil, 0, nil, false},
	} {
		channel, payload, ok := ChannelData(tc.b)
		if ok != tc.ok || channel != tc.channel || !bytes.Equal(payload, tc.payload) {
			t.Errorf("%s: ChannelData(%x) = %#x, %q, %v; want %#x, %q, %v",
				tc.name, tc.b, channel, payload, ok, tc.channel, tc.payload, tc.ok)
		}
		if ok && len(payload) > 0 && &payload[0] != &tc.b[ChannelHeaderSize] {
			t.Errorf("%s: payload is a copy", tc.name)
		}
	}
}

func TestStreamFrameSize(t *testing.T) {
	for _, tc := range []struct {
		hdr  []byte
		want int
	}{
		{[]byte{0x00, 0x01, 0x00, 0x00}, 20},
		{[]byte{0x01, 0x01, 0x00, 0x0c, 0x21}, 32},
		{[]byte{0x3f, 0xff, 0xff, 0xfc}, 20 + 0xfffc},
		{[]byte{0x40, 0x00, 0x00, 0x00}, 4},
		{[]byte{0x40, 0x00, 0x00, 0x01}, 8},
		{[]byte{0x7f, 0xff, 0x00, 0x04}, 8},
		{[]byte{0x40, 0x00, 0x00, 0x05}, 12},
		{[]byte{0x40, 0x00, 0xff, 0xff}, 4 + 0x10000},
	} {
		if got, err := StreamFrameSize(tc.hdr); err != nil || got != tc.want {
			t.Errorf("StreamFrameSize(%x) = %d, %v; want %d", tc.hdr, got, err, tc.want)
		}
	}
	for _, hdr := range [][]byte{
		nil, {0x40, 0, 0},
		{0x80, 0, 0, 0}, {0xc0, 0, 0, 4}, {0xff, 0xff, 0xff, 0xff}, // neither STUN nor ChannelData
		{0x00, 0x01, 0x00, 0x01}, {0x00, 0x01, 0x00, 0x06}, // STUN length not a multiple of 4
	} {
		if got, err := StreamFrameSize(hdr); !errors.Is(err, ErrMalformed) {
			t.Errorf("StreamFrameSize(%x) = %d, %v; want ErrMalformed", hdr, got, err)
		}
	}
}

// peerFrame is a relay's read buffer holding datagram after Headroom, with Tailroom more
// capacity, which holds junk to show that padding is written, not assumed.
func peerFrame(datagram []byte) []byte {
	buf := bytes.Repeat([]byte{0xee}, Headroom+len(datagram)+Tailroom)
	copy(buf[Headroom:], datagram)
	return buf[:Headroom+len(datagram)]
}

func TestFrameChannelData(t *testing.T) {
	for _, tc := range []struct {
		payload string
		padded  bool
		want    []byte
	}{
		{"abcde", true, []byte{0x40, 0x10, 0, 5, 'a', 'b', 'c', 'd', 'e', 0, 0, 0}},
		{"abcde", false, []byte{0x40, 0x10, 0, 5, 'a', 'b', 'c', 'd', 'e'}},
		{"abcd", true, []byte{0x40, 0x10, 0, 4, 'a', 'b', 'c', 'd'}},
		{"", true, []byte{0x40, 0x10, 0, 0}},
	} {
		frame := peerFrame([]byte(tc.payload))
		out := FrameChannelData(frame, 0x4010, tc.padded)
		if !bytes.Equal(out, tc.want) {
			t.Errorf("FrameChannelData(%q, padded %v) = %x; want %x", tc.payload, tc.padded, out, tc.want)
			continue
		}
		if &out[0] != &frame[Headroom-ChannelHeaderSize] {
			t.Errorf("FrameChannelData(%q) did not frame in place", tc.payload)
		}
		channel, payload, ok := ChannelData(out)
		if !ok || channel != 0x4010 || string(payload) != tc.payload {
			t.Errorf("ChannelData(FrameChannelData(%q)) = %#x, %q, %v", tc.payload, channel, payload, ok)
		}
		if size, err := StreamFrameSize(out); tc.padded && (err != nil || size != len(out)) {
			t.Errorf("StreamFrameSize of a padded frame of %d bytes = %d, %v", len(out), size, err)
		}
	}
}

func TestFrameChannelDataRefuses(t *testing.T) {
	noTail := make([]byte, Headroom+5)
	huge := make([]byte, Headroom+math.MaxUint16+1, Headroom+math.MaxUint16+1+Tailroom)
	for name, call := range map[string]func() []byte{
		"shorter than Headroom": func() []byte { return FrameChannelData(make([]byte, Headroom-1, Headroom+8), 0x4000, false) },
		"no tailroom to pad":    func() []byte { return FrameChannelData(noTail, 0x4000, true) },
		"too long":              func() []byte { return FrameChannelData(huge, 0x4000, false) },
		"channel below":         func() []byte { return FrameChannelData(peerFrame([]byte("x")), 0x3fff, false) },
		"channel above":         func() []byte { return FrameChannelData(peerFrame([]byte("x")), 0x8000, false) },
	} {
		if out := call(); out != nil {
			t.Errorf("%s: FrameChannelData = %x; want nil", name, out)
		}
	}
	if out := FrameChannelData(noTail, 0x4000, false); out == nil {
		t.Error("FrameChannelData needs tailroom when it does not pad")
	}
}

func TestChannelDataAllocs(t *testing.T) {
	b := []byte{0x40, 0x00, 0, 2, 'h', 'i', 0, 0}
	frame := peerFrame([]byte("abcde"))
	if n := testing.AllocsPerRun(100, func() {
		ChannelData(b)
		_, _ = StreamFrameSize(b)
		_, _ = StreamFrameSize([]byte{0x80, 0, 0, 0})
		FrameChannelData(frame, 0x4000, true)
	}); n != 0 {
		t.Errorf("ChannelData, StreamFrameSize and FrameChannelData allocate %v times", n)
	}
}
