//go:build linux

package turnserver

import (
	"testing"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// TestAllocateDontFragment: on Linux DONT-FRAGMENT is accepted (RFC 8656 section 7.2, step
// 4) and the relay socket sends with the DF bit (path MTU discovery "do"); a relay
// allocated without it does not.
func TestAllocateDontFragment(t *testing.T) {
	s := newTestServer(t, 27050, 27054)
	df := newClient(t, s, "udp")
	df.allocate(t, testkit.Attr(stun.AttrDontFragment, nil))
	plain := newClient(t, s, "udp")
	plain.allocate(t)
	if got := pmtuDiscover(t, df.alloc(s)); got != unix.IP_PMTUDISC_DO {
		t.Fatalf("relay of a DONT-FRAGMENT allocation has IP_MTU_DISCOVER %d, want %d (do)", got, unix.IP_PMTUDISC_DO)
	}
	if got := pmtuDiscover(t, plain.alloc(s)); got == unix.IP_PMTUDISC_DO {
		t.Fatal("relay of a plain allocation sets the DF bit")
	}
}

// pmtuDiscover reads IP_MTU_DISCOVER of the allocation's IPv4 relay socket.
func pmtuDiscover(t *testing.T, a *allocation) int {
	t.Helper()
	rc, err := a.relays[0].conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER) }); err != nil || serr != nil {
		t.Fatalf("getsockopt: %v %v", err, serr)
	}
	return v
}
