package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

type latencyResult struct {
	server   string
	round    int
	p50, p99 time.Duration
	lost     int
	u        usage // while the round trips ran
}

// latencyRounds measures each server's round trips, in rounds in which they take turns.
func (b *bench) latencyRounds() error {
	for round := 1; round <= b.o.rounds; round++ {
		for _, s := range b.all {
			r, err := b.latencyRun(s)
			if err != nil {
				return fmt.Errorf("latency %s round %d: %w", s.name, round, err)
			}
			r.round = round
			fmt.Fprintf(os.Stderr, "latency round %d %-16s p50 %v p99 %v lost %d, other CPU %.3f s (%.1f %% of %.1f s)\n",
				round, s.name, r.p50, r.p99, r.lost, r.u.otherAll, 100*r.u.otherAll/r.u.wall, r.u.wall)
			b.latency = append(b.latency, r)
		}
	}
	return nil
}

// latency relays o.pings messages of 200 bytes one at a time through s with a pion/turn
// client to the echo peer and returns the 50th and 99th percentile round trips.
func (b *bench) latencyRun(s server) (latencyResult, error) {
	res := latencyResult{server: s.name}
	run, err := b.start(s, b.runDir(s, "latency"), true)
	if err != nil {
		return res, err
	}
	defer run.stop()
	b.acct.waitQuiet()
	conn, err := net.ListenPacket("udp4", cliIP+":0")
	if err != nil {
		return res, err
	}
	defer conn.Close()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: srvIP + ":3478", TURNServerAddr: srvIP + ":3478",
		Conn: conn, Username: user, Password: pass, Realm: realm, LoggerFactory: lf})
	if err != nil {
		return res, err
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return res, err
	}
	rc, err := c.Allocate()
	if err != nil {
		return res, err
	}
	defer rc.Close()
	to := &net.UDPAddr{IP: net.ParseIP(peerIP), Port: 3480}
	msg, buf := make([]byte, 200), make([]byte, 1500)
	var rtts []time.Duration
	r0, err := b.acct.read()
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < b.o.pings+100 && ctx.Err() == nil; i++ {
		msg[0], msg[1] = byte(i), byte(i>>8)
		t0 := time.Now()
		if _, err := rc.WriteTo(msg, to); err != nil {
			return res, err
		}
		_ = rc.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := rc.ReadFrom(buf)
			if err != nil {
				if i >= 100 {
					res.lost++
				}
				break
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
	r1, err := b.acct.read()
	if err != nil {
		return res, err
	}
	res.u = b.acct.window(r0, r1)
	if len(rtts) == 0 {
		return res, errNoEcho
	}
	slices.Sort(rtts)
	res.p50, res.p99 = rtts[len(rtts)/2], rtts[len(rtts)*99/100]
	return res, nil
}
