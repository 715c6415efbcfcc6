package test

// worldHostIP is the address a namespace world gives its root namespace (on a veth pair of
// its own) to play the machine's network address: what the zero-config start detects and
// advertises, and where the self-test sends its datagrams.
const worldHostIP = "198.51.100.1"

// addHostAddress gives the world's root namespace the address ip on a veth pair, both ends
// up; the world's end removes it.
func addHostAddress(w *netnsWorld, ip string) {
	w.t.Helper()
	w.sh("ip", "link", "add", "host0", "type", "veth", "peer", "name", "host1")
	w.sh("ip", "addr", "add", ip+"/24", "dev", "host0")
	w.sh("ip", "link", "set", "host0", "up")
	w.sh("ip", "link", "set", "host1", "up")
}
