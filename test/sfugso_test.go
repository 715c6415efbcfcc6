package test

import (
	"encoding/binary"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestSFUGSO: a publisher sends each video frame as a burst (six 1000-byte packets and a
// 400-byte last one, 30 frames a second) and a subscriber (pion) watches directly: the
// SFU's ICE socket sends bursts as UDP GSO datagrams (ferry_sfu_gso_segments_total grows,
// no fallbacks), and the subscriber, which decrypts and authenticates each SRTP packet on
// its own, gets every packet in order with the payload sent.
func TestSFUGSO(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	p := newPublisher(t, peerOptions{}, "")
	pubSess, status := signal(t, p.pc, "http://"+s.sfuAddr+"/whip/gso", accessToken(t, "gso", true, false, time.Hour))
	if status != http.StatusCreated {
		t.Fatalf("WHIP publish: %d", status)
	}
	waitConnected(t, p.pc)
	sendFrames(t, p)

	sub, got := newSubscriber(t, peerOptions{})
	if _, status := signal(t, sub, "http://"+s.sfuAddr+"/whep/gso/"+streamID(pubSess),
		accessToken(t, "gso", false, true, time.Hour)); status != http.StatusCreated {
		t.Fatalf("WHEP subscribe: %d", status)
	}
	waitConnected(t, sub)
	deadline := time.Now().Add(15 * time.Second)
	for m := scrape(t, s.metricsAddr); m["ferry_sfu_gso_segments_total"] < 100; m = scrape(t, s.metricsAddr) {
		if time.Now().After(deadline) {
			t.Fatalf("GSO segments %v, sends %v, fallbacks %v: the bursts did not go as GSO", m["ferry_sfu_gso_segments_total"],
				m["ferry_sfu_gso_sends_total"], m["ferry_sfu_gso_fallbacks_total"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	got.waitFor(t, "700 packets", func(_ []string, counter []uint32, _ []uint16) bool { return len(counter) >= 700 })
	got.mu.Lock()
	for i := 1; i < len(got.counter); i++ {
		if got.counter[i] != got.counter[i-1]+1 || got.seqs[i] != got.seqs[i-1]+1 {
			got.mu.Unlock()
			t.Fatalf("packet %d: counter %d after %d, seq %d after %d: a packet was lost, changed or reordered",
				i, got.counter[i], got.counter[i-1], got.seqs[i], got.seqs[i-1])
		}
	}
	got.mu.Unlock()
	if m := scrape(t, s.metricsAddr); m["ferry_sfu_gso_fallbacks_total"] != 0 || m["ferry_sfu_write_errors_total"] != 0 {
		t.Fatalf("GSO fallbacks %v, write errors %v; want none", m["ferry_sfu_gso_fallbacks_total"], m["ferry_sfu_write_errors_total"])
	}
}

// sendFrames makes p send a VP8 frame of 7 packets every 33 ms until the test ends: the
// first packet of a keyframe (the first, one a PLI asked for, and every 60th) starts with
// a keyframe's descriptor; every payload carries the layer "" and its packet's counter, as
// receive reads them.
func sendFrames(t *testing.T, p *publisher) {
	track := p.layers[0]
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		var seq uint16
		for frame := uint32(0); ; frame++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p.mu.Lock()
			key := p.want[""] || frame%60 == 0
			p.want[""] = false
			p.mu.Unlock()
			for i := range 7 {
				payload := vp8Payload(key, "", uint32(seq))
				if i > 0 {
					payload[0] = 0 // a partition starts in the first packet only
				}
				size := 1000
				if i == 6 {
					size = 400
				}
				payload = append(payload, make([]byte, size-len(payload))...)
				binary.BigEndian.PutUint32(payload[len(payload)-4:], frame)
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: frame * 3000, Marker: i == 6},
					Payload: payload}
				_ = track.WriteRTP(pkt)
				seq++
			}
		}
	}()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(stop); <-done }) })
}
