package auth

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/pion/turn/v5"
)

func TestHA1(t *testing.T) {
	tests := []struct {
		name, realm, password string
		want                  string // independently computed: printf 'n:r:p' | md5sum
	}{
		{"user", "realm", "pass", "8493fbc53ba582fb4c044c456bdc40eb"},
		{"alice", "ferry.local", "s3cret", "cdfa8bf402235b5ee9db09dd66b18d8c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HA1(tt.name, tt.realm, tt.password)
			if hex.EncodeToString(got) != tt.want {
				t.Errorf("HA1 = %x, want %s", got, tt.want)
			}
			if pion := turn.GenerateAuthKey(tt.name, tt.realm, tt.password); !bytes.Equal(got, pion) {
				t.Errorf("HA1 = %x, turn.GenerateAuthKey = %x", got, pion)
			}
		})
	}
}
