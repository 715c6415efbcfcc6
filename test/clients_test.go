package test

// The world of the other WebRTC stacks' tests (Firefox ESR, aiortc, werift): the NAT world
// of newNATWorld (two clients, each behind a masquerading router of its own, Ferry on the
// "internet"), where each client may send to nothing but Ferry's service ports: TURN on udp
// and tcp 3478 and tls 5349, the SFU's HTTP and the test's page server. The SFU's ICE port
// and the other client are out of reach, so every media path runs through Ferry's TURN,
// even for a client that cannot be told to relay (aiortc). Ferry is known by a host name,
// turn.ferry.test (Firefox refuses turns: by IP address), from an /etc/hosts of the world's
// own, with a certificate from a test CA the clients are told to trust.
//
// A client missing here skips its test loudly; FERRY_TEST_REQUIRE_CLIENTS=1 (CI) makes it a
// failure, and so a missing namespace prerequisite.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-rtc/ferry/auth"
)

const (
	// clientsRequireEnv turns a missing client (or netns prerequisite) into a failure.
	clientsRequireEnv = "FERRY_TEST_REQUIRE_CLIENTS"
	clientsHost       = "turn.ferry.test" // Ferry's name in the world
	clientsTLSPort    = 5349
	clientsSFUPort    = 8080
	clientsPagePort   = 8081 // the test's page server
	clientsRoom       = "clients"
	// clientsWeriftDirEnv names the directory werift is installed in (node_modules inside),
	// ~/.cache/ferry-test/werift by default; .ci/run installs it there.
	clientsWeriftDirEnv = "FERRY_TEST_WERIFT_DIR"
)

// clientsFilter lets a client namespace send only to Ferry's service ports.
var clientsFilter = fmt.Sprintf(`
table inet clients {
	chain out {
		type filter hook output priority 0; policy drop;
		oifname "lo" accept
		ip daddr %[1]s udp dport %[2]d accept
		ip daddr %[1]s tcp dport { %[2]d, %[3]d, %[4]d, %[5]d } accept
	}
}
`, natInternetIP, natTURNPort, clientsTLSPort, clientsSFUPort, clientsPagePort)

// clientsSkip skips the test loudly, or fails it when FERRY_TEST_REQUIRE_CLIENTS is set.
func clientsSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := "SKIPPED LOUDLY: " + fmt.Sprintf(format, args...) + "; " + t.Name() + " cannot run"
	if os.Getenv(clientsRequireEnv) != "" {
		t.Fatalf("%s (%s is set)", msg, clientsRequireEnv)
	}
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
}

// clientsRequire is called first by every test of another stack: it skips (or fails in CI)
// unless each check finds its client, and makes a missing namespace prerequisite fail too
// where the clients are required.
func clientsRequire(t *testing.T, checks ...func(*testing.T)) {
	t.Helper()
	if os.Getenv(netnsWorldEnv) == "" {
		for _, check := range checks {
			check(t)
		}
	}
	if os.Getenv(clientsRequireEnv) != "" && os.Getenv(netnsRequireEnv) == "" {
		t.Setenv(netnsRequireEnv, "1")
	}
}

// needProgram checks that a program is installed, naming its Debian package.
func needProgram(name, pkg string) func(*testing.T) {
	return func(t *testing.T) {
		t.Helper()
		if _, err := exec.LookPath(name); err != nil {
			clientsSkip(t, "%s not installed (apt-get install -y %s)", name, pkg)
		}
	}
}

// clientsWorld is a running world of newClientsWorld: Ferry, the page server, the CA.
type clientsWorld struct {
	*netnsWorld
	s      *setup
	ferry  *ferry
	pages  *pageServer
	caFile string // PEM of the test CA that signed Ferry's certificate
	sfu    string // the SFU's base URL
}

// newClientsWorld builds the world and starts Ferry in it: udp and tcp TURN on 3478, tls
// on 5349, the SFU, all on natInternetIP, with server.name turn.ferry.test so that the Link
// headers name it; and the test's page server on port 8081.
func newClientsWorld(t *testing.T) *clientsWorld {
	t.Helper()
	w := &clientsWorld{netnsWorld: newNATWorld(t)}
	for _, ns := range []string{natClientA, natClientB} {
		nft := w.command(ns, "nft", "-f", "-")
		nft.Stdin = strings.NewReader(clientsFilter)
		if out, err := nft.CombinedOutput(); err != nil {
			t.Fatalf("nft in %s: %v\n%s", ns, err, out)
		}
	}
	w.useHosts(natInternetIP + " " + clientsHost + "\n")
	dir := t.TempDir()
	var cert, key string
	w.caFile, cert, key = writeTestCA(t, dir, clientsHost)

	s, turnAddr := natSetup(t)
	s.listeners = append(s.listeners, listenSpec{proto: "tcp", addr: turnAddr},
		listenSpec{proto: "tls", addr: addrString(natInternetIP, clientsTLSPort), cert: cert, key: key})
	s.sfuAddr = addrString(natInternetIP, clientsSFUPort)
	s.tokenSecret = sfuTokenSecret
	w.s, w.sfu = s, "http://"+s.sfuAddr
	w.ferry = startFerry(t, withServerName(s.toml(), clientsHost))
	w.pages = newPageServer(t, addrString(natInternetIP, clientsPagePort))
	return w
}

// useHosts makes the world's /etc/hosts hold the lines: a file bind-mounted over it in the
// world's own mount namespace, gone with the world.
func (w *clientsWorld) useHosts(lines string) {
	w.t.Helper()
	path := filepath.Join(w.t.TempDir(), "hosts")
	if err := os.WriteFile(path, []byte("127.0.0.1 localhost\n"+lines), 0o644); err != nil {
		w.t.Fatal(err)
	}
	if err := unix.Mount(path, "/etc/hosts", "", unix.MS_BIND, ""); err != nil {
		w.t.Fatalf("bind-mounting a hosts file of the world's own: %v", err)
	}
}

// iceServer is an RTCIceServer as the pages and scripts take it.
type iceServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username"`
	Credential string   `json:"credential"`
}

// turnServer is one of Ferry's TURN URLs (transport udp, tcp or tls) with a REST
// credential minted for user, as an application server hands them out.
func (w *clientsWorld) turnServer(transport, user string) iceServer {
	username, password := auth.RESTCredential(testSecret, user, time.Hour, time.Now())
	u := fmt.Sprintf("turn:%s:%d?transport=%s", clientsHost, natTURNPort, transport)
	if transport == "tls" {
		u = fmt.Sprintf("turns:%s:%d?transport=tcp", clientsHost, clientsTLSPort)
	}
	return iceServer{URLs: []string{u}, Username: username, Credential: password}
}

// relayedSessions waits until the SFU has want sessions in the room, all connected through
// one of Ferry's relays, and returns them.
func (w *clientsWorld) relayedSessions(want int, timeout time.Duration) []sfuSummary {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		list := sessionsAll(w.t, w.s, "--room", clientsRoom)
		relayed := 0
		for _, sess := range list.SFU {
			if sess.State == "connected" && sess.Relayed {
				relayed++
			}
		}
		if len(list.SFU) == want && relayed == want {
			return list.SFU
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the SFU's sessions are not %d connected and relayed after %v: %+v", want, timeout, list.SFU)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeTestCA writes a test CA and a certificate it signs for host, valid for an hour, as
// PEM files in dir: the CA's certificate, the host's certificate and its key.
func writeTestCA(t *testing.T, dir, host string) (caFile, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, hostKey := newKey(), newKey()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Ferry test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &hostKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: leafDER},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// pageServer serves the browser pages of test/clients and takes what they send back: their
// reports (POST /report/WHO/KEY), their log lines (POST /log/WHO), and the messages two
// pages of a call exchange (POST and GET /mail/WHO: a queue per page, 204 when empty).
type pageServer struct {
	t    *testing.T
	base string // http://ADDR

	mu      sync.Mutex
	reports map[string]string // "WHO/KEY" → value
	logs    []string
	mail    map[string][]string
}

func newPageServer(t *testing.T, addr string) *pageServer {
	t.Helper()
	ps := &pageServer{t: t, base: "http://" + addr, reports: map[string]string{}, mail: map[string][]string{}}
	mux := http.NewServeMux()
	mux.Handle("GET /clients/", http.StripPrefix("/clients/", http.FileServer(http.Dir("clients"))))
	mux.HandleFunc("POST /report/{who}/{key}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ps.mu.Lock()
		ps.reports[r.PathValue("who")+"/"+r.PathValue("key")] = string(body)
		ps.logs = append(ps.logs, r.PathValue("who")+": "+r.PathValue("key")+" = "+string(body))
		ps.mu.Unlock()
	})
	mux.HandleFunc("POST /log/{who}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ps.mu.Lock()
		ps.logs = append(ps.logs, r.PathValue("who")+": "+string(body))
		ps.mu.Unlock()
	})
	mux.HandleFunc("POST /mail/{who}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ps.mu.Lock()
		ps.mail[r.PathValue("who")] = append(ps.mail[r.PathValue("who")], string(body))
		ps.mu.Unlock()
	})
	mux.HandleFunc("GET /mail/{who}", func(w http.ResponseWriter, r *http.Request) {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		queue := ps.mail[r.PathValue("who")]
		if len(queue) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		ps.mail[r.PathValue("who")] = queue[1:]
		_, _ = io.WriteString(w, queue[0])
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("page server: %v", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
		if t.Failed() {
			t.Logf("what the pages said:\n%s", ps.log())
		}
	})
	return ps
}

func (ps *pageServer) log() string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return strings.Join(ps.logs, "\n")
}

// page is the URL of a page of test/clients with the parameters.
func (ps *pageServer) page(file string, params url.Values) string {
	return ps.base + "/clients/" + file + "?" + params.Encode()
}

// waitFor waits for page who's report key and returns it; the test fails when the page
// reports an error first, or after timeout.
func (ps *pageServer) waitFor(who, key string, timeout time.Duration) string {
	ps.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ps.mu.Lock()
		v, ok := ps.reports[who+"/"+key]
		bad, failed := ps.reports[who+"/error"]
		ps.mu.Unlock()
		switch {
		case ok:
			return v
		case failed:
			ps.t.Fatalf("%s failed while the test waited for its %s: %s", who, key, bad)
		case time.Now().After(deadline):
			ps.t.Fatalf("%s did not report %s within %v", who, key, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitJSON is waitFor decoding the report into v.
func (ps *pageServer) waitJSON(who, key string, timeout time.Duration, v any) {
	ps.t.Helper()
	raw := ps.waitFor(who, key, timeout)
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		ps.t.Fatalf("%s's %s: %v: %s", who, key, err, raw)
	}
}

// jsonString is v as JSON, for a page parameter.
func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runQuiet runs a program to completion, for a prerequisite check; its output goes into
// the error.
func runQuiet(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// checkAllocation fails the test unless Ferry holds an allocation of the user (a REST
// credential's user part) made over transport (udp, tcp or tls) that relays packets to a
// peer: the client's TURN path as Ferry sees it.
func (w *clientsWorld) checkAllocation(user, transport string) {
	w.t.Helper()
	var seen []string
	for _, a := range sessionsAll(w.t, w.s).TURN {
		if a.User == user || strings.HasSuffix(a.User, ":"+user) {
			if a.Transport == transport && a.ToPeerPackets > 0 {
				return
			}
			seen = append(seen, fmt.Sprintf("%s (%d packets to peers)", a.Transport, a.ToPeerPackets))
		}
	}
	w.t.Errorf("no allocation of %s over %s relays packets; its allocations: %v", user, transport, seen)
}

// checkNoAllocation fails the test if Ferry holds an allocation of the user made over
// transport: a client given a second TURN URL that does not use it.
func (w *clientsWorld) checkNoAllocation(user, transport string) {
	w.t.Helper()
	for _, a := range sessionsAll(w.t, w.s).TURN {
		if (a.User == user || strings.HasSuffix(a.User, ":"+user)) && a.Transport == transport {
			w.t.Errorf("%s has an allocation over %s (%s): it used a TURN URL past its first", user, transport, a.Relay)
		}
	}
}
