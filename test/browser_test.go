package test

// The real-browser test: headless Chromium, driven over the DevTools protocol with chromedp,
// opens the embedded demo page twice with "force relay" on; one page publishes the fake
// camera, the other shows it, and both reach the SFU only through Ferry's TURN relay.
//
// Chromium gathers no ICE candidates on loopback, so the test runs in a network namespace
// world of its own (netnsReexec): a veth pair carrying 198.51.100.1 and 198.51.100.2, Ferry
// (TURN listeners, relay, SFU ICE and SFU HTTP) on 198.51.100.1, and the two Chromium
// processes started by chromedp from inside the world, so in its namespace.
//
// Needs Debian's `chromium` (or `chromium-browser`) and what the netns tests need (root,
// unshare, ip, nft). Without Chromium the test skips loudly; FERRY_TEST_REQUIRE_BROWSER=1
// (CI) makes a missing browser, or a missing netns prerequisite, fail the test instead.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const (
	// browserRequireEnv turns a missing browser (or netns prerequisite) into a failure.
	browserRequireEnv = "FERRY_TEST_REQUIRE_BROWSER"
	browserServerIP   = "198.51.100.1" // Ferry: TURN, relay, SFU ICE and the page
	browserClientIP   = "198.51.100.2" // the other end of the veth, for the browsers
	browserTURNPort   = 3478
	browserHTTPPort   = 8080
	browserRoom       = "demo"
	// browserArtifactsEnv passes the outer test's artifact directory to its run inside the
	// namespace world, which writes the screenshots there.
	browserArtifactsEnv = "FERRY_TEST_BROWSER_ARTIFACTS"
	browserStreamName   = "Browser cam"
)

// browserExecPath is Chromium's path; without it the test skips loudly, or fails when
// FERRY_TEST_REQUIRE_BROWSER is set.
func browserExecPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "SKIPPED LOUDLY: chromium not installed (apt-get install -y chromium); " + t.Name() + " cannot run"
	if os.Getenv(browserRequireEnv) != "" {
		t.Fatalf("%s (%s is set)", msg, browserRequireEnv)
	}
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
	return ""
}

// TestBrowserRelay: two headless Chromium pages of the demo, with force relay on. The
// watcher joins the room first; the publisher opens with autostart and publishes the fake
// camera. The watcher must show the video (videoWidth > 0, frames advancing), and on both
// pages the selected ICE candidate pair must have a local candidate of type relay,
// allocated from Ferry's relay pool on 198.51.100.1, whose remote end is the SFU's host
// candidate. allow_peers stays empty: the relay reaches the SFU by Ferry's own-address rule.
// The watcher shows no tile of its own, the stream by the name its publisher gave it, and
// "left the room" when the publisher leaves; the publisher shows its viewer count. Both
// pages are saved as screenshots in the test's artifact directory (go test -artifacts, as
// make test runs it), whose paths the test logs.
func TestBrowserRelay(t *testing.T) {
	chromium := browserExecPath(t)
	if os.Getenv(browserRequireEnv) != "" && os.Getenv(netnsRequireEnv) == "" {
		// A browser test CI requires must not be skipped for want of namespaces either.
		t.Setenv(netnsRequireEnv, "1")
	}
	artifacts := os.Getenv(browserArtifactsEnv)
	if artifacts == "" {
		artifacts = t.ArtifactDir()
	}
	if !netnsReexec(t, browserArtifactsEnv+"="+artifacts) {
		return
	}
	start := time.Now()
	w := newNetnsWorld(t)
	w.sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	w.sh("ip", "addr", "add", browserServerIP+"/24", "dev", "v0")
	w.sh("ip", "addr", "add", browserClientIP+"/24", "dev", "v1")
	w.sh("ip", "link", "set", "v0", "up")
	w.sh("ip", "link", "set", "v1", "up")

	s, _ := newSetup(t, 40)
	turnAddr := addrString(browserServerIP, browserTURNPort)
	s.listeners = []listenSpec{{proto: "udp", addr: turnAddr}, {proto: "tcp", addr: turnAddr}}
	s.bindIP = browserServerIP // allow_peers stays empty
	s.sfuAddr = addrString(browserServerIP, browserHTTPPort)
	s.tokenSecret = sfuTokenSecret
	f := startFerry(t, s.toml())

	origin := "http://" + s.sfuAddr
	subToken := accessToken(t, browserRoom, false, true, time.Hour)
	pubToken := accessToken(t, browserRoom, true, false, time.Hour)
	page := func(q url.Values) string { return origin + "/?" + q.Encode() }

	// The watcher joins with the Join button and never publishes.
	watcher := newBrowserPage(t, "watcher", chromium, origin)
	watcher.open(page(url.Values{"room": {browserRoom}, "sub": {subToken}, "relay": {"1"}}))
	if checked := browserEval[bool](t, watcher, `document.getElementById('forceRelay').checked`); !checked {
		t.Fatal("watcher: ?relay=1 did not check Force relay")
	}
	if !browserEval[bool](t, watcher, `document.getElementById('me').hidden &&
		getComputedStyle(document.getElementById('me')).display === 'none'`) {
		t.Error("watcher: a page that does not publish shows a tile of its own")
	}
	if hint := browserEval[string](t, watcher, `document.getElementById('tokenHint').textContent`); !strings.Contains(hint, "ferry token") {
		t.Errorf("watcher: the token hint %q does not say where tokens come from", hint)
	}
	watcher.click("join")
	watcher.waitFor("joined the room", 10*time.Second,
		`window.ferryDemo.log.some((l) => l.includes('joined room `+browserRoom+`'))`)

	// The publisher: ?autostart=1 clicks Join and Publish. Its browser refuses new ICE
	// servers on an existing connection, as some Firefox versions do, so the page takes
	// the fallback: a second WHIP POST with a connection built with the first session's TURN
	// credential, whose session it ends once connected; Ferry hands the credential over.
	publisher := newBrowserPage(t, "publisher", chromium, origin)
	publisher.beforeLoad(`RTCPeerConnection.prototype.setConfiguration = function () {
		throw new DOMException('refused as Firefox may', 'InvalidModificationError'); };`)
	publisher.open(page(url.Values{"room": {browserRoom}, "pub": {pubToken}, "sub": {subToken},
		"name": {browserStreamName}, "relay": {"1"}, "autostart": {"1"}}))
	publisher.waitFor("publishing, ICE connected", 20*time.Second,
		`(() => { const pc = window.ferryDemo.publisher;
			return !!pc && ['connected', 'completed'].includes(pc.iceConnectionState); })()`)
	ownStream := browserEval[string](t, publisher, `window.ferryDemo.ownStream || ''`)
	if ownStream == "" {
		t.Fatal("publisher: connected but window.ferryDemo.ownStream is empty")
	}
	t.Logf("publisher: publishing stream %s after %v", ownStream, time.Since(start).Round(time.Millisecond))
	if !browserEval[bool](t, publisher, `window.ferryDemo.log.some((l) => l.includes('setConfiguration refused'))`) {
		t.Fatal("publisher: the page did not take the fallback for a browser that refuses new ICE servers")
	}
	f.waitLog(t, "which takes it over", 1)

	// The watcher shows it.
	watcher.waitFor("a playing video of the stream", 20*time.Second,
		`(() => { const v = document.querySelector('#streams video');
			return !!v && v.videoWidth > 0 && v.dataset.stream === `+jsString(ownStream)+`; })()`)
	type videoState struct {
		Width, Height int
		Frames        int
		Time          float64
	}
	const videoJS = `(() => { const v = document.querySelector('#streams video');
		const q = v.getVideoPlaybackQuality();
		return { width: v.videoWidth, height: v.videoHeight, frames: q.totalVideoFrames, time: v.currentTime }; })()`
	// Frames keep coming: 15 more decoded frames within 10 s (the fake camera sends 30 a
	// second, and here they arrive at 10 to 20 a second from the first moment on), which
	// tells a moving picture from a frozen one and leaves room for a slow machine.
	v1, at := browserEval[videoState](t, watcher, videoJS), time.Now()
	for {
		time.Sleep(250 * time.Millisecond)
		v2 := browserEval[videoState](t, watcher, videoJS)
		if v2.Frames-v1.Frames >= 15 && v2.Time > v1.Time {
			t.Logf("watcher: video %dx%d, %d frames in %v (currentTime %.2f s to %.2f s)", v2.Width, v2.Height,
				v2.Frames-v1.Frames, time.Since(at).Round(time.Millisecond), v1.Time, v2.Time)
			break
		}
		if time.Since(at) > 10*time.Second {
			t.Fatalf("watcher: the video does not advance: %d frames then %d in %v, currentTime %.2f then %.2f",
				v1.Frames, v2.Frames, time.Since(at).Round(time.Millisecond), v1.Time, v2.Time)
		}
	}

	// Both connections run through Ferry's relay, to the SFU's host candidate.
	for _, c := range []struct {
		tab *browserPage
		pc  string
	}{
		{watcher, `window.ferryDemo.subscribers.get(` + jsString(ownStream) + `)`},
		{publisher, `window.ferryDemo.publisher`},
	} {
		p := selectedPair(t, c.tab, c.pc)
		t.Logf("%s: selected pair local %s %s (TURN over %s), remote %s %s, ICE %s, %.0f bytes sent, %.0f received",
			c.tab.name, p.Local.Type, p.Local.Addr(), p.Local.RelayProtocol, p.Remote.Type, p.Remote.Addr(), p.ICE,
			p.BytesSent, p.BytesReceived)
		if p.Local.Type != "relay" {
			t.Errorf("%s: the selected local candidate is %s (%s), want relay", c.tab.name, p.Local.Type, p.Local.Addr())
		} else if p.Local.Address != browserServerIP || p.Local.Port < s.minPort || p.Local.Port > s.maxPort {
			t.Errorf("%s: the relay candidate %s is not in Ferry's pool %s:%d-%d", c.tab.name,
				p.Local.Addr(), browserServerIP, s.minPort, s.maxPort)
		}
		if p.Remote.Type != "host" || p.Remote.Address != browserServerIP {
			t.Errorf("%s: the remote candidate is %s %s, want the SFU's host candidate on %s", c.tab.name,
				p.Remote.Type, p.Remote.Addr(), browserServerIP)
		}
	}

	// The page's own stats lines say the same, with data flowing.
	watcher.waitFor("a stats line with a relay candidate and a bitrate", 10*time.Second,
		`(() => { const p = document.querySelector('#streams .stats');
			return !!p && p.dataset.local === 'relay' && Number(p.dataset.kbps) > 0; })()`)
	publisher.waitFor("a stats line with a relay candidate and a bitrate", 10*time.Second,
		`(() => { const d = document.getElementById('pubStats').dataset;
			return d.local === 'relay' && Number(d.kbps) > 0; })()`)

	// The watcher names the stream as its publisher did; the publisher counts its viewer.
	watcher.waitFor("the stream's name on its tile", 5*time.Second,
		`document.querySelector('#streams .caption').textContent.startsWith(`+jsString(browserStreamName)+`)`)
	publisher.waitFor("one viewer", 5*time.Second,
		`document.getElementById('viewers').dataset.count === '1' &&
		document.getElementById('viewers').textContent === '1 viewer'`)
	watcher.screenshot(artifacts, "demo-watcher")
	publisher.screenshot(artifacts, "demo-publisher")

	// Ferry sees one stream with one subscriber: the publisher page does not watch itself.
	if n := browserEval[int](t, publisher, `window.ferryDemo.subscribers.size`); n != 0 {
		t.Errorf("publisher: watches %d streams, want none (its own stream is not watched)", n)
	}
	room := roomInfo(t, s, browserRoom)
	if len(room.Streams) != 1 || room.Streams[0].ID != ownStream || room.Streams[0].Subscribers != 1 {
		t.Errorf("rooms API: %+v; want stream %s with one subscriber", room, ownStream)
	}

	// The publisher leaves: the watcher says so, and its tile goes.
	publisher.click("leave")
	watcher.waitFor("the publisher left", 10*time.Second,
		`document.getElementById('status').textContent === `+jsString(browserStreamName+" left the room.")+` &&
		document.querySelectorAll('#streams .tile').length === 0`)
	watcher.screenshot(artifacts, "demo-watcher-after")
	if !t.Failed() {
		t.Logf("passed in %v", time.Since(start).Round(time.Millisecond))
	}
}

// browserPage is one Chromium process with one tab.
type browserPage struct {
	t    *testing.T
	name string
	ctx  context.Context // the tab's chromedp context; the browser lives as long as it
	out  *syncBuffer     // the browser's stdout and stderr

	mu     sync.Mutex
	events []string // uncaught exceptions and console errors of the page
}

// newBrowserPage starts a headless Chromium of its own (two processes make two users, and
// neither page is a background tab that Chromium throttles) and opens its tab. The test's
// cleanup kills it, after dumping the page's log when the test failed.
func newBrowserPage(t *testing.T, name, chromium, origin string) *browserPage {
	t.Helper()
	b := &browserPage{t: t, name: name, out: &syncBuffer{}}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// getUserMedia needs a secure context; the page is on plain http at a
		// documentation address.
		chromedp.Flag("unsafely-treat-insecure-origin-as-secure", origin),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(b.out),
		// With no user-data-dir chromedp makes a fresh one and removes it, after killing
		// any helper process left using it.
	)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	b.ctx = ctx

	// The first Run starts the browser; its context must not time out (that would stop the
	// browser later), so a start that hangs is cut off by canceling the tab instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("%s: starting %s: %v\n%s", name, chromium, err, browserOutput(b.out.String(), 60))
		}
	case <-time.After(30 * time.Second):
		cancelCtx()
		t.Fatalf("%s: %s did not start within 30 s:\n%s", name, chromium, browserOutput(b.out.String(), 60))
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			line = "uncaught: " + d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				line += " " + d.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeWarning {
				return
			}
			var args []string
			for _, a := range ev.Args {
				if a.Description != "" {
					args = append(args, a.Description)
				} else {
					args = append(args, string(a.Value))
				}
			}
			line = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
		default:
			return
		}
		b.mu.Lock()
		b.events = append(b.events, line)
		b.mu.Unlock()
	}); err != nil {
		t.Fatalf("%s: listening to the page: %v", name, err)
	}
	t.Cleanup(b.dumpIfFailed) // runs before the cleanup above kills the browser
	return b
}

// screenshot saves the page as dir/name.png and logs the path.
func (b *browserPage) screenshot(dir, name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	b.t.Logf("%s: screenshot %s", b.name, path)
}

// beforeLoad runs the script in every page the tab opens from now on, before the page's
// own scripts.
func (b *browserPage) beforeLoad(js string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, func(ctx context.Context, tab *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js})
		return chromedp.Void{}, err
	}); err != nil {
		b.t.Fatalf("%s: adding a script: %v", b.name, err)
	}
}

// open navigates the tab to u and waits for the page to load.
func (b *browserPage) open(u string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		b.t.Fatalf("%s: opening %s: %v", b.name, u, err)
	}
	if ok := browserEval[bool](b.t, b, `typeof window.ferryDemo === 'object' && window.ferryDemo !== null`); !ok {
		b.t.Fatalf("%s: the page at %s has no window.ferryDemo", b.name, u)
	}
}

// click sends a mouse click to the element with the id.
func (b *browserPage) click(id string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID(id))); err != nil {
		b.t.Fatalf("%s: clicking #%s: %v", b.name, id, err)
	}
}

// waitFor polls the JavaScript condition until it is true, failing the test after timeout,
// or at once when the page logs an error or a failure (the demo's log lines "error: ...",
// "... failed ...": a failed join, publish, subscription or ICE connection).
func (b *browserPage) waitFor(what string, timeout time.Duration, cond string) {
	b.t.Helper()
	expr := `(() => {
		const bad = ((window.ferryDemo && window.ferryDemo.log) || []).find((l) => /error: |\bfailed\b/.test(l));
		if (bad) return 'the page logged: ' + bad;
		return (` + cond + `) === true;
	})()`
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		v, err := browserTry[any](b, expr)
		if err == nil {
			if v == true {
				return
			}
			if why, ok := v.(string); ok {
				b.t.Fatalf("%s: waiting for %s: %s", b.name, what, why)
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			status, _ := browserTry[string](b, `document.getElementById('status').textContent`)
			b.t.Fatalf("%s: still waiting for %s after %v (page status %q, last error %v)", b.name, what, timeout, status, lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dumpIfFailed logs the page's window.ferryDemo.log, its status and stats lines, its uncaught
// exceptions and console errors, and the browser's own output, when the test failed.
func (b *browserPage) dumpIfFailed() {
	if !b.t.Failed() {
		return
	}
	state, err := browserTry[string](b, `JSON.stringify({
		status: document.getElementById('status').textContent,
		pubStats: document.getElementById('pubStats').textContent,
		streams: [...document.querySelectorAll('#streams .tile')].map((t) => t.textContent),
		log: (window.ferryDemo && window.ferryDemo.log) || [],
	}, null, 1)`)
	if err != nil {
		state = "(cannot read the page: " + err.Error() + ")"
	}
	b.mu.Lock()
	events := strings.Join(b.events, "\n")
	b.mu.Unlock()
	out := browserOutput(b.out.String(), 60)
	b.t.Logf("%s page state and window.ferryDemo.log:\n%s\n%s exceptions and console errors:\n%s\n%s browser output:\n%s",
		b.name, state, b.name, events, b.name, out)
}

// browserNoise marks the lines of Chromium's output that every run in a container prints:
// its wrapper script's shell warning, and no D-Bus and no sound card.
var browserNoise = []string{"unexpected operator", "dbus/", "ALSA lib", "alsa_util.cc"}

// browserOutput is the browser's output without the noise, its last max lines at most.
func browserOutput(out string, max int) string {
	var kept []string
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) != "" && !slices.ContainsFunc(browserNoise, func(n string) bool { return strings.Contains(l, n) }) {
			kept = append(kept, l)
		}
	}
	if len(kept) > max {
		kept = append([]string{fmt.Sprintf("(%d lines before)", len(kept)-max)}, kept[len(kept)-max:]...)
	}
	return strings.Join(kept, "\n")
}

// browserTry evaluates the expression in the page (awaiting a promise) and decodes its value.
func browserTry[T any](b *browserPage, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// browserEval is browserTry failing the test on error.
func browserEval[T any](t *testing.T, b *browserPage, expr string) T {
	t.Helper()
	v, err := browserTry[T](b, expr)
	if err != nil {
		t.Fatalf("%s: evaluating %s: %v", b.name, expr, err)
	}
	return v
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// browserCandidate is an RTCIceCandidateStats.
type browserCandidate struct {
	Type          string `json:"candidateType"`
	Address       string `json:"address"`
	Port          int    `json:"port"`
	Protocol      string `json:"protocol"`
	RelayProtocol string `json:"relayProtocol"`
}

func (c browserCandidate) Addr() string { return addrString(c.Address, c.Port) + "/" + c.Protocol }

// browserPair is the selected candidate pair of a connection, from getStats().
type browserPair struct {
	ICE           string           `json:"ice"`
	Error         string           `json:"error"`
	Local         browserCandidate `json:"local"`
	Remote        browserCandidate `json:"remote"`
	BytesSent     float64          `json:"bytesSent"`
	BytesReceived float64          `json:"bytesReceived"`
}

// selectedPair reads the selected candidate pair of the RTCPeerConnection pcExpr names:
// the transport's selectedCandidatePairId, or else the nominated pair that succeeded.
func selectedPair(t *testing.T, b *browserPage, pcExpr string) browserPair {
	t.Helper()
	js := `(async () => {
		const pc = ` + pcExpr + `;
		if (!pc) return { error: 'no such RTCPeerConnection' };
		const report = await pc.getStats();
		let pair = null;
		for (const s of report.values()) {
			if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
		}
		if (!pair) {
			for (const s of report.values()) {
				if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) pair = s;
			}
		}
		if (!pair) return { ice: pc.iceConnectionState, error: 'no selected candidate pair' };
		const c = (id) => { const s = report.get(id) || {};
			return { candidateType: s.candidateType || '', address: s.address || s.ip || '', port: s.port || 0,
				protocol: s.protocol || '', relayProtocol: s.relayProtocol || '' }; };
		return { ice: pc.iceConnectionState, local: c(pair.localCandidateId), remote: c(pair.remoteCandidateId),
			bytesSent: pair.bytesSent || 0, bytesReceived: pair.bytesReceived || 0 };
	})()`
	p := browserEval[browserPair](t, b, js)
	if p.Error != "" {
		t.Fatalf("%s: getStats: %s (ICE %s)", b.name, p.Error, p.ICE)
	}
	return p
}
