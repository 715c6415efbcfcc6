//go:build !unix

package procs

import "time"

// CPUTime cannot be read without getrusage: it reports false, and the controller keeps every P.
func CPUTime() (time.Duration, bool) { return 0, false }
