package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

// measuring is set during the measured window: subscribers count what arrives then.
var measuring atomic.Bool

// subscriber is one WHEP client receiving the stream's video and audio.
type subscriber struct {
	pc    *webrtc.PeerConnection
	video trackStats
	audio trackStats
	ready chan struct{} // closed at the first video packet
	once  sync.Once
	relay bool // relayed through Ferry's TURN
}

// subscribe connects a subscriber to room over WHEP; relayVia makes it relay-only through
// those ICE servers. It returns once the first video packet has arrived.
func subscribe(ctx context.Context, api *webrtc.API, sfuURL, room string, relayVia []webrtc.ICEServer) (*subscriber, error) {
	cfg := webrtc.Configuration{}
	if relayVia != nil {
		cfg.ICEServers, cfg.ICETransportPolicy = relayVia, webrtc.ICETransportPolicyRelay
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	s := &subscriber{pc: pc, ready: make(chan struct{}), relay: relayVia != nil}
	if err := s.connect(ctx, sfuURL, room); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	return s, nil
}

func (s *subscriber) connect(ctx context.Context, sfuURL, room string) error {
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := s.pc.AddTransceiverFromKind(kind,
			webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return fmt.Errorf("%s transceiver: %w", kind, err)
		}
	}
	s.pc.OnTrack(s.onTrack)
	bearer, err := token(room, false)
	if err != nil {
		return err
	}
	if _, err := exchange(ctx, s.pc, sfuURL+"/whep/"+room, bearer); err != nil {
		return err
	}
	select {
	case <-s.ready:
	case <-ctx.Done():
		return fmt.Errorf("no video (%s): %w", s.pc.ConnectionState(), ctx.Err())
	}
	return s.checkPath()
}

// checkPath makes sure the subscriber's media takes the path its mode says: a relayed one
// through a relay candidate, a direct one through a host candidate.
func (s *subscriber) checkPath() error {
	typ, err := selectedType(s.pc)
	if err != nil {
		return err
	}
	want := webrtc.ICECandidateTypeHost
	if s.relay {
		want = webrtc.ICECandidateTypeRelay
	}
	if typ != want {
		return fmt.Errorf("the selected candidate is %s, want %s", typ, want)
	}
	return nil
}

// onTrack reads one track: without pion's packet parsing (the sequence number and the send
// time are at fixed places), so that the benchmark's share of the CPUs stays small.
func (s *subscriber) onTrack(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	stats := &s.audio
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		stats = &s.video
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			return
		}
		now := clock()
		end := n
		if buf[0]&0x20 != 0 { // P: the last byte counts the padding
			end -= int(buf[n-1])
		}
		const headerSize = 12
		if end < headerSize+stampSize {
			continue
		}
		if stats == &s.video {
			s.once.Do(func() { close(s.ready) })
		}
		if measuring.Load() {
			sent := int64(binary.BigEndian.Uint64(buf[end-stampSize : end]))
			stats.add(binary.BigEndian.Uint16(buf[2:4]), now-sent)
		}
	}
}

// trackStats is what one subscriber received of one track during the measured window.
type trackStats struct {
	mu        sync.Mutex
	started   bool
	first     int64    // extended sequence number of the first packet
	highest   int64    // highest extended sequence number
	seen      []uint64 // bit i: first+i arrived
	received  int      // distinct packets
	latencies []int64  // send to receive, nanoseconds
}

// add records a packet with sequence number seq that took latency to arrive.
func (t *trackStats) add(seq uint16, latency int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started {
		t.started, t.first, t.highest = true, int64(seq), int64(seq)
	}
	ext := t.highest + int64(int16(seq-uint16(t.highest)))
	t.highest = max(t.highest, ext)
	t.latencies = append(t.latencies, latency)
	i := ext - t.first
	if i < 0 { // reordered before the window's first packet
		return
	}
	for int64(len(t.seen))*64 <= i {
		t.seen = append(t.seen, 0)
	}
	if word, bit := i/64, uint64(1)<<(i%64); t.seen[word]&bit == 0 {
		t.seen[word] |= bit
		t.received++
	}
}

// trackSummary is what a track received in the window.
type trackSummary struct {
	expected, lost, received int
	latencies                []int64
}

// summary sums the track up. Packets expected are the span of sequence numbers that
// arrived; a track that got nothing lost what the publisher sent in the window: sent.
func (t *trackStats) summary(sent int) trackSummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started {
		return trackSummary{expected: sent, lost: sent}
	}
	expected := int(t.highest - t.first + 1)
	return trackSummary{expected: expected, lost: expected - t.received, received: t.received, latencies: t.latencies}
}
