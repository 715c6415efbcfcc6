// Command offloadbench compares Ferry's kernel fast path with Ferry in user space and with
// Debian's coturn where the kernel path is real: in network namespaces joined by veth
// pairs, the same ones as the end-to-end test TestOffload:
//
//	root (load) 198.51.100.2 c0 ═ s0 198.51.100.1 [srv: the server] 203.0.113.1 s1 ═ p0 203.0.113.2 [peer: load]
//
// The machine is split in two sides (see account.go): the server runs on one core (taskset)
// and the kernel receives what reaches its interfaces s0 and s1 on that core too (RPS), so
// the relay's kernel work, which is charged to no server process, lands there; the load
// (turnutils_uclient, turnutils_peer, this program) runs on another core, which also
// receives what reaches c0 and p0. On veth the receiving side's work would otherwise run in
// the sending process's system call, that is inside the load generators.
//
// Three measurements, each in rounds in which the servers take turns (coturn, Ferry with
// the kernel fast path, Ferry in user space):
//
//   - cpu: a turnutils_uclient load relaying ChannelData to turnutils_peer and back; CPU per
//     message machine-wide (all cores less the load's processes and other processes), of
//     the server's core (less other processes) and of the server process (account.go says
//     how each is measured); a run in which other processes took more than -max-other of
//     its wall time is run again.
//   - latency: a pion/turn client, one 200-byte message at a time: p50 and p99 round trips.
//   - rate: a paced load of ChannelData to peers and of peers' datagrams to clients at rising
//     rates (rate.go): the highest rate relayed with at most 1 % loss by the one core.
//   - hook (not by default): what the TC and the XDP hook cost on veth with the same minimal
//     forwarding program, without a server (hook.go).
//
// It needs root, unshare, ip, taskset, coturn's turnserver, turnutils_uclient,
// turnutils_peer, the cgroup v1 cpuacct controller, cpuidle and a kernel with tcx (6.6+)
// for the rate sinks:
//
//	go run ./test/bench/offloadbench -ferry bin/ferry [-rounds 3] [-only cpu,latency,rate]
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	worldEnv = "OFFLOADBENCH_WORLD"
	srvIP    = "198.51.100.1"
	cliIP    = "198.51.100.2"
	peerIP   = "203.0.113.2"
	user     = "bench"
	pass     = "bench-password"
	realm    = "ferry.bench"
)

// The servers, in the order they take turns.
var serverNames = []string{"coturn", "ferry-offload", "ferry-userspace"}

type options struct {
	ferry      string
	rounds     int
	msgs       int
	clients    int
	maxOther   float64
	tries      int
	pings      int
	loadCPU    int
	serverCPU  int
	only       map[string]bool
	sizes      []int
	rateConns  int
	rateStep   time.Duration
	rates      []int
	rateFails  int
	hookRates  []int
	quietBusy  float64
	quietWait  time.Duration
	markdown   bool
	sysfsDir   string // this namespace's sysfs, mounted by world
	scratchDir string
}

func main() {
	var o options
	var only, sizes, rates, hookRates string
	flag.StringVar(&o.ferry, "ferry", "bin/ferry", "the ferry binary")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; in each, every server runs once per size (cpu, rate) or once (latency)")
	flag.IntVar(&o.msgs, "msgs", 5000, "cpu: messages per uclient client")
	flag.IntVar(&o.clients, "clients", 10, "cpu: uclient clients (-m)")
	flag.Float64Var(&o.maxOther, "max-other", 0.1, "cpu, rate: a run (cpu) or a step (rate) is taken again when other processes used more than this share of its wall time (rate: of either core's)")
	flag.IntVar(&o.tries, "tries", 3, "cpu, rate: tries of a noisy run or step at most")
	flag.IntVar(&o.pings, "pings", 2000, "latency: round trips per server and round")
	flag.IntVar(&o.loadCPU, "load-cpu", 0, "the core of the load generators and of the kernel's receive work for c0 and p0")
	flag.IntVar(&o.serverCPU, "server-cpu", 1, "the core of the server and of the kernel's receive work for s0 and s1")
	flag.StringVar(&only, "only", "cpu,latency,rate", "the measurements to take")
	flag.StringVar(&sizes, "sizes", "200,1000", "cpu, rate: ChannelData payload sizes in bytes")
	flag.IntVar(&o.rateConns, "rate-clients", 8, "rate: allocations (each with one channel to a peer socket of its own)")
	flag.DurationVar(&o.rateStep, "rate-step", 3*time.Second, "rate: the length of each rate step")
	flag.StringVar(&rates, "rates", "20000,30000,40000,50000,60000,70000,80000,100000,125000,150000,175000,200000,250000,300000,350000,400000,500000,600000,800000",
		"rate: the offered rates, relayed messages per second (half each way)")
	flag.IntVar(&o.rateFails, "rate-fails", 2, "rate: a server's steps end after this many failing steps in a row")
	flag.StringVar(&hookRates, "hook-rates", "50000,100000", "hook: the rates, datagrams per second (the first -sizes value their payload)")
	flag.Float64Var(&o.quietBusy, "quiet", 0.05, "before each run, wait until other processes use less than this many CPUs over a second")
	flag.DurationVar(&o.quietWait, "quiet-wait", 60*time.Second, "the longest wait for a quiet machine before a run")
	flag.BoolVar(&o.markdown, "markdown", true, "print the report as Markdown tables")
	flag.Parse()
	o.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		o.only[strings.TrimSpace(s)] = true
	}
	var err error
	if o.sizes, err = ints(sizes); err == nil {
		o.rates, err = ints(rates)
	}
	if err == nil {
		o.hookRates, err = ints(hookRates)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "offloadbench:", err)
		os.Exit(2)
	}
	if os.Getenv(worldEnv) == "" {
		os.Exit(reexec(o))
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "offloadbench:", err)
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var v []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want positive integers separated by commas", s)
		}
		v = append(v, n)
	}
	return v, nil
}

// reexec runs this program again, on the load core, in network and mount namespaces of
// its own.
func reexec(o options) int {
	if n := runtime.NumCPU(); o.loadCPU == o.serverCPU || o.loadCPU >= n || o.serverCPU >= n {
		fmt.Fprintf(os.Stderr, "offloadbench: -load-cpu %d and -server-cpu %d must be two different cores of the %d this program may use\n",
			o.loadCPU, o.serverCPU, n)
		return 2
	}
	exe, _ := os.Executable()
	args := append([]string{"-c", strconv.Itoa(o.loadCPU), "unshare", "--net", "--mount", "--propagation", "private", exe}, os.Args[1:]...)
	cmd := exec.Command("taskset", args...)
	cmd.Env = append(os.Environ(), worldEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "offloadbench:", err)
		return 1
	}
	return 0
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func mask(cpu int) string { return strconv.FormatUint(1<<cpu, 16) }

// world builds the namespaces; they vanish with this process's namespaces. Each veth end
// hands what it receives to one core (RPS): s0 and s1 to the server's, c0 and p0 to the
// load's.
func world(o *options) error {
	_ = os.MkdirAll("/var/run/netns", 0o755)
	steps := [][]string{
		{"mount", "-t", "tmpfs", "tmpfs", "/var/run/netns"},
		{"ip", "link", "set", "lo", "up"},
		{"ip", "netns", "add", "srv"}, {"ip", "netns", "add", "peer"},
		{"ip", "-n", "srv", "link", "set", "lo", "up"}, {"ip", "-n", "peer", "link", "set", "lo", "up"},
		{"ip", "link", "add", "c0", "type", "veth", "peer", "name", "s0", "netns", "srv"},
		{"ip", "link", "add", "s1", "netns", "srv", "type", "veth", "peer", "name", "p0", "netns", "peer"},
		{"ip", "addr", "add", cliIP + "/24", "dev", "c0"}, {"ip", "link", "set", "c0", "up"},
		{"ip", "-n", "srv", "addr", "add", srvIP + "/24", "dev", "s0"}, {"ip", "-n", "srv", "link", "set", "s0", "up"},
		{"ip", "-n", "srv", "addr", "add", "203.0.113.1/24", "dev", "s1"}, {"ip", "-n", "srv", "link", "set", "s1", "up"},
		{"ip", "-n", "peer", "addr", "add", peerIP + "/24", "dev", "p0"}, {"ip", "-n", "peer", "link", "set", "p0", "up"},
		{"ip", "-n", "peer", "route", "add", "default", "via", "203.0.113.1"},
		// This namespace's sysfs, for c0's queues, beside /sys (whose cgroup mounts
		// account.go reads).
		{"mount", "-t", "sysfs", "sysfs", o.sysfsDir},
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return err
		}
	}
	for _, r := range []struct {
		ns, sysfs, dev string
		cpu            int
	}{
		{"", o.sysfsDir, "c0", o.loadCPU}, {"srv", "/sys", "s0", o.serverCPU},
		{"srv", "/sys", "s1", o.serverCPU}, {"peer", "/sys", "p0", o.loadCPU},
	} {
		if err := setRPS(r.ns, r.sysfs, r.dev, mask(r.cpu)); err != nil {
			return fmt.Errorf("RPS: %w", err)
		}
	}
	return nil
}

// setRPS sets the cores (a hex mask; "0": none) that receive what reaches dev.
func setRPS(ns, sysfs, dev, cpus string) error {
	script := fmt.Sprintf("for q in %s/class/net/%s/queues/rx-*; do echo %s > $q/rps_cpus || exit 1; done", sysfs, dev, cpus)
	if ns == "" {
		return sh("sh", "-c", script)
	}
	return sh("ip", "netns", "exec", ns, "sh", "-c", script)
}

type server struct {
	name string
	cmd  func(dir string) *exec.Cmd
}

func servers(o options, ferry, users string) []server {
	pin := []string{"taskset", "-c", strconv.Itoa(o.serverCPU), "ip", "netns", "exec", "srv"}
	ferryCfg := func(dir, offload string) string {
		cfg := fmt.Sprintf(`[server]
realm = %q
drain_timeout = "0s"
[[listen]]
proto = "udp"
addr = "%s:3478"
[relay]
bind_ip = "0.0.0.0"
public_ip = %q
min_port = 10000
max_port = 19999
offload = %q
[auth]
users_file = %q
[limits]
allocations_per_user = 0
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
`, realm, srvIP, srvIP, offload, users)
		p := filepath.Join(dir, "ferry.toml")
		_ = os.WriteFile(p, []byte(cfg), 0o600)
		return p
	}
	command := func(args ...string) *exec.Cmd {
		all := append(slices.Clone(pin), args...)
		return exec.Command(all[0], all[1:]...)
	}
	return []server{
		{"coturn", func(dir string) *exec.Cmd {
			return command("turnserver", "-n", "--no-tls", "--no-dtls", "--no-tcp",
				"--listening-ip="+srvIP, "--relay-ip="+srvIP, "--listening-port=3478", "--min-port=10000", "--max-port=19999",
				"--lt-cred-mech", "--user="+user+":"+pass, "--realm="+realm, "--no-cli", "--user-quota=0", "--total-quota=0",
				"--log-file="+filepath.Join(dir, "coturn.log"), "--simple-log", "--no-stdout-log",
				"--pidfile="+filepath.Join(dir, "turnserver.pid"), "--userdb="+filepath.Join(dir, "turndb"))
		}},
		{"ferry-offload", func(dir string) *exec.Cmd {
			return command(ferry, "serve", "--config", ferryCfg(dir, "auto"))
		}},
		{"ferry-userspace", func(dir string) *exec.Cmd {
			return command(ferry, "serve", "--config", ferryCfg(dir, "off"))
		}},
	}
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "offloadbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.scratchDir = dir
	o.sysfsDir = filepath.Join(dir, "sys")
	if err := os.Mkdir(o.sysfsDir, 0o755); err != nil {
		return err
	}
	if err := world(&o); err != nil {
		return err
	}
	defer func() { _ = syscall.Unmount(o.sysfsDir, 0) }()
	ferry, err := filepath.Abs(o.ferry)
	if err != nil {
		return err
	}
	users := filepath.Join(dir, "users.toml")
	add := exec.Command(ferry, "user", "add", user, "--realm", realm, "--users-file", users, "--password-stdin")
	add.Stdin = strings.NewReader(pass + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("ferry user add: %v: %s", err, out)
	}
	b := &bench{o: o, all: servers(o, ferry, users), dir: dir}
	if b.acct, err = newAccountant(o); err != nil {
		return err
	}
	defer b.acct.close()
	started := time.Now()
	if o.only["cpu"] {
		if err := b.cpuRounds(); err != nil {
			return err
		}
	}
	if o.only["latency"] {
		if err := b.latencyRounds(); err != nil {
			return err
		}
	}
	if o.only["rate"] {
		if err := b.rateRounds(); err != nil {
			return err
		}
	}
	if o.only["hook"] {
		if err := b.hookRounds(); err != nil {
			return err
		}
	}
	b.report(time.Since(started))
	return nil
}

// bench holds the results of a run of this program.
type bench struct {
	o    options
	all  []server
	dir  string
	n    int // runs so far, to name their directories
	acct *accountant

	cpu     []cpuResult
	latency []latencyResult
	rate    []rateResult
	hook    []hookStep
}

// runDir makes a directory for one run of a server.
func (b *bench) runDir(s server, what string) string {
	b.n++
	d := filepath.Join(b.dir, fmt.Sprintf("%03d-%s-%s", b.n, s.name, what))
	_ = os.Mkdir(d, 0o700)
	return d
}

// running is a started server and echo peer.
type running struct {
	srv, peer *exec.Cmd
	out       *os.File // the server's output
	dir       string
}

// start runs the server in the server's cgroup (and, with peer, turnutils_peer) and waits
// until it answers.
func (b *bench) start(s server, dir string, peer bool) (*running, error) {
	r := &running{dir: dir}
	r.srv = s.cmd(dir)
	out, err := os.Create(filepath.Join(dir, "output"))
	if err != nil {
		return nil, err
	}
	r.out = out
	r.srv.Stdout, r.srv.Stderr = out, out
	if err := r.srv.Start(); err != nil {
		_ = out.Close()
		return nil, err
	}
	if err := b.acct.join("server", r.srv.Process.Pid); err != nil {
		r.stop()
		return nil, err
	}
	if peer {
		r.peer = exec.Command("ip", "netns", "exec", "peer", "turnutils_peer", "-L", peerIP, "-p", "3480")
		if err := r.peer.Start(); err != nil {
			r.stop()
			return nil, err
		}
	}
	for deadline := time.Now().Add(10 * time.Second); binding() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.stop()
			b, _ := os.ReadFile(filepath.Join(dir, "output"))
			return nil, fmt.Errorf("%s did not answer a Binding request: %s", s.name, tail(b))
		}
	}
	time.Sleep(300 * time.Millisecond)
	return r, nil
}

func (r *running) stop() {
	if r.peer != nil {
		stop(r.peer)
	}
	stop(r.srv)
	_ = r.out.Close()
}

// binding sends a STUN Binding request to the server and waits for any answer.
func binding() error {
	c, err := net.Dial("udp4", srvIP+":3478")
	if err != nil {
		return err
	}
	defer c.Close()
	req := []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if _, err := c.Write(req); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = c.Read(make([]byte, 512))
	return err
}

func stop(c *exec.Cmd) {
	_ = c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.Process.Kill()
		<-done
	}
}

func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

var errNoEcho = errors.New("no echo came back")
