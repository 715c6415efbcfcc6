package test

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
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
