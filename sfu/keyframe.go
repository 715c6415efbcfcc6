package sfu

import (
	"strings"

	"github.com/pion/webrtc/v4"
)

// isKeyframe reports whether an RTP payload of codec starts a keyframe, the only place a
// subscriber can switch to another simulcast layer without a broken picture. Codecs it
// cannot parse report true: switching at once is better than never.
func isKeyframe(mime string, payload []byte) bool {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return vp8Keyframe(payload)
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return h264Keyframe(payload)
	}
	return true
}

// vp8Keyframe reads the VP8 payload descriptor (RFC 7741 section 4.2) and the start of
// the VP8 frame: a keyframe has the P bit of its first byte clear.
func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	start, partition := p[0]&0x10 != 0, p[0]&0x07
	if !start || partition != 0 {
		return false
	}
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte follows
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	return len(p) > i && p[i]&0x01 == 0
}

// h264Keyframe looks for an IDR slice or an SPS (RFC 6184): in a single NAL unit, in a
// STAP-A aggregate, or at the start of a FU-A fragment.
func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	const (
		idr, sps     = 5, 7
		stapA, fuA   = 24, 28
		fuStartFlag  = 0x80
		nalTypeMask  = 0x1F
		stapSizeSize = 2
	)
	switch typ := p[0] & nalTypeMask; typ {
	case idr, sps:
		return true
	case stapA:
		for i := 1; i+stapSizeSize < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += stapSizeSize
			if t := p[i] & nalTypeMask; t == idr || t == sps {
				return true
			}
			i += size
		}
	case fuA:
		return len(p) > 1 && p[1]&fuStartFlag != 0 && (p[1]&nalTypeMask == idr || p[1]&nalTypeMask == sps)
	}
	return false
}

// droppable reports whether an RTP payload of codec starts a frame that no other frame
// refers to, so that a slow subscriber can lose it alone: VP8's N bit (RFC 7741 section
// 4.2), H.264's nal_ref_idc 0 (RFC 6184 section 5.3; an aggregate or fragment carries the
// highest of its units). Other codecs report false.
func droppable(mime string, payload []byte) bool {
	if len(payload) == 0 {
		return false
	}
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return payload[0]&0x20 != 0
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return payload[0]&0x60 == 0
	}
	return false
}
