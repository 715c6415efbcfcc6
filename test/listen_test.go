package test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v4/reuseport"
)

// TestAddressFamilies: every listening address listens on its own family only: "0.0.0.0"
// is IPv4 alone (an IPv4-only firewall covers it) and "[::]" IPv6 alone, for HTTP endpoints
// as for TURN listeners, two of which share a port.
func TestAddressFamilies(t *testing.T) {
	s, _ := sfuSetup(t)
	turn := freePort(t, "0.0.0.0")
	s.listeners = nil
	for _, proto := range []string{"udp", "tcp"} {
		for _, ip := range []string{"0.0.0.0", "::"} {
			s.listeners = append(s.listeners, listenSpec{proto: proto, addr: addrString(ip, turn)})
		}
	}
	s.metricsAddr = addrString("0.0.0.0", freePort(t, "0.0.0.0"))
	s.sfuAddr = addrString("0.0.0.0", freePort(t, "0.0.0.0"))
	s.adminAddr = addrString("::", freePort(t, "::"))
	s.adminToken = "admin-token-0123456789"
	startFerry(t, s.toml())
	for _, c := range []struct {
		endpoint, addr, path, token string
		want                        bool
	}{
		{"metrics on 0.0.0.0", s.metricsAddr, "/healthz", "", true},
		{"SFU on 0.0.0.0", s.sfuAddr, "/", "", true},
		{"admin on [::]", s.adminAddr, "/v1/sessions", s.adminToken, true},
	} {
		ap := netip.MustParseAddrPort(c.addr)
		port := int(ap.Port())
		v4, v6 := answersHTTP(addrString("127.0.0.1", port), c.path, c.token), answersHTTP(addrString("::1", port), c.path, c.token)
		if ipv4 := ap.Addr().Is4(); v4 != ipv4 || v6 == ipv4 {
			t.Errorf("%s: answers on 127.0.0.1 %v, on [::1] %v; want only the address's own family", c.endpoint, v4, v6)
		}
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, ip := range []string{"127.0.0.1", "::1"} {
			if m := dialRaw(t, network, addrString(ip, turn), "", "").roundTrip(stun.BindingRequest); m.Type != stun.BindingSuccess {
				t.Errorf("Binding over %s to %s: %s", network, addrString(ip, turn), m.Type)
			}
		}
	}
}

// answersHTTP reports whether a GET of path at addr is answered 200.
func answersHTTP(addr, path, token string) bool {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return false
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestListenerPortHeld: Ferry refuses to start on a listener address another process
// holds, even one that shares it with SO_REUSEPORT as Ferry's own UDP listeners do (the
// kernel would split the clients between the two), with one line naming the key.
func TestListenerPortHeld(t *testing.T) {
	s, port := newSetup(t, 4)
	s.listeners = []listenSpec{{proto: "udp", addr: addrString("127.0.0.1", port)}}
	s.metricsAddr, s.adminAddr = "", "" // the listener is all the two instances share
	f := startFerry(t, s.toml())
	wantRefused(t, filepath.Join(f.dir, "ferry.toml"), "a second ferry serve on the same config")

	holder, err := (&net.ListenConfig{Control: reuseport.Control}).ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	s.listeners = []listenSpec{{proto: "udp", addr: holder.LocalAddr().String()}}
	path := filepath.Join(t.TempDir(), "ferry.toml")
	writeConfig(t, path, s.toml())
	wantRefused(t, path, "another program's SO_REUSEPORT socket on the port")
}

// wantRefused runs ferry serve on the config at path, which has one listener, and wants
// exit status 1 with one line naming its addr key and the port in use.
func wantRefused(t *testing.T, path, what string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	config := string(data)
	line := 1 + strings.Count(config[:strings.Index(config, "\naddr = ")+1], "\n")
	want := fmt.Sprintf("%s:%d: listen[0].addr: udp ", path, line)
	_, stderr, err := runFerry(t, "", "serve", "--config", path)
	if exitCode(err) != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "already in use by another process") ||
		len(lines(stderr)) != 1 {
		t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line with %q ... already in use by another process",
			what, exitCode(err), stderr, want)
	}
}
