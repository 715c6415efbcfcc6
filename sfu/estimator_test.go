package sfu

import (
	"math/rand/v2"
	"testing"
	"time"
)

// simLink is a bottleneck in virtual time: a drop-tail queue that holds at most buffer of
// transmission time, in front of a link of rate bits/s (0: unlimited), then a fixed delay
// and, optionally, jitter (which never reorders: a packet arrives no earlier than the one
// before it).
type simLink struct {
	rate      float64
	buffer    time.Duration
	delay     time.Duration
	jitter    time.Duration // uniform in [0, jitter)
	loss      float64       // random loss on top of the queue's
	rng       *rand.Rand
	busyUntil time.Duration
	lastArr   time.Duration
	drops     int
}

// send is a packet of size bytes entering the link at at: its arrival, or false if lost.
func (l *simLink) send(at time.Duration, size int) (time.Duration, bool) {
	if l.loss > 0 && l.rng.Float64() < l.loss {
		l.drops++
		return 0, false
	}
	out := at
	if l.rate > 0 {
		start := max(at, l.busyUntil)
		if start-at > l.buffer {
			l.drops++
			return 0, false
		}
		l.busyUntil = start + time.Duration(float64(size*8)/l.rate*float64(time.Second))
		out = l.busyUntil
	}
	arr := out + l.delay
	if l.jitter > 0 {
		arr += time.Duration(l.rng.Int64N(int64(l.jitter)))
	}
	arr = max(arr, l.lastArr)
	l.lastArr = arr
	return arr, true
}

// sim sends video frames at 30 fps through a simLink and gives the estimator transport-cc
// feedback every 100 ms, as a receiver would: every packet up to the last one arrived,
// those missing lost. The feedback reaches the sender after the link's delay.
type sim struct {
	t        *testing.T
	e        *estimator
	link     *simLink
	now      time.Duration // sender clock
	rate     float64       // media bits/s
	keyEvery int           // a keyframe five times a frame's size every keyEvery frames (0: none)
	frame    int
	pending  []pktResult // sent, not yet reported
	nextFB   time.Duration
	skew     time.Duration // receiver clock minus sender clock
	outcomes []probeOutcome
	padded   int // padding bytes sent
	lostPad  int // padding packets lost
	lostData int // media packets lost
	padStop  time.Duration
}

func newSim(t *testing.T, link *simLink, rate float64) *sim {
	if link.rng == nil {
		link.rng = rand.New(rand.NewPCG(1, 2))
	}
	return &sim{t: t, e: &estimator{}, link: link, rate: rate, skew: 1000 * time.Second, nextFB: 100 * time.Millisecond}
}

const frameTime = time.Second / 30

// run advances the simulation by d, a frame at a time.
func (s *sim) run(d time.Duration) {
	for end := s.now + d; s.now < end; s.now += frameTime {
		bytes := int(s.rate / 8 / 30)
		if s.keyEvery > 0 && s.frame%s.keyEvery == 0 {
			bytes *= 5
		}
		s.frame++
		for bytes > 0 {
			n := min(bytes, 1200)
			if !s.packet(n) {
				s.lostData++
			}
			bytes -= n
		}
		if s.e.probing(s.now) {
			pad := int((s.e.probe.target - s.rate) / 8 / 30)
			for ; pad > 0; pad -= padBytes {
				if !s.packet(padBytes) {
					s.lostPad++
				}
				s.padded += padBytes
			}
			s.padStop = s.now
		}
		for s.nextFB <= s.now+frameTime {
			s.feedback(s.nextFB)
			s.nextFB += 100 * time.Millisecond
		}
	}
}

func (s *sim) packet(size int) bool {
	arr, ok := s.link.send(s.now, size)
	s.pending = append(s.pending, pktResult{sent: s.now, arrived: arr + s.skew, size: size, received: ok})
	return ok
}

// feedback reports, at receiver time at, the packets up to the last one arrived by then.
func (s *sim) feedback(at time.Duration) {
	last := -1
	for i, r := range s.pending {
		if r.received && r.arrived-s.skew <= at {
			last = i
		}
	}
	if last < 0 {
		return
	}
	results := s.pending[:last+1]
	s.pending = append([]pktResult(nil), s.pending[last+1:]...)
	if o := s.e.update(at+s.link.delay, results); o != probeNone {
		s.outcomes = append(s.outcomes, o)
	}
}

// firstDecrease runs until the estimator first sets a rate, for at most limit; it returns
// the time that took.
func (s *sim) firstDecrease(limit time.Duration) time.Duration {
	start := s.now
	for s.e.rate == 0 && s.now-start < limit {
		s.run(frameTime)
	}
	if s.e.rate == 0 {
		s.t.Fatalf("no decrease within %v (queue %.1f ms, use %d, loss %.2f)", limit, s.e.queue, s.e.use, s.e.loss)
	}
	return s.now - start
}

// TestEstimatorOveruse: more than a bottleneck carries is overuse within half a second, and
// the estimate lands near what it carries: 1.2 Mbit/s into 600 kbit/s with 100 ms of buffer
// (which overflows), and with 400 ms (where the delay must tell before any loss); 750 kbit/s
// into 600 kbit/s grows the queue slowly, and is seen within a second and a half.
func TestEstimatorOveruse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rate   float64
		buffer time.Duration
		within time.Duration
		noLoss bool
	}{
		{"heavy", 1_200_000, 100 * time.Millisecond, 500 * time.Millisecond, false},
		{"deep buffer", 1_200_000, 400 * time.Millisecond, 500 * time.Millisecond, true},
		{"mild", 750_000, 400 * time.Millisecond, 1500 * time.Millisecond, true},
	} {
		s := newSim(t, &simLink{delay: 20 * time.Millisecond}, tc.rate)
		s.keyEvery = 90
		s.run(time.Second) // an unlimited path first
		s.link.rate, s.link.buffer, s.link.busyUntil = 600_000, tc.buffer, s.now
		took := s.firstDecrease(3 * time.Second)
		if took > tc.within {
			t.Errorf("%s: overuse seen after %v, want within %v", tc.name, took, tc.within)
		}
		if r := s.e.rate; r < 400_000 || r > 650_000 {
			t.Errorf("%s: estimate %.0f after overuse, want about 0.85 × 600k", tc.name, r)
		}
		if tc.noLoss && s.link.drops > 0 {
			t.Errorf("%s: %d packets lost before the overuse was seen", tc.name, s.link.drops)
		}
		t.Logf("%s: overuse after %v (queue %.0f ms, loss %.2f), estimate %.0f bit/s, %d packets lost at the bottleneck",
			tc.name, took, s.e.queue, s.e.loss, s.e.rate, s.link.drops)
	}
}

// TestEstimatorQuiet: what fits is never taken for overuse, for 30 s: 400 kbit/s with
// keyframes five frames large (a 110 ms burst at the bottleneck) through 600 kbit/s, and
// 1.2 Mbit/s over a fast path whose delay varies by up to 20 ms from packet to packet (30 ms
// does raise false alarms: the thresholds are fixed, not adapted to the path's jitter).
func TestEstimatorQuiet(t *testing.T) {
	for name, s := range map[string]*sim{
		"keyframes": func() *sim {
			s := newSim(t, &simLink{rate: 600_000, buffer: 200 * time.Millisecond, delay: 20 * time.Millisecond}, 400_000)
			s.keyEvery = 60
			return s
		}(),
		"jitter": newSim(t, &simLink{delay: 20 * time.Millisecond, jitter: 20 * time.Millisecond}, 1_200_000),
	} {
		s.run(30 * time.Second)
		if s.e.rate != 0 || s.e.decreased {
			t.Errorf("%s: the estimate fell to %.0f (queue %.1f ms)", name, s.e.rate, s.e.queue)
		}
	}
}

// TestEstimatorLoss: 20% random loss with no queue cuts the estimate to (1 - loss/2) of
// what arrives, about 0.9 × 640 kbit/s of the 800 sent.
func TestEstimatorLoss(t *testing.T) {
	s := newSim(t, &simLink{delay: 20 * time.Millisecond, loss: 0.2}, 800_000)
	took := s.firstDecrease(time.Second)
	s.run(3 * time.Second)
	if r := s.e.rate; r > 0.92*640_000 || r < 0.7*640_000 {
		t.Errorf("estimate %.0f with 20%% loss of 800 kbit/s, want about 0.9 × 640k", r)
	}
	t.Logf("cut after %v; three seconds later %.0f", took, s.e.rate)
}

// TestEstimatorCap: once limited, an estimate grows no further than 1.5 times what the
// subscriber receives: sending 350 kbit/s teaches nothing about a faster link.
func TestEstimatorCap(t *testing.T) {
	s := newSim(t, &simLink{delay: 20 * time.Millisecond}, 350_000)
	s.run(time.Second)
	s.e.rate = 400_000
	s.run(20 * time.Second)
	if r := s.e.rate; r > 1.5*350_000+10_000 || r < 400_000 {
		t.Errorf("estimate %.0f after 20 s of 350 kbit/s from 400k, want at most 1.5 × 350k", r)
	}
	s.e.rate = 900_000 // above the cap already: not cut for it
	s.run(5 * time.Second)
	if s.e.rate != 900_000 {
		t.Errorf("estimate %.0f, want 900k kept", s.e.rate)
	}
}

// TestEstimatorProbe: a probe toward 1.65 Mbit/s from a subscriber sent 350 kbit/s succeeds
// on a fast path and raises the estimate to what arrived; through 600 kbit/s it fails, its
// padding stops within 300 ms, and the estimate stays what it was before the probe.
func TestEstimatorProbe(t *testing.T) {
	for _, tc := range []struct {
		name string
		link *simLink
		want probeOutcome
	}{
		{"fast", &simLink{delay: 20 * time.Millisecond}, probeSucceeded},
		{"limited", &simLink{rate: 600_000, buffer: 100 * time.Millisecond, delay: 20 * time.Millisecond}, probeFailed},
	} {
		s := newSim(t, tc.link, 350_000)
		s.run(2 * time.Second)
		s.e.rate = 510_000
		start := s.now
		s.e.startProbe(s.now, 1_650_000)
		for len(s.outcomes) == 0 && s.now-start < 3*time.Second {
			s.run(frameTime)
			if tc.want == probeFailed && s.now-start > 300*time.Millisecond && s.e.probing(s.now) {
				t.Fatalf("%s: still padding %v after the probe began", tc.name, s.now-start)
			}
		}
		if len(s.outcomes) != 1 || s.outcomes[0] != tc.want {
			t.Fatalf("%s: outcomes %v, want [%d]", tc.name, s.outcomes, tc.want)
		}
		switch tc.want {
		case probeSucceeded:
			if s.e.rate < 1_500_000 {
				t.Errorf("%s: estimate %.0f after a successful probe, want at least 1.5M", tc.name, s.e.rate)
			}
		case probeFailed:
			if s.e.rate != 510_000 {
				t.Errorf("%s: estimate %.0f after a failed probe, want the 510k it was", tc.name, s.e.rate)
			}
		}
		t.Logf("%s: ended after %v, padding stopped after %v, estimate %.0f, %d bytes of padding, %d padding and %d media packets lost",
			tc.name, s.now-start, s.padStop-start, s.e.rate, s.padded, s.lostPad, s.lostData)
	}
}

// TestEstimatorRetransmissions: retransmissions reported lost are not loss on the path (a
// receiver may have refused them as replays): half the packets being such does not cut the
// estimate.
func TestEstimatorRetransmissions(t *testing.T) {
	e := &estimator{}
	at := time.Second
	for i := range 200 {
		now := time.Duration(i) * 10 * time.Millisecond
		e.update(now+20*time.Millisecond, []pktResult{
			{sent: now, arrived: at + now + 5*time.Millisecond, size: 1000, received: true},
			{sent: now, size: 1000, retx: true},
		})
	}
	if e.decreased || e.loss != 0 {
		t.Fatalf("lost retransmissions cut the estimate to %.0f (loss %.2f)", e.rate, e.loss)
	}
}
