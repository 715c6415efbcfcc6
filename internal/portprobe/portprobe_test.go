package portprobe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/pion/transport/v4/reuseport"
)

// TestFree: an address held by a socket, with or without SO_REUSEPORT, is in use for UDP
// and TCP, and so is the wildcard of its family on that port; once the holder closes, the
// address is free.
func TestFree(t *testing.T) {
	reuse := net.ListenConfig{Control: reuseport.Control}
	for _, tc := range []struct {
		name, network string
		hold          func() (net.Addr, func() error, error)
	}{
		{"udp with SO_REUSEPORT", "udp", func() (net.Addr, func() error, error) {
			c, err := reuse.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
			if err != nil {
				return nil, nil, err
			}
			return c.LocalAddr(), c.Close, nil
		}},
		{"udp without", "udp", func() (net.Addr, func() error, error) {
			c, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				return nil, nil, err
			}
			return c.LocalAddr(), c.Close, nil
		}},
		{"tcp with SO_REUSEPORT", "tcp", func() (net.Addr, func() error, error) {
			ln, err := reuse.Listen(context.Background(), "tcp4", "127.0.0.1:0")
			if err != nil {
				return nil, nil, err
			}
			return ln.Addr(), ln.Close, nil
		}},
	} {
		addr, release, err := tc.hold()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ap := netip.MustParseAddrPort(addr.String())
		var inUse *InUseError
		if err := Free(tc.network, ap); !errors.As(err, &inUse) || inUse.Addr != ap {
			t.Errorf("%s: Free(%s) = %v, want an InUseError", tc.name, ap, err)
		}
		wildcard := netip.AddrPortFrom(netip.IPv4Unspecified(), ap.Port())
		if err := Free(tc.network, wildcard); !errors.As(err, &inUse) {
			t.Errorf("%s: Free(%s) = %v: the wildcard overlaps the holder, want an InUseError", tc.name, wildcard, err)
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
		if err := Free(tc.network, ap); err != nil {
			t.Errorf("%s: Free(%s) after the holder closed = %v, want nil", tc.name, ap, err)
		}
	}
}

// TestFreeOtherError: an error other than EADDRINUSE is passed on as it is.
func TestFreeOtherError(t *testing.T) {
	// TEST-NET-3: on no interface here, so the bind fails with EADDRNOTAVAIL.
	addr := netip.MustParseAddrPort("203.0.113.254:3478")
	if nonlocal, _ := os.ReadFile("/proc/sys/net/ipv4/ip_nonlocal_bind"); strings.TrimSpace(string(nonlocal)) == "1" {
		t.Skip("net.ipv4.ip_nonlocal_bind is on: any address can be bound")
	}
	err := Free("udp", addr)
	var inUse *InUseError
	if !errors.Is(err, syscall.EADDRNOTAVAIL) || errors.As(err, &inUse) {
		t.Errorf("Free(%s) = %v, want EADDRNOTAVAIL and no InUseError", addr, err)
	}
}
