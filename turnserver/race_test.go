//go:build race

package turnserver

// raceEnabled: the race detector makes sync.Pool drop items at random, so counting
// allocations means nothing under it.
const raceEnabled = true
