package server

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-rtc/ferry/conf"
)

// lockedBuffer is a log sink for the server's goroutines and the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCloseStopsSelfTest: the self-test's goroutine belongs to the server: Close ends it,
// mid-probe, and waits for it, rather than leaving it to log a failure after the stop. The
// advertised address is a loopback one nothing listens on, so the probes wait.
func TestCloseStopsSelfTest(t *testing.T) {
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	_ = probe.Close()
	cfg, err := conf.Parse("selftest.toml", []byte(fmt.Sprintf(`
[[listen]]
proto = "udp"
addr = "127.0.0.1:%d"
[relay]
bind_ip = "127.0.0.1"
public_ip = "127.0.0.2"
min_port = 32000
max_port = 32009
[auth]
users_file = ""
secrets = ["self-test-secret"]
[sfu]
http = "127.0.0.1:0"
token_secret = "self-test-token-secret"
[metrics]
listen = ""
[admin]
listen = ""
`, port)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	level := &slog.LevelVar{}
	level.Set(slog.LevelDebug)
	s, err := Start(Options{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})),
		Level: level, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	// The relayed publish is done when the SFU has its session; the probes run then.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "sfu: publishing"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the self-test did not publish:\n%s", logs)
		}
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= reachTimeout {
		t.Errorf("Close took %s: it waited for the probes instead of stopping them", took)
	}
	if got := logs.String(); !strings.Contains(got, `msg="self-test stopped`) || strings.Contains(got, "self-test failed") {
		t.Errorf("after Close the log has no \"self-test stopped\", or a failure:\n%s", got)
	}
}
