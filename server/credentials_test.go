package server

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/relay"
)

// TestZeroConfigBannerName: the iceServers printed for a start without credentials name
// the server by server.name when it is set, and by the advertised address otherwise.
func TestZeroConfigBannerName(t *testing.T) {
	r := &relays{v4: relay.Addrs{Bind: netip.IPv4Unspecified(), Public: netip.MustParseAddr("203.0.113.10")}}
	for name, want := range map[string]string{
		"":                 `"turn:203.0.113.10:3478?transport=udp"`,
		"turn.example.com": `"turn:turn.example.com:3478?transport=udp"`,
	} {
		cfg := conf.Default()
		cfg.Server.Name = name
		var out bytes.Buffer
		if err := printZeroConfig(&out, cfg, r, "generated-secret"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), strings.Replace(want, "udp", "tcp", 1)) {
			t.Errorf("server.name %q: the banner\n%s\nlacks %s and its tcp twin", name, out.String(), want)
		}
	}
}
