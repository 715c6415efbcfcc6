package udpbatch

import "sync/atomic"

// Counter is where a count goes (a VictoriaMetrics counter satisfies it).
type Counter interface{ Add(n int) }

// GSOStats are where a Conn counts its UDP GSO sends.
type GSOStats struct {
	Sends     Counter // GSO datagrams sent, each a run of datagrams the kernel splits
	Segments  Counter // the datagrams in those runs
	Fallbacks Counter // runs sent as separate datagrams: no GSO on the socket, or the path MTU is below their size
}

// gsoState is a Conn's GSO: on unless the kernel lacked it at the start or has refused
// GSO on the socket (off is then set for good).
type gsoState struct {
	stats GSOStats
	off   atomic.Bool
}

// The limits of one GSO send (Linux's UDP_MAX_SEGMENTS, and the largest UDP payload of
// an IPv4 datagram).
const (
	maxSegments = 64
	maxGSOBytes = 65507
)

// gsoRun returns the end of the run that starts at bufs[i] and can go as one GSO send:
// the datagrams that follow with its size, then at most one shorter, non-empty one (the
// kernel cuts a GSO datagram into pieces of the first one's size, the last one shorter),
// within the limits of one send. A run of one is a plain datagram.
func gsoRun(bufs [][]byte, i int) int {
	size := len(bufs[i])
	j, total := i+1, size
	for size > 0 && j < len(bufs) && j-i < maxSegments {
		n := len(bufs[j])
		if n == 0 || n > size || total+n > maxGSOBytes {
			break
		}
		total += n
		j++
		if n < size {
			break
		}
	}
	return j
}
