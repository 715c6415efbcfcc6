package cluster

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/go-redis/v9"

	"github.com/ferry-rtc/ferry/auth"
)

// Users shared through Redis (auth.users_redis) use coturn's layout, so that a Redis that
// coturn's turnadmin filled works as it is, and turnadmin can manage Ferry's users:
//
//	turn/realm/REALM/user/NAME/key   lowercase hex of HA1 = MD5(NAME:REALM:PASSWORD)
//
// coturn reads that key on each request; Ferry keeps the keys of its realm in memory
// instead, so that an Allocate does not wait for Redis. `ferry user` publishes the key it
// changed on usersChannel, and every node reads that key again at once; a full read every
// usersResync catches writes made without Ferry (turnadmin, redis-cli).
const (
	usersChannel = "ferry:users"
	usersResync  = 10 * time.Second
	// usersRetry is the pause after a failed exchange before the next try.
	usersRetry = time.Second
)

func userKey(realm, name string) string { return "turn/realm/" + realm + "/user/" + name + "/key" }

// parseUserKey splits a key of the layout into its realm and name.
func parseUserKey(key string) (realm, name string, ok bool) {
	rest, ok := strings.CutPrefix(key, "turn/realm/")
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, "/key")
	if !ok {
		return "", "", false
	}
	realm, name, ok = strings.Cut(rest, "/user/")
	if !ok || realm == "" || name == "" {
		return "", "", false
	}
	return realm, name, true
}

// globEscape quotes the characters that a SCAN MATCH pattern gives a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// UsersConfig is what a node needs to follow the users of its realm in Redis.
type UsersConfig struct {
	URL   string // redis:// or rediss://
	Realm string
	// MaxStale is how long the keys last read keep working while Redis does not answer.
	MaxStale time.Duration
	Log      *slog.Logger
	Meters   *UserMeters // nil keeps the metrics private
	resync   time.Duration
}

// Users is the in-memory copy of the users of one realm in Redis (an auth.UserSource).
type Users struct {
	cfg    UsersConfig
	rdb    *redis.Client
	pubsub *redis.PubSub
	meters *UserMeters
	keys   atomic.Pointer[map[string][]byte] // name → HA1; replaced whole, never modified

	up         atomic.Bool // Redis answered the last exchange
	downLogged atomic.Bool
	synced     time.Time // the last full read that succeeded; owned by loop
	invalid    int       // entries the last full read skipped; owned by loop

	stop chan struct{}
	done sync.WaitGroup
}

// StartUsers reads the users of cfg.Realm from Redis (waiting up to a second: a node that
// cannot reach Redis starts all the same, with no shared users, and reads them once Redis
// answers) and follows their changes until Close.
func StartUsers(cfg UsersConfig) (*Users, error) {
	rdb, err := newClient(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	if cfg.resync == 0 {
		cfg.resync = usersResync
	}
	u := &Users{cfg: cfg, rdb: rdb, meters: cfg.Meters, stop: make(chan struct{})}
	if u.meters == nil {
		u.meters = NewUserMeters(metrics.NewSet())
	}
	u.meters.users.Store(u)
	u.keys.Store(&map[string][]byte{})
	u.synced = time.Now() // staleness counts from the start when Redis is down from the start
	// One deadline for the subscription and the first read: without one, go-redis dials an
	// address that drops packets 5 times over, and the start would wait 11 s.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	u.pubsub = rdb.Subscribe(ctx, usersChannel)
	// The subscription's confirmation is taken here, so that the loop does not read every
	// user a second time for it: what is published from now on arrives, what was before is
	// in the read below. Without a confirmation (Redis down) the loop reads on the one that
	// comes with the reconnection.
	if msg, err := u.pubsub.ReceiveTimeout(ctx, time.Second); isSubscription(msg, err) && u.sync(ctx) {
		u.cfg.Log.Info("users: following the users of the realm in Redis", "redis", redactedURL(cfg.URL),
			"realm", cfg.Realm, "users", len(*u.keys.Load()))
	}
	u.done.Go(u.loop)
	return u, nil
}

// Key is the HA1 of name (auth.UserSource): one atomic load and one map lookup.
func (u *Users) Key(name string) ([]byte, bool) {
	k, ok := (*u.keys.Load())[name]
	return k, ok
}

// Len is the number of users known.
func (u *Users) Len() int { return len(*u.keys.Load()) }

// Close stops following Redis.
func (u *Users) Close() error {
	close(u.stop)
	err := u.pubsub.Close() // ends a Receive under way
	u.done.Wait()
	return errors.Join(err, u.rdb.Close())
}

// loop applies the changes published on usersChannel as they come, reads everything again
// every resync and after each (re)subscription (what was published meanwhile was missed),
// and retries every usersRetry while Redis does not answer.
func (u *Users) loop() {
	next := time.Now().Add(u.cfg.resync)
	for !u.stopping() {
		msg, err := u.receive(time.Until(next))
		switch m := msg.(type) {
		case *redis.Subscription:
			if isSubscription(m, err) && u.sync(context.Background()) {
				next = time.Now().Add(u.cfg.resync)
			}
		case *redis.Message:
			u.update(m.Payload)
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			if u.stopping() {
				return // Close closed the subscription
			}
			u.failed("subscribe", err)
			select {
			case <-u.stop:
				return
			case <-time.After(usersRetry):
			}
		}
		if !time.Now().Before(next) || !u.up.Load() {
			u.sync(context.Background())
			next = time.Now().Add(u.cfg.resync)
		}
	}
}

// isSubscription reports whether a received msg confirms the subscription to the channel.
func isSubscription(msg any, err error) bool {
	m, ok := msg.(*redis.Subscription)
	return err == nil && ok && m.Kind == "subscribe"
}

// receive waits up to wait for a message, or less while Redis does not answer: a try comes
// every usersRetry then (a silent connection, where packets are dropped, would otherwise
// hold the loop until the next full read). A reconnection of the subscription counts in
// that bound too: go-redis dials 5 times where nothing answers.
func (u *Users) receive(wait time.Duration) (any, error) {
	if !u.up.Load() {
		wait = min(wait, usersRetry)
	}
	wait = max(wait, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), wait+usersRetry)
	defer cancel()
	return u.pubsub.ReceiveTimeout(ctx, wait)
}

func (u *Users) stopping() bool {
	select {
	case <-u.stop:
		return true
	default:
		return false
	}
}

// sync reads every user of the realm (within resync, or ctx's deadline if sooner) and
// replaces the copy with them; on failure the copy is kept until it is MaxStale old.
func (u *Users) sync(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.resync)
	defer cancel()
	op, err := "ping", u.ping(ctx)
	var keys map[string][]byte
	if err == nil {
		op = "read"
		keys, err = u.read(ctx)
	}
	if err != nil {
		u.failed(op, err)
		u.expire()
		return false
	}
	u.keys.Store(&keys)
	u.synced = time.Now()
	u.meters.syncs.Inc()
	u.answered()
	return true
}

// ping checks, while Redis does not answer, that it does again before a full read, within
// usersRetry: the full read's deadline is as long as a big realm may need, and a try that
// waited it out (go-redis dials 5 times where packets are dropped) would expire the users
// that much after max_stale.
func (u *Users) ping(ctx context.Context) error {
	if u.up.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, usersRetry)
	defer cancel()
	return u.rdb.Ping(ctx).Err()
}

// read SCANs the keys of the realm and MGETs their values in batches.
func (u *Users) read(ctx context.Context) (map[string][]byte, error) {
	keys := map[string][]byte{}
	invalid := 0
	err := scanKeys(ctx, u.rdb, userPattern(u.cfg.Realm), func(batch []string) error {
		vals, err := u.rdb.MGet(ctx, batch...).Result()
		if err != nil {
			return err
		}
		for i, v := range vals {
			s, _ := v.(string) // nil: deleted since the SCAN
			if name, key, ok := u.entry(batch[i], s); ok {
				keys[name] = key
			} else if v != nil {
				invalid++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if invalid > 0 && invalid != u.invalid {
		u.cfg.Log.Warn("users: entries in Redis that are not a user of the realm with a 32-hex-digit key are ignored",
			"realm", u.cfg.Realm, "ignored", invalid)
	}
	u.invalid = invalid
	return keys, nil
}

// userPattern is the SCAN pattern of every user key of realm.
func userPattern(realm string) string {
	return "turn/realm/" + globEscape(realm) + "/user/*/key"
}

// entry checks one key and value of the layout for this realm; the rules are the users
// file's.
func (u *Users) entry(key, value string) (name string, ha1 []byte, ok bool) {
	realm, name, ok := parseUserKey(key)
	if !ok || realm != u.cfg.Realm || auth.CheckUser(auth.User{Name: name, Realm: realm, HA1: value}) != nil {
		return "", nil, false
	}
	ha1, err := hex.DecodeString(value)
	return name, ha1, err == nil
}

// update reads again the one key a `ferry user` command published.
func (u *Users) update(key string) {
	realm, name, ok := parseUserKey(key)
	if !ok || realm != u.cfg.Realm {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	value, err := u.rdb.Get(ctx, key).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		u.failed("update", err) // the next full read catches up
		return
	}
	keys := maps.Clone(*u.keys.Load())
	if _, ha1, ok := u.entry(key, value); ok {
		keys[name] = ha1
	} else {
		delete(keys, name)
	}
	u.keys.Store(&keys)
	u.meters.updates.Inc()
}

// expire drops the copy once Redis has not answered for MaxStale: a user deleted in the
// meantime must not keep working for ever.
func (u *Users) expire() {
	if time.Since(u.synced) < u.cfg.MaxStale || u.Len() == 0 {
		return
	}
	u.keys.Store(&map[string][]byte{})
	u.meters.expired.Inc()
	u.cfg.Log.Warn("users: Redis has not answered for auth.users_redis_max_stale: the users read from it are refused until it answers",
		"max_stale", u.cfg.MaxStale, "since", u.synced)
}

// failed notes a failed exchange: the first of an outage is logged.
func (u *Users) failed(op string, err error) {
	u.meters.errors.Inc()
	u.up.Store(false)
	if !u.downLogged.Swap(true) {
		u.meters.outages.Inc()
		u.cfg.Log.Warn("users: Redis unreachable: the users last read from it keep working for auth.users_redis_max_stale",
			"op", op, "err", err, "max_stale", u.cfg.MaxStale, "users", u.Len())
	}
}

func (u *Users) answered() {
	u.up.Store(true)
	if u.downLogged.Swap(false) {
		u.cfg.Log.Info("users: Redis answers again: the users are read from it again", "users", u.Len())
	}
}
