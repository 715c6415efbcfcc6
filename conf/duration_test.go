package conf

import (
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		text    string
		want    time.Duration
		wantErr string
	}{
		{"24h", 24 * time.Hour, ""},
		{"90s", 90 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"-5m", -5 * time.Minute, ""}, // parses; Validate rejects it for credential_ttl
		{"0", 0, ""},
		{"24", 0, `invalid duration "24"`},
		{"1d", 0, `invalid duration "1d"`},
		{"", 0, `invalid duration ""`},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.text))
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("UnmarshalText(%q) error = %v, want %q", tt.text, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("UnmarshalText(%q) = %v", tt.text, err)
		case d.Duration != tt.want:
			t.Errorf("UnmarshalText(%q) = %v, want %v", tt.text, d.Duration, tt.want)
		default:
			text, _ := d.MarshalText()
			var back Duration
			if err := back.UnmarshalText(text); err != nil || back != d {
				t.Errorf("MarshalText(%v) = %q, reads back as %v, %v", d, text, back, err)
			}
		}
	}
}
