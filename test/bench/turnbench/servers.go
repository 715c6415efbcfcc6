package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/test/bench/benchproc"
)

// The one user, realm and relay port range of both servers.
const (
	benchUser  = "bench"
	benchPass  = "bench-password"
	benchRealm = "ferry.bench"
	// The relay range lies below Linux's ephemeral ports (32768 and up), where the load's
	// client sockets are bound, so that no client socket ever holds a relay port, and below
	// the blocks the end-to-end tests use (20000 and up). It holds the 5,000 idle
	// allocations with room to spare.
	minRelayPort = 10000
	maxRelayPort = 19999
)

// env is what every server run shares: the ferry binary, the temporary directory, the
// Ferry users file (coturn takes its user on the command line) and the contention
// processes.
type env struct {
	ferryBin  string
	dir       string
	usersFile string
	runs      int
	busy      *contention
}

// newEnv writes the Ferry users file with `ferry user add`, as an operator would.
func newEnv(ctx context.Context, ferryBin, dir string) (*env, error) {
	e := &env{ferryBin: ferryBin, dir: dir, usersFile: filepath.Join(dir, "users.toml")}
	cmd := exec.CommandContext(ctx, ferryBin, "user", "add", benchUser, "--realm", benchRealm,
		"--users-file", e.usersFile, "--password-stdin")
	cmd.Stdin = strings.NewReader(benchPass + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ferry user add: %w\n%s", err, out)
	}
	return e, nil
}

// serverKind is one of the two servers under comparison.
type serverKind struct {
	name string
	// command builds the command of a run in dir listening on port.
	command func(e *env, dir string, port int) (*exec.Cmd, error)
	// logFile is the file in dir the server logs to, if not to its stdout or stderr.
	logFile string
}

var serverKinds = []serverKind{
	{name: "coturn", command: coturnCommand, logFile: "coturn.log"},
	{name: "ferry", command: ferryCommand},
}

// coturnArgs is coturn's command line, configured like ferryConfig: loopback listener and
// relays, no TLS or DTLS, long-term credentials with one user, no quotas. port and dir are
// strings so that the report can print placeholders.
func coturnArgs(dir, port string) []string {
	return []string{
		"-n", // no configuration file: /etc/turnserver.conf must not change the comparison
		"--no-tls", "--no-dtls",
		"--listening-ip=" + host, "--relay-ip=" + host,
		"--listening-port=" + port,
		"--min-port=" + strconv.Itoa(minRelayPort), "--max-port=" + strconv.Itoa(maxRelayPort),
		// uclient -y clients are each other's peers, at relay addresses on 127.0.0.1, and
		// turnutils_peer listens on 127.0.0.1 too.
		"--allow-loopback-peers",
		"--lt-cred-mech", "--user=" + benchUser + ":" + benchPass, "--realm=" + benchRealm,
		"--no-cli",
		"--user-quota=0", "--total-quota=0",
		// --simple-log keeps the log file name as given (no date suffix).
		"--log-file=" + filepath.Join(dir, "coturn.log"), "--simple-log", "--no-stdout-log",
		// Both default to system paths: keep each run's own.
		"--pidfile=" + filepath.Join(dir, "turnserver.pid"),
		"--userdb=" + filepath.Join(dir, "turndb"),
	}
}

func coturnCommand(_ *env, dir string, port int) (*exec.Cmd, error) {
	return exec.Command("turnserver", coturnArgs(dir, strconv.Itoa(port))...), nil
}

// ferryConfig is Ferry's configuration, equivalent to coturnArgs. Limits are off as in
// coturn (allocation quotas 0, and no rate limit on 401 answers, which coturn does not
// have), and so are the SFU, metrics and admin endpoints, which coturn has no counterpart of.
func ferryConfig(usersFile, port string) string {
	return fmt.Sprintf(`[server]
realm = %q
drain_timeout = "0s"

[[listen]]
proto = "udp"
addr = "%s:%s"

[[listen]]
proto = "tcp"
addr = "%s:%s"

[relay]
bind_ip = %q
public_ip = %q
min_port = %d
max_port = %d
allow_peers = ["%s/32"]

[auth]
users_file = %q

[limits]
allocations_per_user = 0
allocations_total = 0
unauthenticated_per_ip_rate = 0
binding_per_ip_rate = 0

[sfu]
enabled = false

[metrics]
listen = ""

[admin]
listen = ""

[log]
level = "warn"
`, benchRealm, host, port, host, port, host, host, minRelayPort, maxRelayPort, host, usersFile)
}

func ferryCommand(e *env, dir string, port int) (*exec.Cmd, error) {
	config := filepath.Join(dir, "ferry.toml")
	if err := os.WriteFile(config, []byte(ferryConfig(e.usersFile, strconv.Itoa(port))), 0o600); err != nil {
		return nil, fmt.Errorf("ferry config: %w", err)
	}
	return exec.Command(e.ferryBin, "serve", "--config", config), nil
}

// server is a running server process.
type server struct {
	name string
	port int
	proc *benchproc.Process
	// dir is the run's directory, for the files of the processes the load starts.
	dir string
	// busy are the contention processes beside the run, whose CPU every meter reads.
	busy *contention
}

func (s *server) addr() string { return net.JoinHostPort(host, strconv.Itoa(s.port)) }

func (s *server) pid() int { return s.proc.Pid() }

// startServer starts a fresh server of kind in its own directory on a free port and waits
// until it answers STUN Binding requests over UDP and TCP.
func startServer(ctx context.Context, e *env, kind serverKind) (*server, error) {
	e.runs++
	dir := filepath.Join(e.dir, fmt.Sprintf("%03d-%s", e.runs, kind.name))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	port, err := benchproc.FreePort(host)
	if err != nil {
		return nil, err
	}
	cmd, err := kind.command(e, dir, port)
	if err != nil {
		return nil, err
	}
	var logs []string
	if kind.logFile != "" {
		logs = append(logs, filepath.Join(dir, kind.logFile))
	}
	proc, err := benchproc.Start(kind.name, cmd, filepath.Join(dir, "output"), logs...)
	if err != nil {
		return nil, err
	}
	s := &server{name: kind.name, port: port, proc: proc, dir: dir, busy: e.busy}
	// Ready when it answers Binding requests on both transports.
	err = proc.WaitReady(ctx, "Binding response", func() error {
		if err := bindingProbe("udp", s.addr()); err != nil {
			return err
		}
		return bindingProbe("tcp", s.addr())
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// stop ends the server with SIGTERM (Ferry's drain_timeout is 0s, so both exit at once) and
// kills it if it has not exited after 10 seconds.
func (s *server) stop() error { return s.proc.Stop() }

// stunHeaderSize is the fixed header of every STUN message; its bytes 2-3 hold the length
// of the attributes that follow.
const stunHeaderSize = 20

// bindingProbe sends one Binding request over network ("udp" or "tcp") and wants its
// success response.
func bindingProbe(network, addr string) error {
	conn, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return fmt.Errorf("%s probe: %w", network, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(200 * time.Millisecond))
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		return fmt.Errorf("%s probe: %w", network, err)
	}
	if _, err := conn.Write(req.Raw); err != nil {
		return fmt.Errorf("%s probe: %w", network, err)
	}
	// Over UDP one read is the whole message; over TCP the header says how much follows.
	buf := make([]byte, 1500)
	n, err := io.ReadAtLeast(conn, buf, stunHeaderSize)
	if err != nil {
		return fmt.Errorf("%s probe: %w", network, err)
	}
	size := stunHeaderSize + int(binary.BigEndian.Uint16(buf[2:4]))
	if size > len(buf) {
		return fmt.Errorf("%s probe: %d-byte response", network, size)
	}
	if n < size {
		if _, err := io.ReadFull(conn, buf[n:size]); err != nil {
			return fmt.Errorf("%s probe: %w", network, err)
		}
	}
	res := &stun.Message{Raw: buf[:size]}
	if err := res.Decode(); err != nil {
		return fmt.Errorf("%s probe: %w", network, err)
	}
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		return fmt.Errorf("%s probe: unexpected %s", network, res.Type)
	}
	return nil
}
