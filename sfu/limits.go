package sfu

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Limits bound what one access token and one source address may hold at once, and how
// long a new session may take to connect. Zero is no limit.
type Limits struct {
	SessionsPerToken, SessionsPerIP int // live WHIP and WHEP sessions
	FeedsPerToken, FeedsPerIP       int // open room event feeds
	// ConnectTimeout ends a session whose connection has not come up this long after its
	// answer: sessions nobody connects cost goroutines and memory until then.
	ConnectTimeout time.Duration
}

// retryAfter is the Retry-After of a 429, in seconds: the default connect timeout, within
// which a session that will never connect gives its slot back.
const retryAfter = "15"

// refusalReasons are the limits a request can run into, as ferry_sfu_refused_total
// labels them.
var refusalReasons = []string{"sessions_per_token", "sessions_per_ip", "feeds_per_token", "feeds_per_ip"}

// slots count what each token and each source address holds of one kind, sessions or
// feeds. The limits come with each take, so a reload applies to the next request.
type slots struct {
	kind   string // "sessions" or "feeds"
	mu     sync.Mutex
	tokens map[[sha256.Size]byte]int
	ips    map[netip.Addr]int
}

func newSlots(kind string) *slots {
	return &slots{kind: kind, tokens: map[[sha256.Size]byte]int{}, ips: map[netip.Addr]int{}}
}

// take gives o one more slot, or names the limit that refuses it: kind_per_token or
// kind_per_ip.
func (sl *slots) take(o owner, perToken, perIP int) (refused string) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	switch {
	case perToken > 0 && sl.tokens[o.token] >= perToken:
		return sl.kind + "_per_token"
	case perIP > 0 && sl.ips[o.ip] >= perIP:
		return sl.kind + "_per_ip"
	}
	sl.tokens[o.token]++
	sl.ips[o.ip]++
	return ""
}

// release gives back a slot o took.
func (sl *slots) release(o owner) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	giveBack(sl.tokens, o.token)
	giveBack(sl.ips, o.ip)
}

func giveBack[K comparable](held map[K]int, k K) {
	if held[k] <= 1 {
		delete(held, k)
		return
	}
	held[k]--
}

// limits are the limits in force now.
func (s *SFU) limits() Limits {
	if s.cfg.Limits == nil {
		return Limits{}
	}
	return s.cfg.Limits()
}

// admit takes a slot of sl for o, or answers 429 with Retry-After and counts the refusal.
func (s *SFU) admit(w http.ResponseWriter, sl *slots, o owner, perToken, perIP int) bool {
	refused := sl.take(o, perToken, perIP)
	if refused == "" {
		return true
	}
	s.meters.refused[refused].Inc()
	w.Header().Set("Retry-After", retryAfter)
	http.Error(w, fmt.Sprintf("too many live %s: sfu.%s reached", sl.kind, refused), http.StatusTooManyRequests)
	return false
}
