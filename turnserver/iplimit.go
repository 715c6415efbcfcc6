package turnserver

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

// ipLimiter caps the answers Ferry sends per source IP to requests without valid
// credentials (401s, mostly). Those cost an attacker nothing to spoof, so without a cap
// Ferry would reflect traffic at whatever address the requests claim to come from.
type ipLimiter struct {
	mu     sync.Mutex
	perSec int // answers per second, and the burst; 0: no cap
	ips    map[netip.Addr]*rate.Limiter
	swept  time.Time
}

func newIPLimiter(perSecond int) *ipLimiter {
	l := &ipLimiter{}
	l.set(perSecond)
	return l
}

// set changes the cap to perSecond answers per second (burst: as many); 0 lifts it.
func (l *ipLimiter) set(perSecond int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if perSecond == l.perSec && l.ips != nil {
		return
	}
	l.perSec = perSecond
	l.ips = map[netip.Addr]*rate.Limiter{}
}

// allow reports whether ip may get one more answer now. IPv6 sources count by /64, the
// block one subscriber usually holds.
//
// When the table is full even after a sweep, a new source is answered untracked: a flood
// spread over that many addresses aims at no single victim, and refusing every new source
// would lock legitimate clients out for as long as the flood lasts.
func (l *ipLimiter) allow(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perSec == 0 {
		return true
	}
	if now.Sub(l.swept) >= sweepEvery {
		l.sweep(now)
	}
	key := sourceKey(ip)
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

// rate is the cap in answers per second; 0: none.
func (l *ipLimiter) rate() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perSec
}

// connCaps are one stream connection's buckets for the caps of the guard's ipLimiters: on
// a stream the cap counts by connection, not by source IP. A bucket is made at the first
// answer it caps, and made again when a reload has changed the rate.
type connCaps []connCap

type connCap struct {
	of     *ipLimiter
	perSec int
	bucket *rate.Limiter
}

func (cs *connCaps) allow(l *ipLimiter, now time.Time) bool {
	perSec := l.rate()
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
func (cs *connCaps) of(l *ipLimiter) *connCap {
	for i := range *cs {
		if (*cs)[i].of == l {
			return &(*cs)[i]
		}
	}
	*cs = append(*cs, connCap{of: l})
	return &(*cs)[len(*cs)-1]
}

// sourceKey is what the limit counts by: the IPv4 address, or the IPv6 /64.
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip
	}
	p, _ := ip.Prefix(64)
	return p.Addr()
}

// sweep forgets sources whose bucket has refilled: they are not being limited.
func (l *ipLimiter) sweep(now time.Time) {
	for ip, lim := range l.ips {
		if lim.TokensAt(now) >= float64(l.perSec) {
			delete(l.ips, ip)
		}
	}
	l.swept = now
}
