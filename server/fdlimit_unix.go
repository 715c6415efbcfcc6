//go:build unix

package server

import "syscall"

// openFileLimit is the most descriptors the process may hold (RLIMIT_NOFILE, which Go raises
// to the hard limit at start); 0 if unknown.
func openFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 0
	}
	return int(lim.Cur)
}
