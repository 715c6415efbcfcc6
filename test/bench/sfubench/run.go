package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/test/bench/benchproc"
)

const (
	modeDirect = "direct"
	modeRelay  = "relay"
)

// result is what one run measured.
type result struct {
	mode      string
	n         int
	connected int
	err       error
	wall      time.Duration // the measured window
	ferryCPU  time.Duration
	benchCPU  time.Duration // this program's, over the same window
	forwarded int           // distinct RTP packets the subscribers received in the window
	expected  int           // by sequence numbers, over every subscriber's tracks
	lost      int
	worstLoss float64 // the worst subscriber's loss, a fraction
	p50, p99  time.Duration
}

func (r result) summary() string {
	if r.err != nil {
		return "FAILED: " + r.err.Error()
	}
	return fmt.Sprintf("%d/%d subscribers, %d packets, %.2f µs/packet, loss %.3f%%, latency p50 %s p99 %s",
		r.connected, r.n, r.forwarded, r.usPerPacket(), r.lossPercent(), r.p50, r.p99)
}

// usPerPacket is Ferry's CPU time per forwarded packet, microseconds.
func (r result) usPerPacket() float64 {
	if r.forwarded == 0 {
		return 0
	}
	return float64(r.ferryCPU.Microseconds()) / float64(r.forwarded)
}

func (r result) lossPercent() float64 {
	if r.expected == 0 {
		return 0
	}
	return 100 * float64(r.lost) / float64(r.expected)
}

// measure runs one (mode, N): a fresh ferry, the publisher, N subscribers, the window.
func measure(ctx context.Context, opts options, ferryBin, dir, mode string, n int) (r result) {
	r = result{mode: mode, n: n}
	f, err := startFerry(ctx, ferryBin, dir, opts.pprof)
	if err != nil {
		r.err = err
		return r
	}
	sending, stopSending := context.WithCancel(ctx)
	pub, subs, err := connect(sending, opts, f, mode, n)
	defer func() {
		stopSending()
		// Ferry first: the peers' goodbyes would only cost it CPU for nothing.
		if err := f.stop(); err != nil && r.err == nil {
			r.err = err
		}
		closeAll(pub, subs)
	}()
	r.connected = len(subs)
	if err == nil {
		err = sleep(ctx, opts.warmup)
	}
	if err == nil {
		err = window(ctx, opts.duration, f, pub, subs, &r)
	}
	r.err = err
	return r
}

// connect starts the publisher, sending until ctx ends, and attaches n subscribers. It
// returns the peers it made even when it fails, for the caller to close.
func connect(ctx context.Context, opts options, f *ferry, mode string, n int) (*publisher, []*subscriber, error) {
	pubAPI, err := newAPI(true)
	if err != nil {
		return nil, nil, err
	}
	subAPI, err := newAPI(false)
	if err != nil {
		return nil, nil, err
	}
	pubCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	pub, err := publish(pubCtx, pubAPI, f.sfuURL, room)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	go pub.run(ctx, opts.bitrate)
	var relayVia []webrtc.ICEServer
	if mode == modeRelay {
		if relayVia, err = relayServers(ctx, subAPI, f.sfuURL); err != nil {
			return pub, nil, err
		}
	}
	subs, err := attach(ctx, opts, subAPI, f.sfuURL, n, relayVia)
	return pub, subs, err
}

// relayServers are the TURN servers of a WHEP answer's Link headers. pion fixes its
// candidate policy when it makes its offer, before the answer can tell it the servers (a
// browser applies them later), so one WHEP session is opened and deleted to learn them,
// the way an application server would hand them out in advance. Their credential is that
// session's, which Ferry revokes when the session ends, so the subscribers get a TURN REST
// credential of the benchmark's own instead, as an application server would mint one. Only
// servers on host are taken: no packet may leave loopback.
func relayServers(ctx context.Context, api *webrtc.API, sfuURL string) ([]webrtc.ICEServer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("WHEP probe: %w", err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return nil, fmt.Errorf("WHEP probe: %w", err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("WHEP probe: %w", err)
	}
	bearer, err := token(room, false)
	if err != nil {
		return nil, err
	}
	_, sess, err := post(ctx, sfuURL+"/whep/"+room, bearer, offer.SDP)
	if err != nil {
		return nil, fmt.Errorf("WHEP probe: %w", err)
	}
	if err := sess.request(ctx, http.MethodDelete, "", http.StatusOK); err != nil {
		return nil, fmt.Errorf("WHEP probe: %w", err)
	}
	servers, err := iceServers(sess.links)
	if err != nil {
		return nil, err
	}
	var turn []webrtc.ICEServer
	user, pass := auth.RESTCredential(turnSecret, "sfubench", time.Hour, time.Now())
	for _, srv := range servers {
		srv.Username, srv.Credential = user, pass
		uri, err := stun.ParseURI(srv.URLs[0])
		if err != nil {
			return nil, fmt.Errorf("link header %s: %w", srv.URLs[0], err)
		}
		if uri.Host != host {
			return nil, fmt.Errorf("link header %s: not on %s", srv.URLs[0], host)
		}
		if uri.Scheme == stun.SchemeTypeTURN && uri.Proto == stun.ProtoTypeUDP {
			turn = append(turn, srv)
		}
	}
	if len(turn) == 0 {
		return nil, fmt.Errorf("no turn: UDP server in the Link headers %q", sess.links)
	}
	return turn, nil
}

// attach connects n subscribers, opts.parallel at a time, within opts.connectTimeout. It
// returns those that receive, and an error if any did not.
func attach(ctx context.Context, opts options, api *webrtc.API, sfuURL string, n int, relayVia []webrtc.ICEServer) ([]*subscriber, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.connectTimeout)
	defer cancel()
	var (
		mu   sync.Mutex
		subs []*subscriber
		errs []error
		wg   sync.WaitGroup
	)
	slots := make(chan struct{}, opts.parallel)
	for range n {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			s, err := subscribe(ctx, api, sfuURL, room, relayVia)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			subs = append(subs, s)
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return subs, fmt.Errorf("%d of %d subscribers did not connect: %w", len(errs), n, errs[0])
	}
	return subs, nil
}

// window measures for d: Ferry's and this program's CPU time, and what the subscribers
// received.
func window(ctx context.Context, d time.Duration, f *ferry, pub *publisher, subs []*subscriber, r *result) error {
	ferry0, err := benchproc.CPUTime(f.pid())
	if err != nil {
		return err
	}
	bench0, err := benchproc.CPUTime(os.Getpid())
	if err != nil {
		return err
	}
	start := time.Now()
	measuring.Store(true)
	slept := sleep(ctx, d)
	measuring.Store(false)
	r.wall = time.Since(start)
	ferry1, err := benchproc.CPUTime(f.pid())
	if err != nil {
		return err
	}
	bench1, err := benchproc.CPUTime(os.Getpid())
	if err != nil {
		return err
	}
	r.ferryCPU, r.benchCPU = ferry1-ferry0, bench1-bench0
	collect(pub, subs, r)
	return slept
}

// collect sums up what the subscribers received in the window.
func collect(pub *publisher, subs []*subscriber, r *result) {
	var latencies []int64
	for _, s := range subs {
		var expected, lost int
		for _, t := range []struct {
			stats *trackStats
			sent  int64
		}{{&s.video, pub.videoSent.Load()}, {&s.audio, pub.audioSent.Load()}} {
			sum := t.stats.summary(int(t.sent))
			expected, lost = expected+sum.expected, lost+sum.lost
			r.forwarded += sum.received
			latencies = append(latencies, sum.latencies...)
		}
		r.expected, r.lost = r.expected+expected, r.lost+lost
		if expected > 0 {
			r.worstLoss = max(r.worstLoss, float64(lost)/float64(expected))
		}
	}
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	r.p50 = time.Duration(latencies[len(latencies)/2])
	r.p99 = time.Duration(latencies[len(latencies)*99/100])
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
}

// closeAll closes the publisher and the subscribers, a few at a time.
func closeAll(pub *publisher, subs []*subscriber) {
	var peers []*webrtc.PeerConnection
	if pub != nil {
		peers = append(peers, pub.pc)
	}
	for _, s := range subs {
		peers = append(peers, s.pc)
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, 16)
	for _, pc := range peers {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			_ = pc.Close()
		})
	}
	wg.Wait()
}
