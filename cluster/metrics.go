package cluster

import (
	"context"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/go-redis/v9"
)

// Meters are the cluster metrics. The server makes them whether or not the node is in a
// cluster, so that every family is always exported (zero without a cluster).
type Meters struct {
	commands, errors      *metrics.Counter
	outages, refreshes    *metrics.Counter
	claims, lost          *metrics.Counter
	localRoom, localQuota *metrics.Counter
	redirectWHIP          *metrics.Counter
	redirectWHEP          *metrics.Counter
	cluster               atomic.Pointer[Cluster]
}

// NewMeters registers the cluster metrics in set.
func NewMeters(set *metrics.Set) *Meters {
	m := &Meters{
		commands:     set.NewCounter("ferry_cluster_redis_commands_total"),
		errors:       set.NewCounter("ferry_cluster_redis_errors_total"),
		outages:      set.NewCounter("ferry_cluster_redis_outages_total"),
		refreshes:    set.NewCounter("ferry_cluster_refreshes_total"),
		claims:       set.NewCounter("ferry_cluster_room_claims_total"),
		lost:         set.NewCounter("ferry_cluster_rooms_lost_total"),
		localRoom:    set.NewCounter(`ferry_cluster_local_decisions_total{what="room"}`),
		localQuota:   set.NewCounter(`ferry_cluster_local_decisions_total{what="quota"}`),
		redirectWHIP: set.NewCounter(`ferry_cluster_redirects_total{method="whip"}`),
		redirectWHEP: set.NewCounter(`ferry_cluster_redirects_total{method="whep"}`),
	}
	set.NewGauge("ferry_cluster_redis_up", func() float64 {
		if c := m.cluster.Load(); c != nil && c.up.Load() {
			return 1
		}
		return 0
	})
	set.NewGauge("ferry_cluster_nodes", func() float64 {
		if c := m.cluster.Load(); c != nil {
			return float64(len(c.Nodes()))
		}
		return 0
	})
	set.NewGauge("ferry_cluster_rooms_owned", func() float64 {
		if c := m.cluster.Load(); c != nil {
			c.mu.Lock()
			defer c.mu.Unlock()
			return float64(len(c.claims))
		}
		return 0
	})
	return m
}

// Redirected counts a WHIP (publish) or WHEP request sent to another node.
func (m *Meters) Redirected(publish bool) {
	if publish {
		m.redirectWHIP.Inc()
	} else {
		m.redirectWHEP.Inc()
	}
}

// MetricsHelp returns the HELP text of each cluster metric family.
func MetricsHelp() map[string]string {
	return map[string]string{
		"ferry_cluster_redis_up":              "1 while Redis answers this node's exchanges, 0 when it does not or the node is in no cluster.",
		"ferry_cluster_nodes":                 "Live nodes in the cluster registry at this node's last refresh, itself included; 0 without a cluster.",
		"ferry_cluster_rooms_owned":           "Rooms this node holds a claim on in the room directory.",
		"ferry_cluster_room_claims_total":     "Rooms this node claimed for its first publisher.",
		"ferry_cluster_rooms_lost_total":      "Rooms this node owned that another node claimed while this one was cut from Redis; their sessions here were ended.",
		"ferry_cluster_redirects_total":       "WHIP and WHEP requests answered 307 to the node that owns the room, by method.",
		"ferry_cluster_local_decisions_total": "Room routes and quota checks this node decided alone because Redis did not answer, by what.",
		"ferry_cluster_redis_commands_total":  "Commands this node sent to Redis (each command of a pipeline counts).",
		"ferry_cluster_redis_errors_total":    "Exchanges with Redis that failed (a pipeline counts once).",
		"ferry_cluster_redis_outages_total":   "Times Redis stopped answering this node (each is logged once, until Redis answers again).",
		"ferry_cluster_refreshes_total":       "Refreshes of this node's record, room claims and quota counts that reached Redis (every cluster.ttl/3).",
	}
}

// UserMeters are the metrics of the users shared through Redis (auth.users_redis). The
// server makes them whether or not the store is on, so that every family is always exported.
type UserMeters struct {
	syncs, updates, errors *metrics.Counter
	outages, expired       *metrics.Counter
	users                  atomic.Pointer[Users]
}

// NewUserMeters registers the metrics of the shared users in set.
func NewUserMeters(set *metrics.Set) *UserMeters {
	m := &UserMeters{
		syncs:   set.NewCounter("ferry_auth_redis_syncs_total"),
		updates: set.NewCounter("ferry_auth_redis_updates_total"),
		errors:  set.NewCounter("ferry_auth_redis_errors_total"),
		outages: set.NewCounter("ferry_auth_redis_outages_total"),
		expired: set.NewCounter("ferry_auth_redis_expired_total"),
	}
	set.NewGauge("ferry_auth_redis_up", func() float64 {
		if u := m.users.Load(); u != nil && u.up.Load() {
			return 1
		}
		return 0
	})
	set.NewGauge("ferry_auth_redis_users", func() float64 {
		if u := m.users.Load(); u != nil {
			return float64(u.Len())
		}
		return 0
	})
	return m
}

// UserMetricsHelp returns the HELP text of each metric family of the shared users.
func UserMetricsHelp() map[string]string {
	return map[string]string{
		"ferry_auth_redis_up":            "1 while the Redis of auth.users_redis answers, 0 when it does not or users_redis is off.",
		"ferry_auth_redis_users":         "Users of the server's realm this node holds from Redis (auth.users_redis).",
		"ferry_auth_redis_syncs_total":   "Full reads of the realm's users from Redis that succeeded (at start, every 10 s, and after each reconnection).",
		"ferry_auth_redis_updates_total": "Single users read again from Redis because a `ferry user` command published a change.",
		"ferry_auth_redis_errors_total":  "Exchanges with the Redis of auth.users_redis that failed.",
		"ferry_auth_redis_outages_total": "Times the Redis of auth.users_redis stopped answering (each is logged once, until it answers again).",
		"ferry_auth_redis_expired_total": "Times the users read from Redis were dropped because Redis had not answered for auth.users_redis_max_stale.",
	}
}

// commandCounter counts the commands sent to Redis.
type commandCounter struct{ m *Meters }

func (h commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.m.commands.Inc()
		return next(ctx, cmd)
	}
}

func (h commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.m.commands.Add(len(cmds))
		return next(ctx, cmds)
	}
}
