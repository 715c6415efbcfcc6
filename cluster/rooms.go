package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimScript claims a room for a node, or renews the node's claim: it sets the room's key
// to the node if no node owns it, extends the TTL if the node does, and returns the owner.
var claimScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if not owner then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
	return ARGV[1]
end
if owner == ARGV[1] then
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return owner
`)

// releaseScript deletes a room's key if the node owns it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// Route is where a WHIP or WHEP request for a room belongs.
type Route struct {
	Owner string // the owning node's name; "" when no node owns the room
	Here  bool   // this node owns it, or the request is served here for want of Redis
	Node  Node   // the owner's record, when another live node owns it
	// Retry is set when another node owns the room but its record is gone (it stopped
	// refreshing): the room is free once the claim expires, in about this long.
	Retry time.Duration
}

// Claim is where a WHIP request for room belongs: the room's owner, or this node if the
// room had none (it is now claimed for this node, and renewed while it has a publisher
// here). ErrDown when Redis cannot be reached: the caller serves the request itself.
func (c *Cluster) Claim(ctx context.Context, room string) (Route, error) {
	if !c.up.Load() {
		c.meters.localRoom.Inc()
		return Route{Here: true}, ErrDown
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	sent := time.Now()
	owner, err := claimScript.Run(ctx, c.rdb, []string{roomKey(room)}, c.cfg.Node, c.cfg.TTL.Milliseconds()).Text()
	if err != nil {
		c.failed("claim", err)
		c.meters.localRoom.Inc()
		return Route{Here: true}, ErrDown
	}
	if owner == c.cfg.Node {
		c.mu.Lock()
		if _, had := c.claims[room]; !had {
			c.meters.claims.Inc()
		}
		c.claims[room] = sent.Add(c.cfg.TTL)
		c.mu.Unlock()
		return Route{Owner: owner, Here: true}, nil
	}
	return c.route(ctx, room, owner), nil
}

// Owner is where a WHEP request for room belongs: its owner, or this node when no node owns
// it (the request then finds no stream, as on a single node). ErrDown when Redis cannot be
// reached: the caller serves the request itself.
func (c *Cluster) Owner(ctx context.Context, room string) (Route, error) {
	if !c.up.Load() {
		c.meters.localRoom.Inc()
		return Route{Here: true}, ErrDown
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	owner, err := c.rdb.Get(ctx, roomKey(room)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return Route{Here: true}, nil
	case err != nil:
		c.failed("owner", err)
		c.meters.localRoom.Inc()
		return Route{Here: true}, ErrDown
	case owner == c.cfg.Node:
		return Route{Owner: owner, Here: true}, nil
	}
	return c.route(ctx, room, owner), nil
}

// route is the Route to a room owned by another node.
func (c *Cluster) route(ctx context.Context, room, owner string) Route {
	if n, ok := c.node(ctx, owner); ok {
		return Route{Owner: owner, Node: n}
	}
	retry := c.cfg.TTL
	if ttl, err := c.rdb.PTTL(ctx, roomKey(room)).Result(); err == nil && ttl > 0 {
		retry = ttl
	}
	return Route{Owner: owner, Retry: retry}
}

// Owns reports whether this node holds a live claim on room.
func (c *Cluster) Owns(room string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.claims[room]
	return ok && time.Now().Before(until)
}
