package sfu

import (
	"encoding/json"
	"slices"
	"strings"
)

// room is a set of streams and of event feeds watching them. Guarded by SFU.mu.
type room struct {
	name    string
	streams map[string]*stream
	feeds   map[chan event]struct{}
}

// event is one message of a room's event feed (server-sent events).
type event struct {
	name string // "stream" or "stream-end"
	data []byte
}

// StreamInfo describes a live stream: what the rooms API and the event feed show.
type StreamInfo struct {
	ID          string      `json:"id"`
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

// announceTo sends an event to one feed; a feed too slow to keep up loses it rather than
// blocking the SFU.
func (r *room) announceTo(feed chan event, name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	select {
	case feed <- event{name: name, data: data}:
	default:
	}
}
