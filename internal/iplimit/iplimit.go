// Package iplimit counts clients by source: an IPv4 address, or the /64 an IPv6 host
// usually holds to itself, and caps what Ferry answers to each.
package iplimit

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// maxLimitedIPs bounds the limiter's memory under a flood from spoofed sources.
	maxLimitedIPs = 1 << 16
	// sweepEvery is how often sources that are back to a full bucket are forgotten; a
	// full table is swept at most every sweepFullEvery.
	sweepEvery     = time.Minute
	sweepFullEvery = time.Second
)

// Limiter caps the answers Ferry sends per source to requests that cost an attacker
// nothing to spoof (401s, Binding answers): without a cap Ferry would reflect traffic at
// whatever address the requests claim to come from.
type Limiter struct {
	mu     sync.Mutex
	perSec int // answers per second, and the burst; 0: no cap
	ips    map[netip.Addr]*rate.Limiter
	swept  time.Time
}

func New(perSecond int) *Limiter {
	l := &Limiter{}
	l.Set(perSecond)
	return l
}

// Set changes the cap to perSecond answers per second (burst: as many); 0 lifts it.
func (l *Limiter) Set(perSecond int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if perSecond == l.perSec && l.ips != nil {
		return
	}
	l.perSec = perSecond
	l.ips = map[netip.Addr]*rate.Limiter{}
}

// Allow reports whether ip may get one more answer now; sources count by Key.
//
// When the table is full even after a sweep, a new source is answered untracked: a flood
// spread over that many addresses aims at no single victim, and refusing every new source
// would lock legitimate clients out for as long as the flood lasts.
func (l *Limiter) Allow(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perSec == 0 {
		return true
	}
	if now.Sub(l.swept) >= sweepEvery {
		l.sweep(now)
	}
	key := Key(ip)
	lim, ok := l.ips[key]
	if !ok {
		if len(l.ips) >= maxLimitedIPs && now.Sub(l.swept) >= sweepFullEvery {
			l.sweep(now)
		}
		if len(l.ips) >= maxLimitedIPs {
			return true
		}
		lim = rate.NewLimiter(rate.Limit(l.perSec), l.perSec)
		l.ips[key] = lim
	}
	return lim.AllowN(now, 1)
}

// Rate is the cap in answers per second; 0: none.
func (l *Limiter) Rate() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perSec
}

// ConnCaps are one stream connection's buckets for the caps of Limiters: on
// a stream the cap counts by connection, not by source IP. A bucket is made at the first
// answer it caps, and made again when a reload has changed the rate.
type ConnCaps []connCap

type connCap struct {
	of     *Limiter
	perSec int
	bucket *rate.Limiter
}

func (cs *ConnCaps) Allow(l *Limiter, now time.Time) bool {
	perSec := l.Rate()
	if perSec == 0 {
		return true
	}
	c := cs.of(l)
	if c.perSec != perSec {
		c.perSec, c.bucket = perSec, rate.NewLimiter(rate.Limit(perSec), perSec)
	}
	return c.bucket.AllowN(now, 1)
}

// of is the connection's bucket for l, empty if new.
func (cs *ConnCaps) of(l *Limiter) *connCap {
	for i := range *cs {
		if (*cs)[i].of == l {
			return &(*cs)[i]
		}
	}
	*cs = append(*cs, connCap{of: l})
	return &(*cs)[len(*cs)-1]
}

// Key is what a source counts as: its IPv4 address, or its IPv6 /64, since one IPv6 host
// commonly has a whole /64 to send from.
func Key(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip
	}
	p, _ := ip.Prefix(64)
	return p.Addr()
}

// sweep forgets sources whose bucket has refilled: they are not being limited.
func (l *Limiter) sweep(now time.Time) {
	for ip, lim := range l.ips {
		if lim.TokensAt(now) >= float64(l.perSec) {
			delete(l.ips, ip)
		}
	}
	l.swept = now
}
