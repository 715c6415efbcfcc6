//go:build !linux

package turnserver

import (
	"errors"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
)

// setDontFragment cannot set the DF bit here: DONT-FRAGMENT is then answered 420, as RFC
// 8656 section 7.2 says for a server that cannot.
func setDontFragment(*udpbatch.Conn) error {
	return errors.New("turnserver: DF bit not supported here")
}
