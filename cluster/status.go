package cluster

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// Status is the cluster as Redis holds it: the live nodes and the room directory.
type Status struct {
	Nodes []Node     `json:"nodes"`
	Rooms []RoomInfo `json:"rooms"`
}

// RoomInfo is a room of the directory and its owner.
type RoomInfo struct {
	Room  string `json:"room"`
	Owner string `json:"owner"`
	TTLMS int64  `json:"ttl_ms"` // until the claim lapses unless its owner renews it
}

// scanBatch is how many keys one SCAN asks for, and the most keys scanKeys hands over at once.
const scanBatch = 1000

// scanKeys SCANs the keys that match pattern and calls read with them, scanBatch at most
// at a time (a key may come twice: SCAN's guarantee).
func scanKeys(ctx context.Context, rdb *redis.Client, pattern string, read func(batch []string) error) error {
	iter := rdb.Scan(ctx, 0, pattern, scanBatch).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == scanBatch {
			if err := read(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	return read(batch)
}

// ReadStatus reads the cluster's status from the Redis at url, as any node sees it: it
// needs no node to be up (ferry cluster status).
func ReadStatus(ctx context.Context, url string) (Status, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return Status{}, fmt.Errorf("cluster: redis URL: %w", err)
	}
	quietLibrary.Do(func() { redis.SetLogger(debugLogger{}) })
	opts.MaxRetries = 0
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	nodes, err := liveNodes(ctx, rdb, time.Now())
	if err != nil {
		return Status{}, fmt.Errorf("cluster: reading the nodes from %s: %w", redactedURL(url), err)
	}
	rooms, err := readRooms(ctx, rdb)
	if err != nil {
		return Status{}, fmt.Errorf("cluster: reading the rooms from %s: %w", redactedURL(url), err)
	}
	st := Status{Nodes: slices.Collect(maps.Values(nodes)), Rooms: rooms}
	slices.SortFunc(st.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return st, nil
}

// readRooms reads the room directory: a SCAN of the room keys, then each one's owner and
// TTL in one pipeline per batch.
func readRooms(ctx context.Context, rdb *redis.Client) ([]RoomInfo, error) {
	rooms := []RoomInfo{}
	err := scanKeys(ctx, rdb, roomKey("*"), func(batch []string) error {
		var owners []*redis.StringCmd
		var ttls []*redis.DurationCmd
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				owners = append(owners, p.Get(ctx, k))
				ttls = append(ttls, p.PTTL(ctx, k))
			}
			return nil
		}); err != nil && err != redis.Nil {
			return err
		}
		for i, k := range batch {
			if owner, err := owners[i].Result(); err == nil { // else released since the SCAN
				rooms = append(rooms, RoomInfo{Room: strings.TrimPrefix(k, roomKey("")), Owner: owner,
					TTLMS: ttls[i].Val().Milliseconds()})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rooms, func(a, b RoomInfo) int { return cmp.Compare(a.Room, b.Room) })
	return rooms, nil
}

// WriteTable prints the status as two tables, nodes then rooms.
func (st Status) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tTURN\tSFU\tALLOCATIONS\tSFU SESSIONS\tCPU\tROOMS\tVERSION\tUP")
	owned := map[string]int{}
	for _, r := range st.Rooms {
		owned[r.Owner]++
	}
	for _, n := range st.Nodes {
		state := "serving"
		if n.Draining {
			state = "draining"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.0f%%\t%d\t%s\t%s\n", n.Name, state, n.TURN, dash(n.SFU),
			n.Allocations, n.Sessions, n.CPU*100, owned[n.Name], n.Version, time.Since(n.Started).Round(time.Second))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ROOM\tOWNER\tCLAIM EXPIRES IN")
	for _, r := range st.Rooms {
		owner := r.Owner
		if !slices.ContainsFunc(st.Nodes, func(n Node) bool { return n.Name == r.Owner }) {
			owner += " (gone: free when the claim expires)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Room, owner, (time.Duration(r.TTLMS) * time.Millisecond).Round(100*time.Millisecond))
	}
	if len(st.Rooms) == 0 {
		fmt.Fprintln(tw, "(none)\t\t")
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
