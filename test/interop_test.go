package test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// needTool skips the test when an external client is missing, loudly: CI installs it (see
// .ci/run), so a skip is only ever local.
func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			msg := fmt.Sprintf("SKIPPED LOUDLY: %s is not installed (apt-get install -y coturn); %s cannot run", name, t.Name())
			fmt.Fprintln(os.Stderr, msg)
			t.Skip(msg)
		}
	}
}

// turnutilsPeer runs coturn's UDP echo peer on 127.0.0.1 and returns its port.
func turnutilsPeer(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	cmd := exec.Command("turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatalf("turnutils_peer: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// turnutils_peer binds at once; wait until the port is taken.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		probe, err := net.ListenPacket("udp4", addrString("127.0.0.1", port))
		if err != nil {
			return port
		}
		probe.Close()
	}
	t.Fatal("turnutils_peer did not bind")
	return 0
}

var uclientTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)

// uclient runs turnutils_uclient and returns the messages it sent and received.
func uclient(t *testing.T, args ...string) (sent, received int, out string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, "turnutils_uclient", args...).CombinedOutput()
	out = string(b)
	if err != nil {
		t.Fatalf("turnutils_uclient %v: %v\n%s", args, err, out)
	}
	m := uclientTotals.FindAllStringSubmatch(out, -1)
	if m == nil {
		t.Fatalf("turnutils_uclient %v printed no totals:\n%s", args, out)
	}
	last := m[len(m)-1]
	sent, _ = strconv.Atoi(last[1])
	received, _ = strconv.Atoi(last[2])
	return sent, received, out
}

// TestTurnutilsInterop runs coturn's own client against Ferry over every transport, with
// long-term credentials and with the REST secret, and requires every message back.
func TestTurnutilsInterop(t *testing.T) {
	needTool(t, "turnutils_uclient", "turnutils_peer")
	s, addrs, _ := transportSetup(t)
	s.perUser = 0 // uclient leaves its allocations to expire
	startFerry(t, s.toml())
	peerPort := turnutilsPeer(t)
	_, udpPort, _ := net.SplitHostPort(addrs["udp"])
	_, securePort, _ := net.SplitHostPort(addrs["tls"])

	const clients, messages = 2, 40
	cases := []struct {
		name string
		args []string
	}{
		{"udp", []string{"-p", udpPort}},
		{"udp send indications", []string{"-s", "-p", udpPort}},
		{"tcp", []string{"-t", "-p", udpPort}},
		{"tls", []string{"-t", "-S", "-p", securePort}},
		{"dtls", []string{"-S", "-p", securePort}},
	}
	creds := []struct {
		name string
		args []string
	}{
		{"long-term", []string{"-u", testUser, "-w", testPass}},
		{"rest", []string{"-u", "uclient", "-W", testSecret}},
	}
	for _, tc := range cases {
		for _, cred := range creds {
			t.Run(tc.name+"/"+cred.name, func(t *testing.T) {
				args := append(append([]string{}, tc.args...), cred.args...)
				args = append(args, "-X", "-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
					"-m", strconv.Itoa(clients), "-n", strconv.Itoa(messages), "-l", "180", "-z", "5", "127.0.0.1")
				sent, received, out := uclient(t, args...)
				mustReceiveAll(t, sent, received, clients*messages, out)
			})
		}
	}
}

// TestTurnutilsTCPRelay runs coturn's RFC 6062 client (-T: TCP allocations, client to
// client through the relay, Connect and ConnectionBind). It rejects ConnectionBind
// responses without MESSAGE-INTEGRITY, which pion/turn v5.1.0 sends: Ferry signs them.
// The peers are Ferry's own relay addresses, allowed without allow_peers.
func TestTurnutilsTCPRelay(t *testing.T) {
	needTool(t, "turnutils_uclient")
	s, port := newSetup(t, 20)
	s.perUser = 0
	startFerry(t, s.toml())
	for _, cred := range [][]string{{"-u", testUser, "-w", testPass}, {"-u", "uclient", "-W", testSecret}} {
		args := append([]string{"-T", "-p", strconv.Itoa(port), "-m", "2", "-n", "40", "-l", "200", "-z", "5"}, cred...)
		sent, received, out := uclient(t, append(args, "127.0.0.1")...)
		mustReceiveAll(t, sent, received, 2*40, out)
	}
}

// TestTurnutilsClientToClient relays between two uclient clients through the same Ferry,
// whose relay IP (127.0.0.1) is in a denied range: Ferry's own relay addresses are always
// allowed peers (coturn#584), with no allow_peers.
func TestTurnutilsClientToClient(t *testing.T) {
	needTool(t, "turnutils_uclient")
	s, port := newSetup(t, 20)
	startFerry(t, s.toml())
	sent, received, out := uclient(t, "-y", "-X", "-u", testUser, "-w", testPass, "-p", strconv.Itoa(port),
		"-m", "2", "-n", "40", "-l", "200", "-z", "5", "127.0.0.1")
	mustReceiveAll(t, sent, received, 2*40, out)
}

// mustReceiveAll wants every message uclient sent back, and at least clients*messages sent
// (client-to-client runs count both directions).
func mustReceiveAll(t *testing.T, sent, received, atLeast int, out string) {
	t.Helper()
	if sent < atLeast || received != sent {
		t.Fatalf("sent %d, received %d: want at least %d sent and all received:\n%s", sent, received, atLeast, out)
	}
}
