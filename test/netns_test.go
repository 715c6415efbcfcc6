package test

// Network-namespace harness: a test that needs several hosts (clients behind NAT, Ferry on
// the "internet") builds them as Linux network namespaces, in a world of its own.
//
// The whole world lives inside a fresh `unshare -n -m --propagation private`: a test calls
// netnsReexec first, which re-runs the test binary (only this test) in new network and mount
// namespaces and asserts that run passed. Nothing is ever attached to the machine's own
// network namespace and no traffic can reach its interfaces: the unshared namespace starts
// with nothing but a down loopback, and every veth, bridge and named namespace is created
// inside it and vanishes with it.
//
// Named namespaces (`ip netns add`) are bind mounts under /var/run/netns, made in the
// current mount namespace. Inside `unshare -m --propagation private` those mounts do not
// propagate to the host, but the mount-point files would still be created on the host's
// /run/netns directory and outlive the test (host `ip netns list` then shows stale names).
// So the world first mounts a private tmpfs on /var/run/netns: names, files and mounts all
// disappear with the world (verified here: host `ip netns list` stays empty). The one trace
// on the host is an empty /run/netns directory if it did not exist, as after any `ip netns`.
//
// Inside the world, a test runs things in a namespace three ways:
//   - w.start re-execs the test binary under `ip netns exec NS`, running one test
//     function (a "role", which reads its instructions from env vars and stdin and prints
//     result lines with netnsReport) — the way to run anything that opens sockets on its
//     own goroutines (pion/webrtc, ICE gathering);
//   - w.command gives an exec.Cmd for any program in a namespace (nft, a browser, coturn);
//   - w.do runs a Go function on an OS thread switched into the namespace: sockets it opens
//     stay in that namespace for their lifetime, whoever uses them afterwards.
//
// Needs root, unshare (util-linux), ip (iproute2), nft (nftables) and a kernel with veth,
// bridge and nf_tables NAT. Without them the tests skip loudly; with
// FERRY_TEST_REQUIRE_NETNS=1 (CI) they fail instead.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// netnsWorldEnv marks a process running inside an unshared world; its value names the
	// namespaces of the process that made the world, which the world must not be in.
	netnsWorldEnv = "FERRY_NETNS_WORLD"
	// netnsRequireEnv turns a missing prerequisite into a failure instead of a skip.
	netnsRequireEnv = "FERRY_TEST_REQUIRE_NETNS"
	// netnsRunDir is where iproute2 keeps named namespaces (NETNS_RUN_DIR).
	netnsRunDir = "/var/run/netns"
	// netnsReportPrefix starts the result lines a role prints for its parent.
	netnsReportPrefix = "NETNS "
	// netnsFerryBinEnv passes the ferry binary built by the outermost TestMain down to
	// the processes of the world (see the report: TestMain may use it to skip rebuilding).
	netnsFerryBinEnv = "FERRY_TEST_FERRY_BIN"
)

// netnsSkip skips the test loudly, or fails it when FERRY_TEST_REQUIRE_NETNS is set.
func netnsSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := "SKIPPED LOUDLY: " + fmt.Sprintf(format, args...) + "; " + t.Name() + " cannot run"
	if os.Getenv(netnsRequireEnv) != "" {
		t.Fatalf("%s (%s is set)", msg, netnsRequireEnv)
	}
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
}

// netnsCheck skips the test unless it can build a namespace world here.
func netnsCheck(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		netnsSkip(t, "network namespaces need Linux")
	}
	if os.Geteuid() != 0 {
		netnsSkip(t, "network namespaces need root (run the tests as root)")
	}
	var missing, pkgs []string
	for _, tp := range [][2]string{{"unshare", "util-linux"}, {"ip", "iproute2"}, {"nft", "nftables"}} {
		if _, err := exec.LookPath(tp[0]); err != nil {
			missing, pkgs = append(missing, tp[0]), append(pkgs, tp[1])
		}
	}
	if len(missing) > 0 {
		netnsSkip(t, "%s not installed (apt-get install -y %s)", strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
}

// netnsSelf names the network and mount namespaces of this process.
func netnsSelf() string {
	net, _ := os.Readlink("/proc/self/ns/net")
	mnt, _ := os.Readlink("/proc/self/ns/mnt")
	return net + " " + mnt
}

// netnsTestBinary is the path of this test binary, to run it again.
func netnsTestBinary() string {
	if exe, err := os.Executable(); err == nil {
		return exe
	}
	return os.Args[0]
}

// netnsRunPattern is a -test.run pattern matching exactly the test named name (subtests
// included).
func netnsRunPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// netnsReexec runs the calling test in a world of its own. Outside one it checks the
// prerequisites (skipping loudly without them), re-runs this test binary with only t's test
// selected under `unshare -n -m --propagation private`, with env (KEY=VALUE) added, logs its
// output line by line, fails t if that run fails or does not pass, and returns false: the
// caller returns at once. Inside the world it makes sure it really is in namespaces other
// than the parent's, brings loopback up, gives /var/run/netns a private tmpfs and returns
// true: the caller builds its topology (newNATWorld) and runs.
//
//	func TestX(t *testing.T) {
//		if !netnsReexec(t) {
//			return
//		}
//		w := newNATWorld(t)
//		...
//	}
func netnsReexec(t *testing.T, env ...string) bool {
	t.Helper()
	if parent := os.Getenv(netnsWorldEnv); parent != "" {
		netnsEnterWorld(t, parent)
		return true
	}
	netnsCheck(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--net", "--mount", "--propagation", "private",
		netnsTestBinary(), "-test.run", netnsRunPattern(t.Name()), "-test.v", "-test.count=1", "-test.timeout=100s")
	cmd.Env = append(append(os.Environ(), netnsWorldEnv+"="+netnsSelf(), netnsFerryBinEnv+"="+ferryBin), env...)
	// The world and everything it started (ferry, roles) share a process group, killed as
	// one on timeout; WaitDelay stops waiting for output a stray child keeps open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	logw := &netnsLineWriter{logf: func(line string) { t.Log("world| " + line) }}
	cmd.Stdout, cmd.Stderr = logw, logw
	start := time.Now()
	err := cmd.Run()
	logw.flush()
	out := logw.all()
	all := strings.Join(out, "\n")
	if err != nil {
		// A world that failed may have left children (a ferry whose cleanup never ran after
		// a panic): they are in its process group, which outlives its leader while they do.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	switch {
	case strings.Contains(all, "unshare: unshare failed"):
		netnsSkip(t, "unshare -n -m failed (needs root with CAP_SYS_ADMIN, e.g. a privileged container)")
	case strings.Contains(all, "--- SKIP: "+t.Name()):
		t.Skipf("the test skipped inside its namespace world (see the log above)")
	case err != nil:
		t.Fatalf("the test failed inside its namespace world after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case !strings.Contains(all, "--- PASS: "+t.Name()):
		t.Fatalf("the test did not run inside its namespace world (no PASS line)")
	}
	return false
}

// netnsLineWriter hands each complete line written to it to logf and keeps them all.
type netnsLineWriter struct {
	mu      sync.Mutex
	logf    func(string)
	partial []byte
	lines   []string
	done    bool // after flush: late writes (of a stray child) are dropped
}

func (w *netnsLineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		w.lines = append(w.lines, line)
		if w.logf != nil {
			w.logf(line)
		}
	}
	return len(p), nil
}

// flush passes on a last line without a newline; nothing is passed on after it.
func (w *netnsLineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	if len(w.partial) > 0 {
		w.lines = append(w.lines, string(w.partial))
		if w.logf != nil {
			w.logf(string(w.partial))
		}
		w.partial = nil
	}
}

func (w *netnsLineWriter) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lines)
}

var netnsWorldOnce sync.Once

// netnsEnterWorld prepares a process started by netnsReexec; it refuses to do anything if
// the process is in its parent's network or mount namespace.
func netnsEnterWorld(t *testing.T, parent string) {
	t.Helper()
	self, par := strings.Fields(netnsSelf()), strings.Fields(parent)
	if len(self) != 2 || len(par) != 2 || self[0] == par[0] || self[1] == par[1] {
		t.Fatalf("%s is set but this process shares its parent's namespaces (%s); refusing to touch the network", netnsWorldEnv, parent)
	}
	var err error
	netnsWorldOnce.Do(func() {
		if err = exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
			err = fmt.Errorf("ip link set lo up: %w", err)
			return
		}
		if err = os.MkdirAll(netnsRunDir, 0o755); err != nil {
			return
		}
		if err = unix.Mount("tmpfs", netnsRunDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
			err = fmt.Errorf("mount tmpfs on %s: %w", netnsRunDir, err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// netnsWorld is a set of named network namespaces inside an unshared world, plus the
// world's own ("root") namespace. The empty namespace name means the root namespace.
type netnsWorld struct {
	t *testing.T // the test that built the world: helpers fail it and register cleanups on it
}

// newNetnsWorld is an empty world; call it only after netnsReexec returned true.
func newNetnsWorld(t *testing.T) *netnsWorld {
	t.Helper()
	if os.Getenv(netnsWorldEnv) == "" {
		t.Fatal("newNetnsWorld outside a world: call netnsReexec first")
	}
	return &netnsWorld{t: t}
}

// addNamespace creates the named network namespace with loopback up; the test's cleanup
// deletes it.
func (w *netnsWorld) addNamespace(name string) {
	w.t.Helper()
	w.sh("ip", "netns", "add", name)
	w.t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	w.sh("ip", "-n", name, "link", "set", "lo", "up")
}

// sh runs a command in the root namespace of the world, failing the test on error.
func (w *netnsWorld) sh(name string, args ...string) {
	w.t.Helper()
	w.shIn("", name, args...)
}

// shIn runs a command in namespace ns ("" = the world's root), failing the test on error.
func (w *netnsWorld) shIn(ns, name string, args ...string) {
	w.t.Helper()
	if out, err := w.command(ns, name, args...).CombinedOutput(); err != nil {
		w.t.Fatalf("%s %s (in %q): %v\n%s", name, strings.Join(args, " "), ns, err, out)
	}
}

// command is an exec.Cmd running name in namespace ns ("" = the world's root) through
// `ip netns exec`.
func (w *netnsWorld) command(ns, name string, args ...string) *exec.Cmd {
	if ns == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// sysctl writes a /proc/sys value (key like "net/ipv4/ip_forward") in namespace ns.
func (w *netnsWorld) sysctl(ns, key, value string) {
	w.t.Helper()
	if err := w.do(ns, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	}); err != nil {
		w.t.Fatalf("sysctl %s=%s in %q: %v", key, value, ns, err)
	}
}

// do runs fn on an OS thread switched into network namespace ns ("" = the world's root) and
// returns its error. Sockets fn opens belong to ns for their lifetime and may be used from
// any goroutine afterwards; goroutines fn starts do NOT run in ns. fn runs on a goroutine of
// its own, so it must not call t.Fatal: return an error instead.
func (w *netnsWorld) do(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is unlocked only once back in its own namespace; otherwise it ends
		// with this goroutine.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsRunDir, ns))
		if err != nil {
			errc <- fmt.Errorf("namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		var fnErr error
		func() {
			defer func() {
				if p := recover(); p != nil {
					fnErr = fmt.Errorf("panic in %s: %v", ns, p)
				}
			}()
			fnErr = fn()
		}()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- fnErr
	}()
	return <-errc
}

// netnsProc is a role of the test binary running in a namespace (see start).
type netnsProc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu     sync.Mutex
	lines  []string
	exited chan struct{}
	err    error
}

// start runs the test function testName of this test binary in namespace ns in the
// background, with env (KEY=VALUE) added to the environment: that function is a role, which
// skips unless its env is set. Its stdout and stderr are collected; result lines it prints
// with netnsReport are read with waitFor, and lines sent with send arrive on its stdin
// (netnsStdin). The test's cleanup kills it if it is still running, and shows its output if
// the test failed.
func (w *netnsWorld) start(ns, testName string, env ...string) *netnsProc {
	w.t.Helper()
	args := []string{netnsTestBinary(), "-test.run", netnsRunPattern(testName), "-test.v", "-test.count=1", "-test.timeout=60s"}
	return w.startProgram(ns, testName, env, args[0], args[1:]...)
}

// startProgram runs any program in namespace ns in the background, as start runs a role:
// env added to the environment, output collected and read with waitFor (a program reports
// with lines "NETNS key=value", as netnsReport prints them), lines sent to its stdin, and
// killed by the test's cleanup if still running. name names it in messages. The program
// and whatever it starts (a browser's child processes) share a process group, which the
// cleanup kills as one; the program is killed too if this process dies first.
func (w *netnsWorld) startProgram(ns, name string, env []string, prog string, args ...string) *netnsProc {
	w.t.Helper()
	cmd := w.command(ns, prog, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, netnsWorldEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &netnsProc{t: w.t, name: ns + ":" + name, cmd: cmd, exited: make(chan struct{})}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		w.t.Fatal(err)
	}
	r, wr, err := os.Pipe()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = wr, wr
	if err := cmd.Start(); err != nil {
		wr.Close()
		r.Close()
		w.t.Fatalf("start %s: %v", p.name, err)
	}
	wr.Close()
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		r.Close()
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()
	w.t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		// What the program started and left behind goes with it.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		if w.t.Failed() {
			w.t.Logf("output of %s:\n%s", p.name, p.output())
		}
	})
	return p
}

// output is everything the process printed so far.
func (p *netnsProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// send writes one line to the process's stdin.
func (p *netnsProc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("writing to %s: %v\n%s", p.name, err, p.output())
	}
}

// report is the value of the first result line "key=value" the process printed, if any.
func (p *netnsProc) report(key string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if v, ok := strings.CutPrefix(l, netnsReportPrefix+key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// waitFor waits until the process reports key and returns the value; the test fails if the
// process ends or timeout passes first.
func (p *netnsProc) waitFor(key string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		if v, ok := p.report(key); ok {
			return v
		}
		select {
		case <-p.exited:
			if v, ok := p.report(key); ok {
				return v
			}
			p.t.Fatalf("%s ended (%v) without reporting %s:\n%s", p.name, p.err, key, p.output())
		case <-deadline:
			p.t.Fatalf("%s did not report %s within %v:\n%s", p.name, key, timeout, p.output())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// wait waits up to timeout for the process to end (killing it then) and returns its output
// and exit error.
func (p *netnsProc) wait(timeout time.Duration) (string, error) {
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return p.output(), fmt.Errorf("%s killed after %v", p.name, timeout)
	}
	p.mu.Lock()
	err := p.err
	p.mu.Unlock()
	return p.output(), err
}

// netnsReport prints a result line for the parent of a role (read with waitFor/report).
func netnsReport(key, value string) {
	fmt.Printf("%s%s=%s\n", netnsReportPrefix, key, value)
}

// netnsStdin delivers the lines a role's parent sends; it is closed at end of input.
func netnsStdin() <-chan string {
	ch := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	return ch
}

// netnsNextLine waits up to timeout for the next line from in; false at end or timeout.
func netnsNextLine(in <-chan string, timeout time.Duration) (string, bool) {
	select {
	case l, ok := <-in:
		return l, ok
	case <-time.After(timeout):
		return "", false
	}
}

// The NAT world of newNATWorld, in documentation ranges only:
//
//	cliA 203.0.113.2/28  ─ eth0 ══ lan [natA] wan 198.51.100.11 ─┐
//	                                                             ├─ natnet0 bridge, 198.51.100.1/24
//	cliB 203.0.113.18/28 ─ eth0 ══ lan [natB] wan 198.51.100.12 ─┘  (the world's root: Ferry)
//
// natA and natB are masquerading routers (nft `masquerade random` out of wan, and a
// stateful forward filter: only replies come in from wan), the clients' default routes go
// through them, and the root namespace — the "internet", where the test process and Ferry
// run — does not forward and has no route to either LAN.
const (
	natInternetIP = "198.51.100.1" // the world's root namespace: Ferry listens here
	natRouterAIP  = "198.51.100.11"
	natRouterBIP  = "198.51.100.12"
	natClientAIP  = "203.0.113.2"
	natClientBIP  = "203.0.113.18"
	// namespace names
	natRouterA = "natA"
	natRouterB = "natB"
	natClientA = "cliA"
	natClientB = "cliB"
)

// natRuleset is the nftables ruleset of a router whose internet leg is "wan".
const natRuleset = `
table ip nat {
	chain post {
		type nat hook postrouting priority 100; policy accept;
		oifname "wan" masquerade random
	}
}
table ip filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "lan" oifname "wan" accept
	}
}
`

// newNATWorld builds the NAT world (see natInternetIP) in the unshared world of a test that
// netnsReexec let through; its namespaces are deleted when the test ends.
func newNATWorld(t *testing.T) *netnsWorld {
	t.Helper()
	w := newNetnsWorld(t)
	w.sh("ip", "link", "add", "natnet0", "type", "bridge")
	w.sh("ip", "addr", "add", natInternetIP+"/24", "dev", "natnet0")
	w.sh("ip", "link", "set", "natnet0", "up")
	w.sysctl("", "net/ipv4/ip_forward", "0")
	for _, side := range []struct{ router, client, wanIP, lanIP, clientIP string }{
		{natRouterA, natClientA, natRouterAIP, "203.0.113.1", natClientAIP},
		{natRouterB, natClientB, natRouterBIP, "203.0.113.17", natClientBIP},
	} {
		w.addNamespace(side.router)
		w.addNamespace(side.client)
		// The router's internet leg: a veth whose other end is a port of the bridge.
		port := side.router + "-wan"
		w.sh("ip", "link", "add", port, "type", "veth", "peer", "name", "wan", "netns", side.router)
		w.sh("ip", "link", "set", port, "master", "natnet0", "up")
		w.shIn(side.router, "ip", "addr", "add", side.wanIP+"/24", "dev", "wan")
		w.shIn(side.router, "ip", "link", "set", "wan", "up")
		w.shIn(side.router, "ip", "route", "add", "default", "via", natInternetIP)
		// The LAN: a veth between router and client.
		w.sh("ip", "link", "add", "name", "lan", "netns", side.router, "type", "veth", "peer", "name", "eth0", "netns", side.client)
		w.shIn(side.router, "ip", "addr", "add", side.lanIP+"/28", "dev", "lan")
		w.shIn(side.router, "ip", "link", "set", "lan", "up")
		w.shIn(side.client, "ip", "addr", "add", side.clientIP+"/28", "dev", "eth0")
		w.shIn(side.client, "ip", "link", "set", "eth0", "up")
		w.shIn(side.client, "ip", "route", "add", "default", "via", side.lanIP)
		w.sysctl(side.router, "net/ipv4/ip_forward", "1")
		nft := w.command(side.router, "nft", "-f", "-")
		nft.Stdin = strings.NewReader(natRuleset)
		if out, err := nft.CombinedOutput(); err != nil {
			t.Fatalf("nft in %s: %v\n%s", side.router, err, out)
		}
	}
	return w
}
