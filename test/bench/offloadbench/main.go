// Command offloadbench compares Ferry's kernel fast path with Ferry in user space and with
// Debian's coturn where the kernel path is real: in network namespaces joined by veth
// pairs, the same ones as the end-to-end test TestOffload:
//
//	root (turnutils_uclient) 198.51.100.2 ═ 198.51.100.1 [srv: the server] 203.0.113.1 ═ 203.0.113.2 [peer: turnutils_peer]
//
// Each run starts a fresh server in srv, a fresh echo peer, and one turnutils_uclient load
// relaying ChannelData to the peer and back; servers take turns (coturn, ferry offload,
// ferry off) within each round. Kernel work is not charged to the server process, so the
// headline figure is machine-wide: all cores' busy time from /proc/stat over the run, less
// the CPU of the load's own processes (uclient, turnutils_peer) and of every other user
// process (reported as "other CPU"; a round in which it passes a share of the wall time is
// run again). Kernel threads (ksoftirqd) count as relay work. A latency probe (pion/turn,
// one message at a time) gives p50 and p99 round trips through each server.
//
// It needs root, unshare, ip, coturn's turnserver, turnutils_uclient and turnutils_peer:
//
//	go run ./test/bench/offloadbench -ferry bin/ferry [-rounds 3] [-msgs 5000] [-clients 10]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
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

type options struct {
	ferry    string
	rounds   int
	msgs     int
	clients  int
	maxOther float64
	tries    int
	pings    int
}

func main() {
	var o options
	flag.StringVar(&o.ferry, "ferry", "bin/ferry", "the ferry binary")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every server once per size")
	flag.IntVar(&o.msgs, "msgs", 5000, "messages per uclient client")
	flag.IntVar(&o.clients, "clients", 10, "uclient clients (-m)")
	flag.Float64Var(&o.maxOther, "max-other", 0.1, "a round is run again when other processes took more than this share of a run's wall time")
	flag.IntVar(&o.tries, "tries", 3, "tries of a noisy round at most")
	flag.IntVar(&o.pings, "pings", 2000, "latency probe round trips per server")
	flag.Parse()
	if os.Getenv(worldEnv) == "" {
		os.Exit(reexec())
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "offloadbench:", err)
		os.Exit(1)
	}
}

// reexec runs this program again in network and mount namespaces of its own.
func reexec() int {
	exe, _ := os.Executable()
	cmd := exec.Command("unshare", append([]string{"--net", "--mount", "--propagation", "private", exe}, os.Args[1:]...)...)
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

// world builds the namespaces; they vanish with this process's namespaces.
func world() error {
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
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return err
		}
	}
	return nil
}

type server struct {
	name string
	cmd  func(dir string) *exec.Cmd
}

func servers(ferry, users string) []server {
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
	return []server{
		{"coturn", func(dir string) *exec.Cmd {
			return exec.Command("ip", "netns", "exec", "srv", "turnserver", "-n", "--no-tls", "--no-dtls", "--no-tcp",
				"--listening-ip="+srvIP, "--relay-ip="+srvIP, "--listening-port=3478", "--min-port=10000", "--max-port=19999",
				"--lt-cred-mech", "--user="+user+":"+pass, "--realm="+realm, "--no-cli", "--user-quota=0", "--total-quota=0",
				"--log-file="+filepath.Join(dir, "coturn.log"), "--simple-log", "--no-stdout-log",
				"--pidfile="+filepath.Join(dir, "turnserver.pid"), "--userdb="+filepath.Join(dir, "turndb"))
		}},
		{"ferry-offload", func(dir string) *exec.Cmd {
			return exec.Command("ip", "netns", "exec", "srv", ferry, "serve", "--config", ferryCfg(dir, "auto"))
		}},
		{"ferry-userspace", func(dir string) *exec.Cmd {
			return exec.Command("ip", "netns", "exec", "srv", ferry, "serve", "--config", ferryCfg(dir, "off"))
		}},
	}
}

// result is one run.
type result struct {
	server              string
	size, round, tries  int
	sent, recv          int
	wall                float64
	machine, proc, load float64 // CPU seconds: all cores less load and others; the server process; uclient+peer
	other               float64 // CPU seconds of other user processes
	avgRTT              string
}

func (r result) lossPct() float64 { return 100 * float64(r.sent-r.recv) / float64(r.sent) }

func run(o options) error {
	if err := world(); err != nil {
		return err
	}
	ferry, err := filepath.Abs(o.ferry)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "offloadbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	users := filepath.Join(dir, "users.toml")
	add := exec.Command(ferry, "user", "add", user, "--realm", realm, "--users-file", users, "--password-stdin")
	add.Stdin = strings.NewReader(pass + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("ferry user add: %v: %s", err, out)
	}
	var results []result
	n := 0
	for _, size := range []int{200, 1000} {
		for round := 1; round <= o.rounds; round++ {
			var kept []result
			for try := 1; try <= o.tries; try++ {
				var rs []result
				noisy := false
				for _, s := range servers(ferry, users) {
					n++
					d := filepath.Join(dir, fmt.Sprintf("%03d-%s", n, s.name))
					_ = os.Mkdir(d, 0o700)
					r, err := measure(o, s, d, size)
					if err != nil {
						return fmt.Errorf("%s %d B round %d: %w", s.name, size, round, err)
					}
					r.round, r.tries = round, try
					fmt.Fprintf(os.Stderr, "%d B round %d try %d %-16s sent %d recv %d loss %.2f%% wall %.1fs machine %.3fs proc %.3fs other %.3fs (%.0f%%) rtt %s\n",
						size, round, try, s.name, r.sent, r.recv, r.lossPct(), r.wall, r.machine, r.proc, r.other, 100*r.other/r.wall, r.avgRTT)
					noisy = noisy || r.other > o.maxOther*r.wall
					rs = append(rs, r)
				}
				kept = rs
				if !noisy {
					break
				}
				fmt.Fprintf(os.Stderr, "round %d: other processes above %.0f%% of a run's wall time: running it again\n", round, 100*o.maxOther)
			}
			results = append(results, kept...)
		}
	}
	lat := map[string][2]time.Duration{}
	for _, s := range servers(ferry, users) {
		n++
		d := filepath.Join(dir, fmt.Sprintf("%03d-%s-latency", n, s.name))
		_ = os.Mkdir(d, 0o700)
		p50, p99, err := latency(o, s, d)
		if err != nil {
			return fmt.Errorf("%s latency: %w", s.name, err)
		}
		lat[s.name] = [2]time.Duration{p50, p99}
		fmt.Fprintf(os.Stderr, "latency %-16s p50 %v p99 %v\n", s.name, p50, p99)
	}
	report(o, results, lat)
	return nil
}

// start runs the server and the echo peer and waits until both are up.
func start(s server, dir string) (srv, peer *exec.Cmd, err error) {
	srv = s.cmd(dir)
	out, _ := os.Create(filepath.Join(dir, "output"))
	srv.Stdout, srv.Stderr = out, out
	if err := srv.Start(); err != nil {
		return nil, nil, err
	}
	peer = exec.Command("ip", "netns", "exec", "peer", "turnutils_peer", "-L", peerIP, "-p", "3480")
	if err := peer.Start(); err != nil {
		stop(srv)
		return nil, nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", srvIP+":1", 10*time.Millisecond) // nothing: just time
		if err == nil {
			_ = c.Close()
		}
		if binding() == nil {
			break
		}
		if time.Now().After(deadline) {
			stop(srv)
			stop(peer)
			return nil, nil, fmt.Errorf("%s did not answer a Binding request", s.name)
		}
	}
	time.Sleep(300 * time.Millisecond)
	return srv, peer, nil
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

var (
	totals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	rtt    = regexp.MustCompile(`Average round trip delay ([0-9.]+) ms`)
)

func measure(o options, s server, dir string, size int) (result, error) {
	srv, peer, err := start(s, dir)
	if err != nil {
		return result{}, err
	}
	defer stop(peer)
	defer stop(srv)
	r := result{server: s.name, size: size}
	ours := map[int]bool{os.Getpid(): true, srv.Process.Pid: true, peer.Process.Pid: true}
	m0, o0 := machineBusy(), othersCPU(ours)
	p0, pe0 := procCPU(srv.Process.Pid), procCPU(peer.Process.Pid)
	t0 := time.Now()
	uc := exec.Command("turnutils_uclient", "-e", peerIP, "-r", "3480", "-u", user, "-w", pass, "-p", "3478",
		"-m", strconv.Itoa(o.clients), "-n", strconv.Itoa(o.msgs), "-l", strconv.Itoa(size), "-z", "0", srvIP)
	out, err := uc.CombinedOutput()
	r.wall = time.Since(t0).Seconds()
	m1, o1 := machineBusy(), othersCPU(ours)
	p1, pe1 := procCPU(srv.Process.Pid), procCPU(peer.Process.Pid)
	if err != nil {
		return r, fmt.Errorf("uclient: %v: %s", err, tail(out))
	}
	t := totals.FindAllSubmatch(out, -1)
	if t == nil {
		return r, fmt.Errorf("uclient printed no totals: %s", tail(out))
	}
	r.sent, _ = strconv.Atoi(string(t[len(t)-1][1]))
	r.recv, _ = strconv.Atoi(string(t[len(t)-1][2]))
	if a := rtt.FindAllSubmatch(out, -1); a != nil {
		r.avgRTT = string(a[len(a)-1][1]) + " ms"
	}
	ucCPU := uc.ProcessState.UserTime().Seconds() + uc.ProcessState.SystemTime().Seconds()
	r.proc = p1 - p0
	r.load = ucCPU + (pe1 - pe0)
	r.other = o1 - o0
	r.machine = (m1 - m0) - r.load - r.other
	return r, nil
}

func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// machineBusy is the busy CPU time of all cores so far (/proc/stat: all but idle and iowait).
func machineBusy() float64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	fields := strings.Fields(sc.Text())[1:]
	var busy float64
	for i, v := range fields {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are in user already
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / 100 // USER_HZ
}

// procCPU is a process's utime+stime in seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseFloat(fields[11], 64)
	k, _ := strconv.ParseFloat(fields[12], 64)
	return (u + k) / 100
}

// othersCPU sums utime+stime of the user processes not in ours and not their children
// (not their reaped children's: a parent reaping a long-lived child would add CPU spent
// before the run); kernel threads (children of kthreadd) are left out: their network work
// (ksoftirqd) is relay work.
func othersCPU(ours map[int]bool) float64 {
	entries, _ := os.ReadDir("/proc")
	var sum float64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || ours[pid] || pid == 2 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ppid, _ := strconv.Atoi(f[1])
		if ppid == 2 || ours[ppid] {
			continue
		}
		for _, i := range []int{11, 12} {
			v, _ := strconv.ParseFloat(f[i], 64)
			sum += v / 100
		}
	}
	return sum
}

// latency relays o.pings messages of 200 bytes one at a time through s with a pion/turn
// client to the echo peer and returns the 50th and 99th percentile round trips.
func latency(o options, s server, dir string) (p50, p99 time.Duration, err error) {
	srv, peer, err := start(s, dir)
	if err != nil {
		return 0, 0, err
	}
	defer stop(peer)
	defer stop(srv)
	conn, err := net.ListenPacket("udp4", cliIP+":0")
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: srvIP + ":3478", TURNServerAddr: srvIP + ":3478",
		Conn: conn, Username: user, Password: pass, Realm: realm, LoggerFactory: lf})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return 0, 0, err
	}
	rc, err := c.Allocate()
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	to := &net.UDPAddr{IP: net.ParseIP(peerIP), Port: 3480}
	msg, buf := make([]byte, 200), make([]byte, 1500)
	var rtts []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < o.pings+100 && ctx.Err() == nil; i++ {
		msg[0], msg[1] = byte(i), byte(i>>8)
		t0 := time.Now()
		if _, err := rc.WriteTo(msg, to); err != nil {
			return 0, 0, err
		}
		_ = rc.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := rc.ReadFrom(buf)
			if err != nil {
				break // lost: not counted
			}
			if n == len(msg) && buf[0] == msg[0] && buf[1] == msg[1] {
				if i >= 100 { // the first ones go before the channel is bound
					rtts = append(rtts, time.Since(t0))
				}
				break
			}
		}
		time.Sleep(time.Millisecond)
	}
	if len(rtts) == 0 {
		return 0, 0, fmt.Errorf("no echo came back")
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], rtts[len(rtts)*99/100], nil
}

func median(v []float64) float64 {
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

func report(o options, rs []result, lat map[string][2]time.Duration) {
	fmt.Printf("\n### Runs (%d uclient clients × %d messages, -z 0, to turnutils_peer and back)\n\n", o.clients, o.msgs)
	fmt.Println("| size | round | try | server | sent | recv | loss % | wall s | machine CPU s | server proc CPU s | load CPU s | other CPU s (% of wall) | avg RTT (uclient) |")
	fmt.Println("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rs {
		fmt.Printf("| %d | %d | %d | %s | %d | %d | %.2f | %.1f | %.3f | %.3f | %.3f | %.3f (%.1f %%) | %s |\n", r.size, r.round, r.tries, r.server,
			r.sent, r.recv, r.lossPct(), r.wall, r.machine, r.proc, r.load, r.other, 100*r.other/r.wall, r.avgRTT)
	}
	fmt.Printf("\n### Medians over %d rounds (per message received back: relayed to the peer and back)\n\n", o.rounds)
	fmt.Println("| size | server | machine CPU µs/msg | server proc CPU µs/msg | loss % | machine vs coturn | proc vs coturn |")
	fmt.Println("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, size := range []int{200, 1000} {
		med := map[string][3]float64{}
		for _, name := range []string{"coturn", "ferry-offload", "ferry-userspace"} {
			var m, p, l []float64
			for _, r := range rs {
				if r.size == size && r.server == name {
					m = append(m, r.machine/float64(r.recv)*1e6)
					p = append(p, r.proc/float64(r.recv)*1e6)
					l = append(l, r.lossPct())
				}
			}
			med[name] = [3]float64{median(m), median(p), median(l)}
		}
		for _, name := range []string{"coturn", "ferry-offload", "ferry-userspace"} {
			v, c := med[name], med["coturn"]
			fmt.Printf("| %d | %s | %.2f | %.2f | %.2f | %.2f | %.3f |\n", size, name, v[0], v[1], v[2], v[0]/c[0], v[1]/c[1])
		}
	}
	fmt.Printf("\n### Latency (pion/turn client, %d round trips of 200 bytes, one at a time, 1 ms apart)\n\n", o.pings)
	fmt.Println("| server | p50 | p99 |")
	fmt.Println("| --- | ---: | ---: |")
	for _, name := range []string{"coturn", "ferry-offload", "ferry-userspace"} {
		fmt.Printf("| %s | %v | %v |\n", name, lat[name][0].Round(time.Microsecond), lat[name][1].Round(time.Microsecond))
	}
}
