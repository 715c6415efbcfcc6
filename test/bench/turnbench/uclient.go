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

// uclientScenarios are coturn's own load client's runs: 100 clients relaying to each other
// through the server (-y), 3000 messages each, sent without pause (-z 0).
var uclientScenarios = []struct{ name, flags string }{
	{"channeldata-200B", "-y -m 100 -n 3000 -l 200 -z 0"},
	{"channeldata-1000B", "-y -m 100 -n 3000 -l 1000 -z 0"},
	{"send-ind-200B", "-y -m 100 -n 3000 -l 200 -z 0 -s"}, // Send and Data indications
	{"tcp-200B", "-y -m 100 -n 3000 -l 200 -z 0 -t"},      // TCP between client and server
}

// uclientArgs completes a scenario's flags with the credentials and the server; uclient
// learns the realm from the server's 401.
func uclientArgs(flags, port string) []string {
	return append(strings.Fields(flags), "-u", benchUser, "-w", benchPass, "-p", port, host)
}

func uclientPart(timeout time.Duration) *part {
	p := &part{
		name:  "uclient",
		title: "Relaying: turnutils_uclient",
		metrics: []metric{
			{"msgs sent", 0}, {"msgs recv", 0}, {"loss %", 2}, {"UDP drops", 0}, {"server drops", 0},
			{"wall s", 1}, {"server CPU s", 2}, {"CPU µs/msg", 2}, {"other CPU s", 2}, {"peak RSS MiB", 1},
		},
		key: "CPU µs/msg",
		notes: []string{fmt.Sprintf("Each run: one command, killed and counted as failed after %s. "+
			"CPU µs/msg is the server's CPU time (user+system, whole run, allocations included) "+
			"divided by the messages received back. UDP drops: datagrams the kernel dropped on full socket "+
			"receive buffers during the run (RcvbufErrors of /proc/net/snmp); server drops: those of them "+
			"on the server's sockets still open at the end (drops of /proc/net/udp), so none over TCP, "+
			"where the allocations and their relay sockets end with the client's connection.", timeout)},
	}
	for _, sc := range uclientScenarios {
		p.notes = append(p.notes, fmt.Sprintf("%s: turnutils_uclient %s", sc.name,
			strings.Join(uclientArgs(sc.flags, "PORT"), " ")))
		p.scenarios = append(p.scenarios, scenario{
			name: sc.name,
			load: func(ctx context.Context, s *server) ([]float64, error) {
				return uclientLoad(ctx, s, uclientArgs(sc.flags, strconv.Itoa(s.port)), timeout)
			},
		})
	}
	return p
}

func uclientLoad(ctx context.Context, s *server, args []string, timeout time.Duration) ([]float64, error) {
	m, err := startMeter(s)
	if err != nil {
		return nil, err
	}
	sent, recv, err := runUclient(ctx, args, timeout)
	if err != nil {
		return nil, err
	}
	u, peak, err := m.stopPeak()
	if err != nil {
		return nil, err
	}
	if sent == 0 || recv == 0 {
		return nil, fmt.Errorf("turnutils_uclient sent %d and received %d messages", sent, recv)
	}
	// Every message sent and not received back is lost: uclient's own "lost packets".
	loss := 100 * float64(sent-recv) / float64(sent)
	return []float64{float64(sent), float64(recv), loss, u.udpDrops, u.serverDrops, u.wall, u.cpu, u.cpu / float64(recv) * 1e6, u.other, peak}, nil
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
