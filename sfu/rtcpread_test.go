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
		if n := r.sub.stream.meters.feedback[feedbackTCC].Get() + r.sub.stream.meters.feedback[feedbackREMB].Get(); n != 0 {
			t.Errorf("%s: counted as bandwidth feedback %d times, want 0", name, n)
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

// watch subscribes a viewer of VP8 and Opus to a live stream of both, and returns it with
// its two tracks once they have arrived.
func watch(t *testing.T) (*viewerServer, *webrtc.PeerConnection, map[webrtc.RTPCodecType]*webrtc.RTPReceiver, map[webrtc.RTPCodecType]uint32) {
	t.Helper()
	v := newViewerServer(t)
	stream := v.publish(t, nil, clientVP8, clientOpus)
	pc := viewer(t, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}, clientVP8, clientOpus)
	type arrival struct {
		remote   *webrtc.TrackRemote
		receiver *webrtc.RTPReceiver
	}
	arrived := make(chan arrival, 2)
	pc.OnTrack(func(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) { arrived <- arrival{remote, receiver} })
	if status, answer, _ := v.post(t, pc, "/whep/codecs/"+stream, nil); status != 201 {
		t.Fatalf("WHEP: %d %s", status, answer)
	}
	receivers, ssrcs := map[webrtc.RTPCodecType]*webrtc.RTPReceiver{}, map[webrtc.RTPCodecType]uint32{}
	for range 2 {
		select {
		case a := <-arrived:
			receivers[a.remote.Kind()], ssrcs[a.remote.Kind()] = a.receiver, uint32(a.remote.SSRC())
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 2 tracks arrived within 10 s", len(receivers))
		}
	}
	return v, pc, receivers, ssrcs
}

// TestSubscriberSenderReports: a subscriber gets sender reports for its audio and its video
// track (its player needs them to put the two in step), though its connection has no
// receiver-report interceptor.
func TestSubscriberSenderReports(t *testing.T) {
	_, _, receivers, ssrcs := watch(t)
	got := make(chan uint32, 16)
	for _, r := range receivers {
		go func() {
			for {
				pkts, _, err := r.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if sr, ok := p.(*rtcp.SenderReport); ok {
						got <- sr.SSRC
					}
				}
			}
		}()
	}
	seen := map[uint32]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < 2 {
		select {
		case ssrc := <-got:
			if ssrc == ssrcs[webrtc.RTPCodecTypeVideo] || ssrc == ssrcs[webrtc.RTPCodecTypeAudio] {
				seen[ssrc] = true
			}
		case <-deadline:
			t.Fatalf("sender reports within 10 s for %v, want both of %v", seen, ssrcs)
		}
	}
}

// TestFeedbackReachesOneReader: of one compound packet naming both of a subscriber's tracks
// (a receiver report of both, transport-cc feedback naming the video, a REMB listing both),
// the transport-cc feedback and the REMB are each acted on once, though the subscriber's
// two tracks each have a reader: pion's SRTCP session hands each part only to the readers of
// the SSRCs it names. A NACK of each track, sent after, shows both readers are past it.
func TestFeedbackReachesOneReader(t *testing.T) {
	v, pc, _, ssrcs := watch(t)
	video, audio := ssrcs[webrtc.RTPCodecTypeVideo], ssrcs[webrtc.RTPCodecTypeAudio]
	fb := &rtcp.TransportLayerCC{}
	if err := fb.Unmarshal(tccRun(t, 5)); err != nil {
		t.Fatal(err)
	}
	fb.MediaSSRC = video
	err := pc.WriteRTCP([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: video}, {SSRC: audio}}},
		fb,
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 800_000, SSRCs: []uint32{video, audio}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: video, Nacks: []rtcp.NackPair{{PacketID: 1}}},
		&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: audio, Nacks: []rtcp.NackPair{{PacketID: 1}}}}); err != nil {
		t.Fatal(err)
	}
	m := v.sfu.meters
	waitFor(t, "both NACKs", func() bool { return m.nacks.Get() == 2 })
	if tcc, remb := m.feedback[feedbackTCC].Get(), m.feedback[feedbackREMB].Get(); tcc != 1 || remb != 1 {
		t.Errorf("transport-cc feedback acted on %d times, REMB %d times; want once each", tcc, remb)
	}
}
