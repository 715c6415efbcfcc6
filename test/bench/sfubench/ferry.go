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

// ferryConfig is Ferry with its TURN listener and SFU on 127.0.0.1 and nothing else: no
// metrics or admin endpoint, no self-test, no quotas or rate limits (every subscriber
// comes from 127.0.0.1, most with the same token), and a drain that ends at once; the
// profiler on pprof when it is not "".
func ferryConfig(turnPort, httpPort int, pprof string) string {
	return fmt.Sprintf(`[server]
drain_timeout = "0s"

[[listen]]
proto = "udp"
addr = "%[1]s:%[2]d"

[relay]
bind_ip = %[1]q
public_ip = %[1]q
min_port = %[3]d
max_port = %[4]d
allow_peers = ["%[1]s/32"]

[auth]
users_file = ""
secrets = [%[5]q]

[limits]
allocations_per_user = 0
allocations_total = 0
unauthenticated_per_ip_rate = 0
binding_per_ip_rate = 0

[sfu]
enabled = true
http = "%[1]s:%[6]d"
token_secret = %[7]q
self_test = false
sessions_per_token = 0
sessions_per_ip = 0
feeds_per_token = 0
feeds_per_ip = 0

[metrics]
listen = ""

[admin]
listen = ""

[log]
level = "warn"

[debug]
pprof = %[8]q
`, host, turnPort, minRelayPort, maxRelayPort, turnSecret, httpPort, tokenSecret, pprof)
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
