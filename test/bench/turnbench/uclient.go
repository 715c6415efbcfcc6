package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-rtc/ferry/test/bench/benchproc"
)

// uclientLoads are coturn's own load client's runs: 100 clients, 3000 messages each, sent
// without pause (-z 0). Each runs on two paths: from client to client through the server
// (uclientPart) and to an external echo peer and back (peerPart).
var uclientLoads = []struct{ name, flags string }{
	{"channeldata-200B", "-m 100 -n 3000 -l 200 -z 0"},
	{"channeldata-1000B", "-m 100 -n 3000 -l 1000 -z 0"},
	{"send-ind-200B", "-m 100 -n 3000 -l 200 -z 0 -s"}, // Send and Data indications
	{"tcp-200B", "-m 100 -n 3000 -l 200 -z 0 -t"},      // TCP between client and server
}

// uclientArgs completes a scenario's flags with the credentials and the server; uclient
// learns the realm from the server's 401.
func uclientArgs(flags, port string) []string {
	return append(strings.Fields(flags), "-u", benchUser, "-w", benchPass, "-p", port, host)
}

// uclientMetrics are the metrics of both relaying parts; the peer part adds its peer's.
func uclientMetrics() []metric {
	return []metric{
		{"msgs sent", 0}, {"msgs recv", 0}, {"loss %", 2}, {"UDP drops", 0}, {"server drops", 0},
		{"wall s", 1}, {"server CPU s", 2}, {"CPU µs/msg", 2}, {"peak RSS MiB", 1},
	}
}

// uclientNote describes what both relaying parts measure.
func uclientNote(timeout time.Duration) string {
	return fmt.Sprintf("Each run: one command, killed and counted as failed after %s. "+
		"CPU µs/msg is the server's CPU time (user+system, whole run, allocations included) "+
		"divided by the messages received back. UDP drops: datagrams the kernel dropped on full socket "+
		"receive buffers during the run (RcvbufErrors of /proc/net/snmp); server drops: those of them "+
		"on the server's sockets still open at the end (drops of /proc/net/udp), so none over TCP, "+
		"where the allocations and their relay sockets end with the client's connection.", timeout)
}

func commandNote(scenario string, args []string) string {
	return fmt.Sprintf("%s: turnutils_uclient %s", scenario, strings.Join(args, " "))
}

func uclientPart(timeout time.Duration) *part {
	p := &part{
		name:    "uclient",
		title:   "Relaying client to client: turnutils_uclient -y",
		metrics: uclientMetrics(),
		key:     "CPU µs/msg",
		notes: []string{uclientNote(timeout), "Client to client (-y): the clients are each other's peers, " +
			"each sending to another's relay address on the same server. coturn passes every message from " +
			"one relay socket to the other through the kernel's loopback; Ferry hands it from relay to relay " +
			"in process, without that round trip. Both deliver what two clients of one server get, but " +
			"Ferry does less work per message here than with any other peer: compare the TURN cores on the " +
			"peer scenarios."},
	}
	for _, l := range uclientLoads {
		flags := "-y " + l.flags
		name := l.name + "-client2client"
		p.notes = append(p.notes, commandNote(name, uclientArgs(flags, "PORT")))
		p.scenarios = append(p.scenarios, scenario{
			name: name,
			load: func(ctx context.Context, s *server) ([]float64, usage, error) {
				return uclientLoad(ctx, s, uclientArgs(flags, strconv.Itoa(s.port)), timeout)
			},
		})
	}
	return p
}

// peerFlags send uclient's messages to the echo peer on port (its RTCP sessions to port+1).
func peerFlags(port string) string { return "-e " + host + " -r " + port }

func peerPart(timeout time.Duration) *part {
	p := &part{
		name:  "peer",
		title: "Relaying to an external peer: turnutils_uclient -e and turnutils_peer",
		metrics: append(uclientMetrics(),
			metric{"peer drops", 0}, metric{"peer CPU s", 2}),
		key: "CPU µs/msg",
		notes: []string{uclientNote(timeout), "External peer (-e, -r): every client relays to turnutils_peer, " +
			"coturn's UDP echo server (one thread), started afresh for each run on 127.0.0.1 on a free pair of " +
			"ports from " + strconv.Itoa(minPeerPort) + " (PEERPORT for the RTP sessions, PEERPORT+1 for the RTCP ones). " +
			"Each message leaves through the client's relay socket, is echoed, and comes back through the same " +
			"socket: both servers do every system call of both hops, as with any peer that is not a client of " +
			"the same server, so these scenarios compare the TURN cores. With an IPv4 peer uclient asks for an " +
			"IPv4 relay (REQUESTED-ADDRESS-FAMILY) in every Allocate, as -X would; the client-to-client runs send " +
			"none and get IPv4 relays too. Peer drops: datagrams dropped on the peer's full receive buffers " +
			"(counted in UDP drops too), which count as lost messages like any other; peer CPU s: the peer's " +
			"CPU time over the run."},
	}
	for _, l := range uclientLoads {
		name := l.name + "-peer"
		p.notes = append(p.notes, commandNote(name, uclientArgs(peerFlags("PEERPORT")+" "+l.flags, "PORT")))
		p.scenarios = append(p.scenarios, scenario{
			name: name,
			load: func(ctx context.Context, s *server) ([]float64, usage, error) {
				return peerLoad(ctx, s, l.flags, timeout)
			},
		})
	}
	return p
}

// peerLoad runs uclient with flags against s, relaying to an echo peer of its own that it
// stops and waits for.
func peerLoad(ctx context.Context, s *server, flags string, timeout time.Duration) ([]float64, usage, error) {
	peer, err := startPeer(ctx, s.dir)
	if err != nil {
		return nil, usage{}, err
	}
	values, u, err := peerRun(ctx, s, peer, flags, timeout)
	if stopErr := peer.stop(); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	return values, u, err
}

// peerRun is uclientLoad through peer, with the peer's drops and CPU time.
func peerRun(ctx context.Context, s *server, peer *echoPeer, flags string, timeout time.Duration) ([]float64, usage, error) {
	cpuBefore, err := peer.cpuSeconds()
	if err != nil {
		return nil, usage{}, err
	}
	args := uclientArgs(peerFlags(strconv.Itoa(peer.port))+" "+flags, strconv.Itoa(s.port))
	values, u, err := uclientLoad(ctx, s, args, timeout)
	if err != nil {
		return nil, usage{}, err
	}
	cpuAfter, err := peer.cpuSeconds()
	if err != nil {
		return nil, usage{}, err
	}
	drops, err := peer.drops()
	if err != nil {
		return nil, usage{}, err
	}
	return append(values, drops, cpuAfter-cpuBefore), u, nil
}

func uclientLoad(ctx context.Context, s *server, args []string, timeout time.Duration) ([]float64, usage, error) {
	m, err := startMeter(s)
	if err != nil {
		return nil, usage{}, err
	}
	sent, recv, err := runUclient(ctx, args, timeout)
	if err != nil {
		return nil, usage{}, err
	}
	u, peak, err := m.stopPeak()
	if err != nil {
		return nil, usage{}, err
	}
	if sent == 0 || recv == 0 {
		return nil, usage{}, fmt.Errorf("turnutils_uclient sent %d and received %d messages", sent, recv)
	}
	// Every message sent and not received back is lost: uclient's own "lost packets".
	loss := 100 * float64(sent-recv) / float64(sent)
	return []float64{float64(sent), float64(recv), loss, u.udpDrops, u.serverDrops, u.wall, u.cpu, u.cpu / float64(recv) * 1e6, peak}, u, nil
}

// runUclient runs turnutils_uclient, killing it after timeout, and returns the totals of
// messages it sent and received.
func runUclient(ctx context.Context, args []string, timeout time.Duration) (sent, recv int, err error) {
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(runCtx, "turnutils_uclient", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return 0, 0, fmt.Errorf("turnutils_uclient interrupted: %w", ctx.Err())
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		return 0, 0, fmt.Errorf("turnutils_uclient timed out after %s and was killed:\n%s", timeout, benchproc.Tail(out.Bytes(), 5))
	case err != nil:
		return 0, 0, fmt.Errorf("turnutils_uclient: %w\n%s", err, benchproc.Tail(out.Bytes(), 5))
	}
	return parseUclient(out.Bytes())
}

// uclientTotals matches uclient's running totals; the last match is the final count,
// printed once every client has finished.
var uclientTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)

func parseUclient(out []byte) (sent, recv int, err error) {
	m := uclientTotals.FindAllSubmatch(out, -1)
	if m == nil {
		return 0, 0, fmt.Errorf("turnutils_uclient printed no totals:\n%s", benchproc.Tail(out, 5))
	}
	last := m[len(m)-1]
	if sent, err = strconv.Atoi(string(last[1])); err != nil {
		return 0, 0, fmt.Errorf("turnutils_uclient totals: %w", err)
	}
	if recv, err = strconv.Atoi(string(last[2])); err != nil {
		return 0, 0, fmt.Errorf("turnutils_uclient totals: %w", err)
	}
	return sent, recv, nil
}
