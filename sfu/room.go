package sfu

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
)

// room is a set of streams and of event feeds watching them. Guarded by SFU.mu.
type room struct {
	name    string
	streams map[string]*stream
	feeds   map[*feed]struct{}
}

// feed is one client of a room's event feed.
type feed struct {
	events chan event
	lagged chan struct{} // closed when an event could not be queued
	once   sync.Once
}

func newFeed() *feed { return &feed{events: make(chan event, 64), lagged: make(chan struct{})} }

// event is one message of a room's event feed (server-sent events).
type event struct {
	name string // "stream" or "stream-end"
	data []byte
}

// StreamInfo describes a live stream: what the rooms API and the event feed show.
type StreamInfo struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"` // the publisher's (WHIP ?name=), or the id's first 8 characters
	Room        string      `json:"room"`
	Tracks      []TrackInfo `json:"tracks"`
	Subscribers int         `json:"subscribers"`
}

// TrackInfo describes one track of a stream.
type TrackInfo struct {
	ID     string   `json:"id"`
	Kind   string   `json:"kind"`
	Codec  string   `json:"codec"`
	Layers []string `json:"layers"` // simulcast rids, best first; [] without simulcast
}

// RoomInfo describes a room.
type RoomInfo struct {
	Room        string       `json:"room"`
	Streams     []StreamInfo `json:"streams"`
	Subscribers int          `json:"subscribers"`
}

func (r *room) info() RoomInfo {
	info := RoomInfo{Room: r.name, Streams: []StreamInfo{}}
	for _, st := range r.streams {
		si := st.info()
		info.Streams = append(info.Streams, si)
		info.Subscribers += si.Subscribers
	}
	slices.SortFunc(info.Streams, func(a, b StreamInfo) int { return strings.Compare(a.ID, b.ID) })
	return info
}

// announce sends an event to every feed of the room.
func (r *room) announce(name string, v any) {
	for feed := range r.feeds {
		r.announceTo(feed, name, v)
	}
}

// announceTo sends an event to one feed. A feed too slow to keep up is cut rather than
// allowed to block the SFU or silently miss a stream-end: its EventSource reconnects and
// gets a fresh snapshot.
func (r *room) announceTo(f *feed, name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	select {
	case f.events <- event{name: name, data: data}:
	default:
		f.once.Do(func() { close(f.lagged) })
	}
}
