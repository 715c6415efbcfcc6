package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/ferry-rtc/ferry/test/bench/benchproc"
)

const (
	// tokenSecret signs the SFU access tokens the benchmark mints: Ferry's
	// sfu.token_secret.
	tokenSecret = "sfubench-token-secret-0123456789"
	// turnSecret is the TURN REST secret of the credentials in the SFU's Link headers.
	turnSecret = "sfubench-turn-secret"
	// The relay range lies below Linux's ephemeral ports (32768 and up), where the
	// benchmark's own sockets are bound, so that no client socket holds a relay port.
	minRelayPort = 10000
	maxRelayPort = 19999
)

// ferryConfig is benchproc's SFU benchmark Ferry on 127.0.0.1, without metrics, with the
// profiler on pprof when it is not "".
func ferryConfig(turnPort, httpPort int, pprof string) string {
	f := benchproc.FerrySFU{Host: host, TURNPort: turnPort, HTTPPort: httpPort, MinRelay: minRelayPort,
		MaxRelay: maxRelayPort, TURNSecret: turnSecret, TokenSecret: tokenSecret}
	return f.Config() + fmt.Sprintf("\n[debug]\npprof = %q\n", pprof)
}

// ferry is a running ferry process.
type ferry struct {
	proc   *benchproc.Process
	sfuURL string // http://127.0.0.1:port
}

// startFerry starts bin in its own directory under dir, with its profiler on pprof if not
// "", and waits until its SFU answers.
func startFerry(ctx context.Context, bin, dir, pprof string) (*ferry, error) {
	// The TURN listener takes its port on UDP, the SFU's HTTP endpoint on TCP.
	turnPort, err := benchproc.FreePort(host)
	if err != nil {
		return nil, err
	}
	httpPort, err := benchproc.FreePort(host)
	if err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "ferry.toml")
	if err := os.WriteFile(config, []byte(ferryConfig(turnPort, httpPort, pprof)), 0o600); err != nil {
		return nil, fmt.Errorf("ferry config: %w", err)
	}
	f := &ferry{sfuURL: "http://" + net.JoinHostPort(host, strconv.Itoa(httpPort))}
	cmd := exec.Command(bin, "serve", "--config", config)
	if f.proc, err = benchproc.Start("ferry", cmd, filepath.Join(dir, "output")); err != nil {
		return nil, err
	}
	// Ready when the SFU's HTTP endpoint answers.
	err = f.proc.WaitReady(ctx, "HTTP answer", func() error {
		resp, err := httpClient.Get(f.sfuURL + "/api/rooms/ready")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (f *ferry) pid() int { return f.proc.Pid() }

// stop ends ferry with SIGTERM (its drain_timeout is 0s: it exits at once) and kills it if
// it has not exited after 10 seconds.
func (f *ferry) stop() error { return f.proc.Stop() }
