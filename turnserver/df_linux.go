//go:build linux

package turnserver

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
)

// setDontFragment makes the relay send its datagrams with the DF bit set (RFC 8656
// DONT-FRAGMENT): IPv4 path MTU discovery "do", or its IPv6 counterpart.
func setDontFragment(c *udpbatch.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		if serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
		}
	})
	if err := errors.Join(err, serr); err != nil {
		return fmt.Errorf("turnserver: DF bit: %w", err)
	}
	return nil
}
