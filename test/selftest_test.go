package test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

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

// TestSelfTestPublicIP: the start-up self-test sends datagrams to the addresses Ferry hands
// out, as a remote client would, so a wrong relay.public_ip shows at start, quickly: one on
// no interface (nothing answers there) and one this host cannot send to (a blackhole route
// in the test's own namespace world) are reported, naming the listener and the SFU, within
// the probes' few seconds, and so is a firewall that drops the listener's port; the right
// one passes. The relayed publish alone passed with all of them, since the relay reaches
// the SFU in process.
func TestSelfTestPublicIP(t *testing.T) {
	if !netnsReexec(t) {
		return
	}
	w := newNetnsWorld(t)
	addHostAddress(w, worldHostIP)
	w.sh("ip", "route", "add", "blackhole", "203.0.113.77/32")
	w.sh("nft", "add table inet fw")
	w.sh("nft", "add chain inet fw in { type filter hook input priority 0 ; }")
	for _, c := range []struct {
		publicIP string
		firewall bool     // drop datagrams to the listener at the advertised address
		want     []string // in the self-test's log line; %d is the listener's port
	}{
		{worldHostIP, false, []string{`msg="self-test passed`, `listen[0] (udp) at 198.51.100.1:%d`, `the SFU's ICE address at 198.51.100.1:`}},
		{worldHostIP, true, []string{`level=WARN msg="self-test failed`, `err="listen[0] (udp) at 198.51.100.1:%d: no answer within 2s"`,
			`reached="the SFU's ICE address at 198.51.100.1:`}},
		{"198.51.100.9", false, []string{`level=WARN msg="self-test failed`, `listen[0] (udp) at 198.51.100.9:%d: no answer within 2s`,
			`the SFU's ICE address at 198.51.100.9:`, `198.51.100.9 is on no interface of this host`}},
		{"203.0.113.77", false, []string{`level=WARN msg="self-test failed`, `listen[0] (udp) at 203.0.113.77:%d: this host cannot send there`,
			`the SFU's ICE address at 203.0.113.77:`}},
	} {
		s, port := sfuSetup(t)
		s.listeners = []listenSpec{{proto: "udp", addr: addrString("0.0.0.0", port)}}
		s.bindIP, s.publicIP, s.sfuSelfTest = "0.0.0.0", c.publicIP, true
		if c.firewall {
			w.sh("nft", fmt.Sprintf("add rule inet fw in ip daddr %s udp dport %d drop", c.publicIP, port))
		}
		f := startFerry(t, s.toml())
		f.waitLog(t, `msg="self-test `, 1) // waitLog gives up after 5 s: the probes take at most 2
		line := selfTestLine(f.stderr.String())
		for _, want := range c.want {
			if want = strings.ReplaceAll(want, "%d", strconv.Itoa(port)); !strings.Contains(line, want) {
				t.Errorf("public_ip %s: the self-test logged\n%s\nwithout %q", c.publicIP, line, want)
			}
		}
		f.stop()
	}
}

// selfTestLine is the line of the log that tells the self-test's outcome.
func selfTestLine(log string) string {
	for _, line := range lines(log) {
		if strings.Contains(line, `msg="self-test `) {
			return line
		}
	}
	return ""
}
