package turnserver

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// maxLimitedIPs bounds the limiter's memory under a flood from spoofed sources. When
	// that many sources are being limited at once, new ones are refused until a sweep.
	maxLimitedIPs = 1 << 16
	// sweepEvery is how often sources that are back to a full bucket are forgotten.
	sweepEvery = time.Minute
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

// allow reports whether ip may get one more answer now.
func (l *ipLimiter) allow(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perSec == 0 {
		return true
	}
	if now.Sub(l.swept) >= sweepEvery {
		l.sweep(now)
	}
	lim, ok := l.ips[ip]
	if !ok {
		if len(l.ips) >= maxLimitedIPs {
			return false
		}
		lim = rate.NewLimiter(rate.Limit(l.perSec), l.perSec)
		l.ips[ip] = lim
	}
	return lim.AllowN(now, 1)
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
