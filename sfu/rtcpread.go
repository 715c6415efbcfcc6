package sfu

import (
	"errors"
	"io"
	"slices"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// rtcpSource is where a subscriber's RTCP about one track comes from: its RTPSender, whose
// Read hands over the raw packets (the subscriber's connection has no interceptor that
// reads them, see newAPI).
type rtcpSource interface {
	Read(b []byte) (int, interceptor.Attributes, error)
}

// feedbackKind is a kind of bandwidth feedback, for its counter.
type feedbackKind int

const (
	feedbackTCC feedbackKind = iota
	feedbackREMB
	feedbackKinds
)

// feedbackReader is one track's RTCP reader's state: the buffer a packet is read into and
// the NACK value it is decoded into, both reused, so that a packet allocates nothing.
type feedbackReader struct {
	sub  *subscription
	d    *downTrack
	buf  [packetSize]byte
	nack rtcp.TransportLayerNack
}

// readRTCP handles what a subscriber says about one of its tracks until the subscription
// ends: keyframe requests go upstream (paced), transport-cc feedback and REMB estimates pick
// its layers, NACKs of the track are answered from its writer's history. pion's SRTCP
// session splits a compound packet and hands each part only to the readers of the SSRCs
// it names (see TestFeedbackReachesOneReader): transport-cc feedback reaches the track its
// media SSRC names, a REMB each track it lists (handled by one, see onREMB).
func (sub *subscription) readRTCP(src rtcpSource, d *downTrack) {
	r := &feedbackReader{sub: sub, d: d}
	for {
		n, _, err := src.Read(r.buf[:])
		if errors.Is(err, io.ErrShortBuffer) { // larger than any MTU: dropped by the read
			sub.stream.meters.rtcpMalformed.Inc()
			continue
		}
		if err != nil {
			return // the subscription ended
		}
		if r.handle(r.buf[:n]) {
			sub.adjust()
		}
	}
}

// handle acts on each packet of a compound RTCP packet, decoding only the kinds Ferry acts
// on, and reports whether one brought a bandwidth estimate. A packet that cannot be read
// is counted and ends the compound packet: where the next one starts is not known.
func (r *feedbackReader) handle(b []byte) (estimated bool) {
	for len(b) > 0 {
		var h rtcp.Header
		size := 0
		if h.Unmarshal(b) == nil {
			size = 4 * (int(h.Length) + 1)
		}
		if size == 0 || size > len(b) {
			r.sub.stream.meters.rtcpMalformed.Inc()
			return estimated
		}
		est, ok := r.handleOne(h, b[:size])
		if !ok {
			r.sub.stream.meters.rtcpMalformed.Inc()
		}
		estimated = estimated || est
		b = b[size:]
	}
	return estimated
}

// feedbackHeaderLen is a feedback packet's common part (RFC 4585 section 6.1): header,
// sender SSRC, media SSRC.
const feedbackHeaderLen = 12

// handleOne acts on one packet p with header h, and reports whether it brought a bandwidth
// estimate; ok is false if p is malformed.
func (r *feedbackReader) handleOne(h rtcp.Header, p []byte) (estimated, ok bool) {
	switch {
	case h.Type == rtcp.TypePayloadSpecificFeedback && (h.Count == rtcp.FormatPLI || h.Count == rtcp.FormatFIR):
		if len(p) < feedbackHeaderLen {
			return false, false
		}
		r.d.track.keyframe(r.d.target())
	case h.Type == rtcp.TypePayloadSpecificFeedback && h.Count == rtcp.FormatREMB:
		return r.onREMB(p)
	case h.Type == rtcp.TypeTransportSpecificFeedback && h.Count == rtcp.FormatTLN:
		return false, r.onNACK(p)
	case h.Type == rtcp.TypeTransportSpecificFeedback && h.Count == rtcp.FormatTCC:
		ok := r.sub.bw.onFeedback(p) // what could be read of a malformed one is taken
		if ok {
			r.sub.stream.meters.feedback[feedbackTCC].Inc()
		}
		return true, ok
	}
	return false, true // receiver reports, SDES, BYE...: nothing Ferry acts on
}

// onNACK answers a NACK of this reader's track from its writer's history; one of another
// SSRC is left to that SSRC's reader.
func (r *feedbackReader) onNACK(p []byte) bool {
	r.nack.Nacks = r.nack.Nacks[:0] // pion's Unmarshal appends to them
	if r.nack.Unmarshal(p) != nil {
		return false
	}
	if r.nack.MediaSSRC == r.d.ssrc {
		r.sub.stream.meters.nacks.Inc()
		r.d.nacked(&r.nack)
	}
	return true
}

// onREMB takes the subscriber's REMB. It lists the SSRCs it applies to, and pion hands it
// to the reader of each: only the reader of the first of the subscriber's tracks it lists
// acts on it (any reader does if it lists none of them). pion's Unmarshal allocates the
// SSRC list anew each time; a REMB comes about once a second, and only from a subscriber
// without transport-cc.
func (r *feedbackReader) onREMB(p []byte) (estimated, ok bool) {
	var remb rtcp.ReceiverEstimatedMaximumBitrate
	if remb.Unmarshal(p) != nil {
		return false, false
	}
	for _, d := range r.sub.downs {
		if slices.Contains(remb.SSRCs, d.ssrc) {
			if d != r.d {
				return false, true // that track's reader acts on it
			}
			break
		}
	}
	r.sub.stream.meters.feedback[feedbackREMB].Inc()
	r.sub.bw.remb.Store(uint64(remb.Bitrate))
	return true, true
}
