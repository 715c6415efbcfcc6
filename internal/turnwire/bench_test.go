package turnwire

import (
	"testing"

	"github.com/pion/stun/v4"
)

// The data-path functions, per packet; each must report 0 allocs/op.

func BenchmarkChannelData(b *testing.B) {
	msg := FrameChannelData(peerFrame(make([]byte, 1200)), 0x4000, false)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := ChannelData(msg); !ok {
			b.Fatal("not ChannelData")
		}
	}
}

func BenchmarkParseSend(b *testing.B) {
	for name, msg := range map[string][]byte{
		"IPv4":             buildSend(b, pionPeer(peer4), dataAttr(string(make([]byte, 1200)))),
		"IPv6+FINGERPRINT": buildSend(b, pionPeer(peer6), dataAttr(string(make([]byte, 1200))), stun.Fingerprint),
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := ParseSend(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFrameChannelData(b *testing.B) {
	frame := peerFrame(make([]byte, 1201))
	b.SetBytes(int64(len(frame) - Headroom))
	b.ReportAllocs()
	for b.Loop() {
		if FrameChannelData(frame, 0x4000, true) == nil {
			b.Fatal("no frame")
		}
	}
}

func BenchmarkFrameDataIndication(b *testing.B) {
	frame := peerFrame(make([]byte, 1201))
	b.SetBytes(int64(len(frame) - Headroom))
	b.ReportAllocs()
	for b.Loop() {
		if FrameDataIndication(frame, peer6) == nil {
			b.Fatal("no frame")
		}
	}
}

func BenchmarkXORAddress(b *testing.B) {
	v := unhex(b, "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := XORAddress(v, rfc5769TxID); err != nil {
			b.Fatal(err)
		}
	}
}
