//go:build !unix

package server

// openFileLimit is unknown here: tcp_connections_total 0 then means no limit.
func openFileLimit() int { return 0 }
