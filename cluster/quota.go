package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// quotaTimeout bounds the read of other nodes' counts on an Allocate's path: past it the
// local count alone decides. It is short: the read runs on a listener's loop.
const quotaTimeout = 100 * time.Millisecond

// Others returns the allocations other live nodes hold of a quota slot (turnserver's
// SharedQuota): one MGET of their counts. ok false while Redis does not answer.
func (c *Cluster) Others(slot string) (int, bool) {
	if !c.up.Load() {
		c.meters.localQuota.Inc()
		return 0, false
	}
	var keys []string
	for _, n := range c.Nodes() {
		if n.Name != c.cfg.Node {
			keys = append(keys, allocKey(slot, n.Name))
		}
	}
	if len(keys) == 0 {
		return 0, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), quotaTimeout)
	defer cancel()
	vals, err := c.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		c.failed("quota", err)
		c.meters.localQuota.Inc()
		return 0, false
	}
	sum := 0
	for _, v := range vals {
		if s, ok := v.(string); ok {
			var n int
			if _, err := fmt.Sscan(s, &n); err == nil && n > 0 {
				sum += n
			}
		}
	}
	return sum, true
}

// Changed records this node's count of a slot (turnserver's SharedQuota); the writer sends
// it to Redis at once, off the caller's path, and every refresh sends all of them again.
func (c *Cluster) Changed(slot string, n int) {
	c.qmu.Lock()
	if n > 0 {
		c.counts[slot] = n
	} else {
		delete(c.counts, slot)
	}
	c.dirty[slot] = struct{}{}
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writer sends changed counts to Redis until Close.
func (c *Cluster) writer() {
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
			c.writeCounts(false)
		}
	}
}

// writeCounts writes the changed counts (all of them if all) with this node's TTL; a count
// of 0 deletes the key.
func (c *Cluster) writeCounts(all bool) {
	c.qmu.Lock()
	set := map[string]int{}
	var del []string
	if all {
		for slot, n := range c.counts {
			set[slot] = n
		}
	}
	for slot := range c.dirty {
		if n, ok := c.counts[slot]; ok {
			set[slot] = n
		} else {
			del = append(del, slot)
		}
	}
	clear(c.dirty)
	c.qmu.Unlock()
	if len(set) == 0 && len(del) == 0 || !c.up.Load() && !all {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.refresh)
	defer cancel()
	if _, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for slot, n := range set {
			p.Set(ctx, allocKey(slot, c.cfg.Node), n, c.cfg.TTL)
		}
		for _, slot := range del {
			p.Del(ctx, allocKey(slot, c.cfg.Node))
		}
		return nil
	}); err != nil {
		c.failed("quota", err)
	}
}
