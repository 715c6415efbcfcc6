package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ferry-rtc/ferry/test/bench/benchproc"
)

// The echo peer's ports: turnutils_peer listens on a port and the next (uclient's RTCP
// sessions send to the peer's port + 1). They lie below the relay range, so that no relay
// holds them, and below Linux's ephemeral ports (32768 and up), so that no client socket of
// the load does either.
const (
	minPeerPort = 9000
	maxPeerPort = minRelayPort - 2
)

// echoPeer is a turnutils_peer process, started for one run: its sockets are fresh, so their
// drops counters are those of the run, and both servers meet the same idle peer.
type echoPeer struct {
	port int
	proc *benchproc.Process
}

// startPeer starts turnutils_peer on 127.0.0.1 on the first pair of free ports, its output
// in dir, and waits until it echoes on both.
func startPeer(ctx context.Context, dir string) (*echoPeer, error) {
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("turnutils_peer", "-L", host, "-p", strconv.Itoa(port))
	proc, err := benchproc.Start("turnutils_peer", cmd, filepath.Join(dir, "peer-output"))
	if err != nil {
		return nil, err
	}
	// turnutils_peer does not exit when it cannot bind a port: only an echo shows it holds
	// both.
	err = proc.WaitReady(ctx, "echo", func() error {
		if err := echoProbe(port); err != nil {
			return err
		}
		return echoProbe(port + 1)
	})
	if err != nil {
		return nil, err
	}
	return &echoPeer{port: port, proc: proc}, nil
}

// freePortPair returns the first even port from minPeerPort whose pair (port, port+1) no
// socket holds for UDP. The probe sockets set no SO_REUSEADDR, so a port that any socket
// holds, even one sharing it, fails the probe.
func freePortPair() (int, error) {
	for port := minPeerPort; port <= maxPeerPort; port += 2 {
		if udpPortFree(port) && udpPortFree(port+1) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("echo peer: no free pair of UDP ports in %d-%d", minPeerPort, maxPeerPort+1)
}

func udpPortFree(port int) bool {
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = pc.Close()
	return true
}

// echoProbe sends one datagram to the peer's port and wants it back.
func echoProbe(port int) error {
	conn, err := net.Dial("udp4", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("echo probe: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(200 * time.Millisecond))
	probe := []byte("turnbench echo probe")
	if _, err := conn.Write(probe); err != nil {
		return fmt.Errorf("echo probe to port %d: %w", port, err)
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return fmt.Errorf("echo probe to port %d: %w", port, err)
	}
	if !bytes.Equal(buf[:n], probe) {
		return fmt.Errorf("echo probe to port %d: got %q back", port, buf[:n])
	}
	return nil
}

// cpuSeconds is the CPU time the peer has used so far.
func (p *echoPeer) cpuSeconds() (float64, error) {
	cpu, err := benchproc.CPUTime(p.proc.Pid())
	if err != nil {
		return 0, fmt.Errorf("turnutils_peer %w", err)
	}
	return cpu.Seconds(), nil
}

// drops are the datagrams the kernel dropped on the peer's full receive buffers.
func (p *echoPeer) drops() (float64, error) {
	drops, err := socketDrops(p.proc.Pid())
	if err != nil {
		return 0, fmt.Errorf("turnutils_peer %w", err)
	}
	return drops, nil
}

// stop ends the peer and waits for it; it is an error if the peer had exited during the run.
func (p *echoPeer) stop() error { return p.proc.Stop() }
