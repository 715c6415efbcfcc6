package sfu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// feedKeepAlive is how often an idle event feed gets a comment line, so proxies keep it.
const feedKeepAlive = 25 * time.Second

// Rooms describes every room.
func (s *SFU) Rooms() []RoomInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RoomInfo, 0, len(s.rooms))
	for _, r := range s.rooms {
		out = append(out, r.info())
	}
	slices.SortFunc(out, func(a, b RoomInfo) int { return strings.Compare(a.Room, b.Room) })
	return out
}

// handleRooms lists every room; it needs a token for room "*".
func (s *SFU) handleRooms(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authorize(w, r, "*", canSubscribe); !ok {
		return
	}
	writeJSON(w, s.Rooms())
}

func (s *SFU) handleRoom(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("room")
	if _, ok := s.authorize(w, r, name, canSubscribe); !ok || s.routed(w, r, name, false) {
		return
	}
	s.mu.Lock()
	info := RoomInfo{Room: name, Streams: []StreamInfo{}}
	if room, ok := s.rooms[name]; ok {
		info = room.info()
	}
	s.mu.Unlock()
	writeJSON(w, info)
}

// handleEvents is a room's event feed (server-sent events): a "stream" event for every
// stream live now and every new one, a "stream-end" event when one ends. Each feed holds a
// connection and a goroutine, so it takes a slot of its token and source address.
func (s *SFU) handleEvents(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("room")
	o, ok := s.authorize(w, r, name, canSubscribe)
	if !ok || s.routed(w, r, name, false) {
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	lim := s.limits()
	if !s.admit(w, s.feedSlots, o, lim.FeedsPerToken, lim.FeedsPerIP) {
		return
	}
	defer s.feedSlots.release(o)
	feed := newFeed()
	s.mu.Lock()
	room := s.room(name)
	room.feeds[feed] = struct{}{}
	for _, st := range room.streams {
		if st.announced() { // else announced when it is
			room.announceTo(feed, "stream", st.info())
		}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(room.feeds, feed)
		s.dropEmptyRoom(name)
		s.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	keepAlive := time.NewTicker(feedKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-feed.lagged:
			return
		case ev := <-feed.events:
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data)
		case <-keepAlive.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		}
		flusher.Flush()
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
