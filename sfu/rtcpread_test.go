package sfu

import (
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// testReader is a subscriber of one video track (SSRC 1234 toward it; the publisher's layer
// is SSRC 100) and its reader of that track's RTCP; plis lists the publisher's keyframe
// requests.
func testReader(t testing.TB) (*feedbackReader, *[]webrtc.SSRC) {
	t.Helper()
	tr, plis := testTrack(t, nil, "")
	d, _ := testDownTrack(t, tr, "")
	d.ssrc = 1234
	sub := &subscription{stream: &stream{meters: tr.meters}, bw: newBWE(tr.meters), downs: []*downTrack{d}}
	return &feedbackReader{sub: sub, d: d}, plis
}

// compound is what a subscriber sends about its video track: a receiver report, a keyframe
// request, transport-cc feedback, a NACK of the track and one of another, a REMB.
func compound(t testing.TB) []byte {
	t.Helper()
	raw, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1234}, {SSRC: 5678}}},
		&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 1234},
		&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 1234, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{7, 9})},
		&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 5678, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{3})},
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1_500_000, SSRCs: []uint32{1234}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(raw, tccRun(t, 5)...)
}

// TestReadRTCP: each part of a compound packet is acted on once: the keyframe request goes
// upstream, the NACK of the track queues its two packets (the other track's is left alone),
// the REMB and the transport-cc feedback are taken as estimates.
func TestReadRTCP(t *testing.T) {
	r, plis := testReader(t)
	m := r.sub.stream.meters
	if !r.handle(compound(t)) {
		t.Error("a compound packet with a REMB and transport-cc feedback did not count as an estimate")
	}
	if len(*plis) != 1 || (*plis)[0] != 100 {
		t.Errorf("keyframe requests upstream %v, want one for SSRC 100", *plis)
	}
	if n := len(r.d.queue); n != 2 || m.nacks.Get() != 1 {
		t.Errorf("%d resends queued after %d NACKs counted, want 2 after 1", n, m.nacks.Get())
	}
	if r.sub.bw.remb.Load() != 1_500_000 {
		t.Errorf("REMB %d, want 1500000", r.sub.bw.remb.Load())
	}
	if tcc, remb := m.feedback[feedbackTCC].Get(), m.feedback[feedbackREMB].Get(); tcc != 1 || remb != 1 {
		t.Errorf("feedback counted: transport-cc %d, REMB %d; want 1 each", tcc, remb)
	}
	if n := m.rtcpMalformed.Get(); n != 0 {
		t.Errorf("%d packets counted as malformed", n)
	}
}

// TestReadRTCPMalformed: a compound packet cut anywhere, with a bad version, or with a
// feedback packet too short for its kind, panics nothing: the part that cannot be read is
// counted once and dropped with what follows it, the parts before it are acted on.
func TestReadRTCPMalformed(t *testing.T) {
	full := compound(t)
	for n := 1; n < len(full); n++ {
		r, _ := testReader(t)
		r.handle(full[:n])
		boundary := true
		for b := full[:n]; len(b) > 0; {
			var h rtcp.Header
			_ = h.Unmarshal(b)
			size := 4 * (int(h.Length) + 1)
			if size > len(b) {
				boundary = false
				break
			}
			b = b[size:]
		}
		want := uint64(1)
		if boundary {
			want = 0
		}
		if got := r.sub.stream.meters.rtcpMalformed.Get(); got != want {
			t.Errorf("the first %d of %d bytes: %d counted as malformed, want %d", n, len(full), got, want)
		}
	}
	for name, p := range map[string][]byte{
		"version 1":     {0x41, 201, 0, 0},
		"short PLI":     {0x81, 206, 0, 1, 0, 0, 0, 1},
		"short NACK":    {0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0x04, 0xd2},
		"REMB no magic": {0x8f, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 'X', 'X', 'X', 'X', 0, 0, 0, 0},
		"short TWCC":    {0x8f, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0x04, 0xd2},
	} {
		r, plis := testReader(t)
		r.handle(p)
		if got := r.sub.stream.meters.rtcpMalformed.Get(); got != 1 || len(*plis) != 0 || len(r.d.queue) != 0 {
			t.Errorf("%s: %d counted as malformed, %d keyframe requests, %d resends; want 1, 0, 0", name, got, len(*plis), len(r.d.queue))
		}
	}
}

// TestREMBOnce: a REMB that lists both of a subscriber's tracks reaches both readers (pion
// hands it to the reader of each SSRC it lists); only one acts on it: the reader of the
// subscriber's first track it lists, whatever order it lists them in.
func TestREMBOnce(t *testing.T) {
	r, _ := testReader(t)
	d2, _ := testDownTrack(t, r.d.track, "")
	d2.ssrc = 5678
	r.sub.downs = append(r.sub.downs, d2)
	r2 := &feedbackReader{sub: r.sub, d: d2}
	raw, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 900_000,
		SSRCs: []uint32{5678, 1234}}})
	if err != nil {
		t.Fatal(err)
	}
	est1, est2 := r.handle(raw), r2.handle(raw)
	if n := r.sub.stream.meters.feedback[feedbackREMB].Get(); n != 1 || !est1 || est2 {
		t.Errorf("REMB acted on %d times (estimate by reader 1: %v, 2: %v), want once, by reader 1", n, est1, est2)
	}
}

// replay is an RTCP source that hands over p n times, calling each (if not nil) before
// each time, then ends.
type replay struct {
	p    []byte
	n    int
	each func(p []byte)
}

func (s *replay) Read(b []byte) (int, interceptor.Attributes, error) {
	if s.n == 0 {
		return 0, nil, io.EOF
	}
	s.n--
	if s.each != nil {
		s.each(s.p)
	}
	return copy(b, s.p), nil, nil
}

// BenchmarkReadRTCP is a subscriber's RTCP read path per packet, from the raw packet to its
// effect (the estimate adjusted): transport-cc feedback for 25 packets just sent (what a
// 2 Mbit/s video track sends in the ~100 ms between two), or a receiver report.
func BenchmarkReadRTCP(b *testing.B) {
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1234}}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"twcc", "rr"} {
		b.Run(name, func(b *testing.B) {
			r, _ := testReader(b)
			src := &replay{p: rr, n: b.N}
			if name == "twcc" {
				src.p = tccRun(b, 25)
				src.each = func(p []byte) { sendAndReport(r.sub.bw, p, 25) }
			}
			b.ReportAllocs()
			b.ResetTimer()
			r.sub.readRTCP(src, r.d)
		})
	}
}

// sendAndReport records n packets sent toward the subscriber of bw, and makes transport-cc
// feedback p report them.
func sendAndReport(bw *bwe, p []byte, n int) {
	now := time.Now()
	first := bw.hist.record(1200, now, false)
	for range n - 1 {
		bw.hist.record(1200, now, false)
	}
	binary.BigEndian.PutUint16(p[12:], first)
}
