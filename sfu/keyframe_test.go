package sfu

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestIsKeyframe(t *testing.T) {
	tests := []struct {
		name    string
		mime    string
		payload []byte
		want    bool
	}{
		{"VP8 keyframe, no extension", webrtc.MimeTypeVP8, []byte{0x10, 0x00}, true},
		{"VP8 interframe", webrtc.MimeTypeVP8, []byte{0x10, 0x01}, false},
		{"VP8 keyframe, 15-bit picture ID", webrtc.MimeTypeVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"VP8 keyframe, 7-bit picture ID, TL0PICIDX, TID", webrtc.MimeTypeVP8, []byte{0x90, 0xe0, 0x05, 0x01, 0x20, 0x00}, true},
		{"VP8 interframe, picture ID", webrtc.MimeTypeVP8, []byte{0x90, 0x80, 0x05, 0x01}, false},
		{"VP8 continuation packet", webrtc.MimeTypeVP8, []byte{0x00, 0x00}, false},
		{"VP8 second partition", webrtc.MimeTypeVP8, []byte{0x11, 0x00}, false},
		{"VP8 truncated", webrtc.MimeTypeVP8, []byte{0x90}, false},
		{"H264 IDR", webrtc.MimeTypeH264, []byte{0x65, 0x88}, true},
		{"H264 non-IDR slice", webrtc.MimeTypeH264, []byte{0x41, 0x9a}, false},
		{"H264 STAP-A with SPS", webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"H264 STAP-A without", webrtc.MimeTypeH264, []byte{0x78, 0x00, 0x02, 0x41, 0x42}, false},
		{"H264 FU-A start of IDR", webrtc.MimeTypeH264, []byte{0x7c, 0x85, 0x00}, true},
		{"H264 FU-A middle of IDR", webrtc.MimeTypeH264, []byte{0x7c, 0x05, 0x00}, false},
		{"H264 empty", webrtc.MimeTypeH264, nil, false},
		{"Opus: no keyframes to wait for", webrtc.MimeTypeOpus, []byte{0xfc}, true},
	}
	for _, tt := range tests {
		if got := isKeyframe(tt.mime, tt.payload); got != tt.want {
			t.Errorf("%s: isKeyframe = %v, want %v", tt.name, got, tt.want)
		}
	}
}
