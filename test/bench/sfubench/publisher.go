package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The synthetic stream: VP8 at 30 frames a second with a keyframe every 2 seconds (and
// whenever the SFU asks with a PLI), three times the size of an interframe, in packets
// of up to 1100 bytes of payload; Opus in 20 ms frames of 160 bytes (64 kbit/s).
const (
	fps           = 30
	keyframeEvery = 2 * time.Second
	keyframeScale = 3
	maxPayload    = 1100
	opusFrame     = 20 * time.Millisecond
	opusBytes     = 160
	// stampSize is the send time at the end of every payload, nanoseconds on the
	// benchmark's monotonic clock (since epoch).
	stampSize = 8
)

// epoch is the origin of the send times in the payloads: publisher and subscribers live in
// this process, so they share the clock.
var epoch = time.Now()

func clock() int64 { return int64(time.Since(epoch)) }

// publisher sends the synthetic VP8 and Opus stream.
type publisher struct {
	pc           *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP
	keyframe     atomic.Bool // the SFU asked for one
	// Packets sent while measuring, by track.
	videoSent, audioSent atomic.Int64
}

// publish connects a publisher to room over WHIP.
func publish(ctx context.Context, api *webrtc.API, sfuURL, room string) (*publisher, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	p := &publisher{pc: pc}
	if err := p.addTracks(); err != nil {
		_ = pc.Close()
		return nil, err
	}
	bearer, err := token(room, true)
	if err == nil {
		_, err = exchange(ctx, pc, sfuURL+"/whip/"+room, bearer)
	}
	if err == nil {
		err = waitConnected(ctx, pc)
	}
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("publisher: %w", err)
	}
	return p, nil
}

func (p *publisher) addTracks() error {
	var err error
	p.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "bench")
	if err != nil {
		return fmt.Errorf("video track: %w", err)
	}
	p.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "bench")
	if err != nil {
		return fmt.Errorf("audio track: %w", err)
	}
	sender, err := p.pc.AddTrack(p.video)
	if err != nil {
		return fmt.Errorf("video track: %w", err)
	}
	go p.readRTCP(sender)
	if _, err := p.pc.AddTrack(p.audio); err != nil {
		return fmt.Errorf("audio track: %w", err)
	}
	return nil
}

// readRTCP notes the SFU's keyframe requests.
func (p *publisher) readRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.keyframe.Store(true)
			}
		}
	}
}

// run sends the stream at bitrate (bits per second, video) until ctx ends.
func (p *publisher) run(ctx context.Context, bitrate int) {
	go p.sendAudio(ctx)
	p.sendVideo(ctx, bitrate)
}

func (p *publisher) sendVideo(ctx context.Context, bitrate int) {
	// Sizes that make a keyframe period average to bitrate.
	frames := int(keyframeEvery.Seconds() * fps)
	inter := bitrate / 8 * int(keyframeEvery.Seconds()) / (frames - 1 + keyframeScale)
	tick := time.NewTicker(time.Second / fps)
	defer tick.Stop()
	v := vp8Packetizer{}
	var lastKey time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		key := p.keyframe.Swap(false) || time.Since(lastKey) >= keyframeEvery
		size := inter
		if key {
			size, lastKey = inter*keyframeScale, time.Now()
		}
		if sent := v.frame(p.video, size, key); measuring.Load() {
			p.videoSent.Add(int64(sent))
		}
	}
}

func (p *publisher) sendAudio(ctx context.Context) {
	tick := time.NewTicker(opusFrame)
	defer tick.Stop()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: opusPayloadType}, Payload: make([]byte, opusBytes)}
	pkt.Payload[0] = 0xfc // TOC: CELT fullband 20 ms, one frame
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		stamp(pkt.Payload)
		_ = p.audio.WriteRTP(&pkt)
		if measuring.Load() {
			p.audioSent.Add(1)
		}
		pkt.SequenceNumber++
		pkt.Timestamp += uint32(opusFrame.Seconds() * 48000)
	}
}

// vp8Packetizer cuts synthetic VP8 frames into RTP packets.
type vp8Packetizer struct {
	pkt       rtp.Packet
	buf       [maxPayload]byte
	pictureID uint16
}

// vp8DescriptorSize is the payload descriptor browsers send (RFC 7741 section 4.2): X set,
// then I set, then a 15-bit picture ID.
const vp8DescriptorSize = 4

// frame sends one frame of size bytes: each packet has the payload descriptor, the first
// one the frame's header (whose P bit tells a keyframe, what the SFU looks at), and every
// one its send time in its last bytes. It returns the number of packets.
func (v *vp8Packetizer) frame(track *webrtc.TrackLocalStaticRTP, size int, key bool) (packets int) {
	v.pkt.Version, v.pkt.PayloadType = 2, vp8PayloadType
	for sent, first := 0, true; sent < size; first = false {
		n := min(maxPayload, size-sent+vp8DescriptorSize+stampSize)
		payload := v.buf[:n]
		clear(payload)
		payload[0] = 0x80 // X
		if first {
			payload[0] |= 0x10 // S: start of partition 0
		}
		payload[1] = 0x80 // I
		binary.BigEndian.PutUint16(payload[2:], 0x8000|v.pictureID)
		if first {
			frameHeader(payload[vp8DescriptorSize:], key)
		}
		stamp(payload)
		sent += n - vp8DescriptorSize - stampSize
		v.pkt.Payload, v.pkt.Marker = payload, sent >= size
		_ = track.WriteRTP(&v.pkt)
		v.pkt.SequenceNumber++
		packets++
	}
	v.pkt.Timestamp += 90000 / fps
	v.pictureID = (v.pictureID + 1) & 0x7fff
	return packets
}

// frameHeader writes the start of a VP8 frame (RFC 6386 section 9.1): the frame tag with
// its P bit clear for a keyframe, then for a keyframe the start code and a 640x360 size.
func frameHeader(b []byte, key bool) {
	const showFrame = 0x10
	b[0] = showFrame
	if !key {
		b[0] |= 0x01
		return
	}
	copy(b[3:], []byte{0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01})
}

// stamp writes the send time into the last bytes of payload.
func stamp(payload []byte) {
	binary.BigEndian.PutUint64(payload[len(payload)-stampSize:], uint64(clock()))
}

// waitConnected waits until pc is connected.
func waitConnected(ctx context.Context, pc *webrtc.PeerConnection) error {
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		select {
		case <-ctx.Done():
			return fmt.Errorf("not connected (%s): %w", pc.ConnectionState(), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
