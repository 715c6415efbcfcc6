package sfu

import (
	"math"
	"time"
)

// The estimator is Ferry's sender-side bandwidth estimate toward one subscriber, from
// transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-
// extensions-01): the subscriber reports when each packet arrived, or that it did not, and
// the estimator compares that with when the SFU sent it.
//
//   - Delay: packets sent within burstTime of each other form a group (a video frame leaves
//     in one burst); between two groups the difference of their arrival and send spacings is
//     how much the path's queue grew. Summed, that is the one-way delay up to a constant (the
//     clocks differ); its minimum over the last minWindow is the delay with an empty queue,
//     and the difference the queue now. The queue a group reports is the least of it over
//     the last queueGroups groups: a keyframe's burst queues behind itself and the next few
//     frames wait for it to drain, but that queue shrinks from the second frame on, while
//     congestion's grows from frame to frame. A queue above queueOver that grew over
//     overGroups groups in a row, or one above queueHard that has not drained (fallen
//     queueOver below its peak) for hardTime, is overuse.
//   - Loss: the share of packets reported lost, smoothed; above lossHigh it cuts the rate,
//     and below lossLow it lets it grow.
//   - Rate: overuse sets the estimate to decreaseFactor times the rate the subscriber
//     received (the lesser over ackedWindow and shortWindow: what the bottleneck let
//     through), and never above what it was; loss above lossHigh does the same with
//     1 - loss/2 for the factor. A decrease needs the overuse or loss of packets sent
//     decreaseHold after the last one: until then the SFU is still moving the subscriber to
//     a lower layer, and what it sent before says nothing of that. Otherwise it grows by
//     increasePerSecond, but never past increaseCap times the received rate: a subscriber
//     sent less than its link carries learns nothing about the rest of the link.
//   - Probes: to learn whether a better layer fits, the SFU pads its stream up to a target
//     rate for probeTime; the packets sent in that window tell the rate the path delivered.
//     Without overuse, with less than 5% of them lost, and with at least probeDeliver of
//     the rate they were sent at delivered, the estimate rises to that. Overuse during a probe ends its
//     padding at once, and what it costs the estimate is bounded: until probeGrace after the
//     probe, the estimate does not fall below what it was before the probe, which the media
//     alone did not overuse.
//
// Times are durations since an origin the caller chooses: the sender's clock for sending and
// decisions, the receiver's (any origin) for arrivals. The estimator is not safe for
// concurrent use; bwe serializes it.
const (
	burstTime         = 5 * time.Millisecond
	minWindow         = 10 * time.Second
	queueGroups       = 2
	queueOver         = 15.0 // ms
	queueHard         = 60.0 // ms
	queueRise         = 0.5  // ms: less is no growth
	overGroups        = 2
	hardTime          = 300 * time.Millisecond
	lossSmoothing     = 0.7 // weight of the old value per feedback
	lossHigh          = 0.10
	lossLow           = 0.02
	ackedWindow       = 500 * time.Millisecond
	shortWindow       = 200 * time.Millisecond
	decreaseFactor    = 0.85
	decreaseHold      = time.Second
	increasePerSecond = 0.08
	increaseCap       = 1.5
	minEstimate       = 30_000 // bits/s
	probeTime         = 500 * time.Millisecond
	probeTimeout      = 1500 * time.Millisecond // after the window: no feedback means failure
	probeDeliver      = 0.9
	probeGrace        = 500 * time.Millisecond
)

// pktResult is what feedback tells of one packet: when it left and its size (sender's
// clock), and when it arrived (receiver's clock) if it did.
type pktResult struct {
	sent     time.Duration
	arrived  time.Duration
	size     int
	received bool
	retx     bool // a retransmission: one reported lost may have arrived and been refused as a
	// replay (a receiver whose original arrived meanwhile, or one older than its window)
}

// usage is what the delay says of the path.
type usage int

const (
	usageNormal usage = iota
	usageOver
	usageDraining // the queue is shrinking: hold the rate
)

// group is packets sent within burstTime: the send time of the first, and the send and
// arrival times of the last.
type group struct {
	first, sent, arrived time.Duration
	n                    int
}

// probeOutcome is how a probe ended.
type probeOutcome int

const (
	probeNone probeOutcome = iota
	probeSucceeded
	probeFailed
)

type probe struct {
	active                bool
	target                float64       // bits/s the sender aims at
	start, end            time.Duration // packets sent in [start, end) are the probe's
	bytes                 int           // received, of the probe's packets
	first, last           time.Duration // their first and last arrival
	sentBytes             int           // sent, of the probe's packets
	firstSent, lastSent   time.Duration
	received, lost, count int
	overuse               bool
}

// ackSample is one received packet for the received-rate window.
type ackSample struct {
	arrived time.Duration
	size    int
}

const ackRing = 1024

type estimator struct {
	rate float64 // bits/s; 0 = nothing learnt yet: no limit

	grp, prev     group
	inGroup, have bool
	delay         float64 // accumulated one-way delay variation, ms
	// mins holds the least delay in each of the last seconds (by arrival), so the minimum
	// over minWindow is cheap; minSec is the second plus one, 0 for an empty slot.
	mins      [int(minWindow / time.Second)]float64
	minSec    [int(minWindow / time.Second)]int64
	recent    [queueGroups]float64 // the queue of the last groups, ms
	recentN   int
	queue     float64 // the least of recent, ms
	rising    int     // groups in a row the queue grew above queueOver
	hardSince time.Duration
	hardQueue float64 // the highest queue since hardSince
	hard      bool
	overSent  time.Duration // the send time of the last group that was overuse
	use       usage
	loss      float64
	lossSet   bool

	acks     [ackRing]ackSample
	ackN     int // total ever written
	lastArr  time.Duration
	received float64 // bits/s over ackedWindow, by arrival
	recvLow  float64 // the lesser of that and the rate over shortWindow

	lastDecrease, lastIncrease time.Duration
	decreased                  bool

	probe       probe
	probeBefore float64       // the rate when the last probe began
	graceUntil  time.Duration // the last probe's end plus probeGrace
}

// update takes the results of one feedback packet, in sending order, at now; it returns
// the outcome of a probe that ended with it.
func (e *estimator) update(now time.Duration, results []pktResult) probeOutcome {
	lost, total, freshLost, fresh := 0, 0, 0, 0
	for _, r := range results {
		if r.retx && !r.received {
			continue // not a loss the path can be blamed for
		}
		total++
		e.probeSees(r)
		if e.after(r.sent) {
			fresh++
		}
		if !r.received {
			lost++
			if e.after(r.sent) {
				freshLost++
			}
			continue
		}
		e.ack(r)
		e.groupPacket(r)
	}
	if total > 0 {
		frac := float64(lost) / float64(total)
		if !e.lossSet {
			e.loss, e.lossSet = frac, true
		} else {
			e.loss = lossSmoothing*e.loss + (1-lossSmoothing)*frac
		}
	}
	e.received = e.receivedRate(ackedWindow)
	e.recvLow = e.received
	if short := e.receivedRate(shortWindow); short > 0 && (short < e.recvLow || e.recvLow == 0) {
		e.recvLow = short
	}
	if e.probe.active && e.use == usageOver && e.overSent >= e.probe.start {
		e.probe.overuse = true
	}
	e.control(now, fresh > 0 && float64(freshLost) > lossHigh*float64(fresh))
	return e.probeDone(now, results)
}

// after reports whether a packet sent at sent can show the effect of the last decrease:
// sent decreaseHold after it (or there was none), time for the SFU to move the subscriber
// to a lower layer.
func (e *estimator) after(sent time.Duration) bool {
	return !e.decreased || sent >= e.lastDecrease+decreaseHold
}

// ack records a received packet for the received rate.
func (e *estimator) ack(r pktResult) {
	e.acks[e.ackN%ackRing] = ackSample{arrived: r.arrived, size: r.size}
	e.ackN++
	if r.arrived > e.lastArr {
		e.lastArr = r.arrived
	}
}

// receivedRate is the bits per second received over the window that ends at the last
// arrival: the bytes that arrived after the first arrival in it, over the time since; 0 if
// it holds too little to tell.
func (e *estimator) receivedRate(window time.Duration) float64 {
	n := min(e.ackN, ackRing)
	from := e.lastArr - window
	first := e.lastArr
	for i := 1; i <= n; i++ {
		s := e.acks[(e.ackN-i)%ackRing]
		if s.arrived < from {
			break
		}
		first = min(first, s.arrived)
	}
	bytes := 0
	for i := 1; i <= n; i++ {
		s := e.acks[(e.ackN-i)%ackRing]
		if s.arrived < from {
			break
		}
		if s.arrived > first {
			bytes += s.size
		}
	}
	span := e.lastArr - first
	if bytes == 0 || span < window/4 {
		return 0
	}
	return float64(bytes) * 8 / span.Seconds()
}

// groupPacket adds a received packet to the group being filled, closing it first when the
// packet was sent more than burstTime after the group's first.
func (e *estimator) groupPacket(r pktResult) {
	if e.inGroup && r.sent-e.grp.first <= burstTime && r.sent >= e.grp.first {
		e.grp.sent = max(e.grp.sent, r.sent)
		e.grp.arrived = max(e.grp.arrived, r.arrived)
		e.grp.n++
		return
	}
	if e.inGroup {
		if r.sent < e.grp.first {
			return // sent before the group being filled: reordered feedback, too late
		}
		e.closeGroup()
	}
	e.grp, e.inGroup = group{first: r.sent, sent: r.sent, arrived: r.arrived, n: 1}, true
}

// closeGroup compares the completed group with the one before and updates the queue
// estimate and what it says of the path.
func (e *estimator) closeGroup() {
	g := e.grp
	if !e.have {
		e.prev, e.have = g, true
		return
	}
	p := e.prev
	e.prev = g
	if g.arrived < p.arrived {
		return // reordered across groups: no spacing to compare
	}
	dArr := float64(g.arrived-p.arrived) / float64(time.Millisecond)
	dSent := float64(g.sent-p.sent) / float64(time.Millisecond)
	e.delay += dArr - dSent
	e.recent[e.recentN%queueGroups] = e.delay - e.minimum(g.arrived, e.delay)
	e.recentN++
	last := e.queue
	e.queue = e.recent[0]
	for _, q := range e.recent[:min(e.recentN, queueGroups)] {
		e.queue = min(e.queue, q)
	}
	grew := e.queue > last+queueRise
	switch {
	case e.queue > queueOver && grew:
		e.rising++
	case !grew || e.queue <= queueOver:
		e.rising = 0
	}
	switch {
	case e.queue <= queueHard:
		e.hard = false
	case !e.hard || e.queue < e.hardQueue-queueOver: // a standing queue begins, or drains
		e.hard, e.hardSince, e.hardQueue = true, g.arrived, e.queue
	default:
		e.hardQueue = max(e.hardQueue, e.queue)
	}
	switch {
	case e.rising >= overGroups || (e.hard && g.arrived-e.hardSince >= hardTime):
		e.use, e.overSent = usageOver, g.sent
	case e.queue > queueOver && e.queue < last-queueRise:
		e.use = usageDraining
	default:
		e.use = usageNormal
	}
}

// minimum records v at arrival time at and returns the minimum over the last minWindow.
func (e *estimator) minimum(at time.Duration, v float64) float64 {
	sec := int64(at/time.Second) + 1
	slots := int64(len(e.mins))
	i := sec % slots
	if e.minSec[i] != sec {
		e.minSec[i], e.mins[i] = sec, v
	} else {
		e.mins[i] = min(e.mins[i], v)
	}
	m := v
	for j, s := range e.minSec {
		if s != 0 && s <= sec && sec-s < slots {
			m = min(m, e.mins[j])
		}
	}
	return m
}

// control moves the rate after a feedback; lossy says whether the packets of the feedback
// that can show the last decrease's effect were lost above lossHigh.
func (e *estimator) control(now time.Duration, lossy bool) {
	switch {
	case e.use == usageOver && e.after(e.overSent):
		e.decrease(now, decreaseFactor)
	case e.loss > lossHigh && lossy:
		e.decrease(now, 1-0.5*e.loss)
	case e.use == usageNormal && e.loss < lossLow && e.rate > 0:
		dt := min(now-e.lastIncrease, time.Second)
		if dt > 0 {
			limit := increaseCap*e.received + 10_000
			if e.rate < limit {
				e.rate = min(e.rate*(1+increasePerSecond*dt.Seconds()), limit)
			}
		}
	}
	e.lastIncrease = now
}

// decrease sets the rate to factor times what the subscriber received (or, without a
// received rate, times the rate), unless it is lower already: repeated decreases while the
// SFU is still switching the subscriber to a lower layer do not compound. During a probe and
// its grace, the rate does not fall below what it was before the probe.
func (e *estimator) decrease(now time.Duration, factor float64) {
	rate := e.recvLow * factor
	switch {
	case e.recvLow == 0 && e.rate == 0:
		return // nothing to cut from
	case e.recvLow == 0:
		rate = e.rate * factor
	case e.rate > 0:
		rate = min(rate, e.rate)
	}
	rate = max(rate, minEstimate)
	if e.probe.active || now < e.graceUntil {
		e.probe.overuse = e.probe.overuse || e.probe.active
		e.graceUntil = max(e.graceUntil, now+probeGrace)
		rate = max(rate, e.probeBefore)
	}
	e.rate = rate
	e.lastDecrease, e.decreased = now, true
}

// startProbe opens a probe for the packets sent from now on, for probeTime, the sender
// aiming at target bits/s.
func (e *estimator) startProbe(now time.Duration, target float64) {
	e.probe = probe{active: true, target: target, start: now, end: now + probeTime}
	e.probeBefore = e.rate
	e.graceUntil = now + probeTime + probeGrace
}

// probing reports whether a probe's padding should still be sent at now.
func (e *estimator) probing(now time.Duration) bool {
	return e.probe.active && !e.probe.overuse && now < e.probe.end
}

// probeSees accounts a result to the probe if the packet was sent in its window.
func (e *estimator) probeSees(r pktResult) {
	p := &e.probe
	if !p.active || r.sent < p.start || r.sent >= p.end {
		return
	}
	if p.count == 0 || r.sent < p.firstSent {
		p.firstSent = r.sent
	}
	p.lastSent = max(p.lastSent, r.sent)
	p.sentBytes += r.size
	p.count++
	if !r.received {
		p.lost++
		return
	}
	if p.received == 0 || r.arrived < p.first {
		p.first = r.arrived
	}
	p.last = max(p.last, r.arrived)
	p.bytes += r.size
	p.received++
}

// probeDone ends the probe once feedback has passed its window (or it timed out) and says
// how it went. It succeeded if the path delivered at least probeDeliver of the rate it was
// sent, without overuse and with less than 5% lost; the rate then rises to what it
// delivered.
func (e *estimator) probeDone(now time.Duration, results []pktResult) probeOutcome {
	p := &e.probe
	if !p.active {
		return probeNone
	}
	passed := now >= p.end+probeTimeout
	for _, r := range results {
		if r.sent >= p.end {
			passed = true
		}
	}
	if !passed && !p.overuse {
		return probeNone
	}
	p.active = false
	delivered, sent := p.delivered()
	if p.overuse || p.lost*20 > p.count || sent == 0 || delivered < probeDeliver*sent {
		return probeFailed
	}
	e.rate = max(e.rate, delivered)
	return probeSucceeded
}

// delivered is the rate at which the probe's packets arrived, and the rate at which they
// left; 0 when they are too few to tell.
func (p *probe) delivered() (float64, float64) {
	span, sentSpan := p.last-p.first, p.lastSent-p.firstSent
	if p.received < 5 || span < 50*time.Millisecond || sentSpan < 50*time.Millisecond {
		return 0, 0
	}
	return float64(p.bytes) * 8 / span.Seconds(), float64(p.sentBytes) * 8 / sentSpan.Seconds()
}

// estimate is the rate in bits/s; 0 while nothing limits it.
func (e *estimator) estimate() uint64 {
	if math.IsNaN(e.rate) || e.rate <= 0 {
		return 0
	}
	return uint64(e.rate)
}
