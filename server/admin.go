package server

import (
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-rtc/ferry/sfu"
	"github.com/ferry-rtc/ferry/turnserver"
)

// The admin API's sessions: GET /v1/sessions lists the TURN allocations (?user= keeps
// those of the users a shell pattern matches, as coturn's `ps USER` and `psp PART` do),
// GET /v1/sfu/sessions the SFU's WHIP and WHEP sessions (?room= keeps one room's),
// DELETE /v1/sessions/{id} ends an allocation or an SFU session by its id, and
// DELETE /v1/sessions?user=U every allocation of user U.

// SFUSession is an SFU session as the admin API shows it: the SFU's description, and the id
// of the TURN allocation of Ferry's that relays the client, if one does.
type SFUSession struct {
	sfu.SessionInfo
	TURNSession string `json:"turn_session,omitempty"`
}

// Sessions are what `ferry sessions list` shows: the live TURN allocations and SFU sessions.
type Sessions struct {
	TURN []turnserver.Session `json:"turn"`
	SFU  []SFUSession         `json:"sfu"`
}

// adminSessions adds the sessions endpoints to the admin API.
func (s *Server) adminSessions(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		list, err := s.turnSessions(r.URL.Query().Get("user"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("GET /v1/sfu/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.sfuSessionList(r.URL.Query().Get("room")))
	})
	mux.HandleFunc("DELETE /v1/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !s.turn.Kill(id) && (s.sfu == nil || !s.sfu.sfu.Kill(id)) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no session " + id})
			return
		}
		s.log.Info("session ended by the admin API", "id", id, "from", r.RemoteAddr)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		if user == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name the user: DELETE /v1/sessions?user=NAME"})
			return
		}
		n := s.turn.KillUser(user)
		if n == 0 {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no session of user " + user})
			return
		}
		s.log.Info("sessions ended by the admin API", "user", user, "sessions", n, "from", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]int{"ended": n})
	})
}

// turnSessions are the live allocations of the users pattern matches ("" = of everyone).
func (s *Server) turnSessions(pattern string) ([]turnserver.Session, error) {
	all := s.turn.Sessions()
	if pattern == "" {
		return all, nil
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("bad user pattern %q: %w", pattern, err)
	}
	out := []turnserver.Session{}
	for _, sess := range all {
		if ok, _ := path.Match(pattern, sess.User); ok {
			out = append(out, sess)
		}
	}
	return out, nil
}

// sfuSessionList describes the SFU's sessions in room ("" = every room). A client whose
// address is the relay address of one of Ferry's allocations is relayed by it, whatever
// candidate type the SFU learnt its address as.
func (s *Server) sfuSessionList(room string) []SFUSession {
	out := []SFUSession{}
	if s.sfu == nil {
		return out
	}
	relays := map[string]string{}
	for _, a := range s.turn.Sessions() {
		relays[a.Relay] = a.ID
	}
	for _, info := range s.sfu.sfu.SessionList(room) {
		sess := SFUSession{SessionInfo: info, TURNSession: relays[info.Client]}
		sess.Relayed = sess.Relayed || sess.TURNSession != ""
		out = append(out, sess)
	}
	return out
}

// WriteTable prints the sessions as two tables, allocations then SFU sessions, the way
// `ferry sessions list` shows them.
func (l Sessions) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TURN allocations: %s\n", countOrNone(len(l.TURN)))
	if len(l.TURN) > 0 {
		fmt.Fprintln(tw, "ID\tUSER\tCLIENT\tTRANSPORT\tRELAY\tAGE\tEXPIRES IN\tTO PEER\tFROM PEER\tPERMISSIONS\tCHANNELS")
	}
	now := time.Now()
	for _, s := range l.TURN {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d pkt %d B\t%d pkt %d B\t%d\t%d\n",
			s.ID, s.User, s.Client, s.Transport, s.Relay, age(s.Age), age(s.Expires.Sub(now).Seconds()),
			s.ToPeerPackets, s.ToPeerBytes, s.FromPeerPackets, s.FromPeerBytes,
			len(s.Permissions), len(s.Channels))
	}
	fmt.Fprintf(tw, "\nSFU sessions: %s\n", countOrNone(len(l.SFU)))
	if len(l.SFU) > 0 {
		fmt.Fprintln(tw, "ID\tROOM\tSTREAM\tROLE\tCLIENT\tPATH\tBITRATE\tLAYER\tAGE\tSTATE")
	}
	for _, s := range l.SFU {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d kbit/s\t%s\t%s\t%s\n",
			s.ID, s.Room, s.Name, s.Role, dash(s.Client), s.path(), s.Bitrate/1000, s.layer(), age(s.Age), s.State)
	}
	return tw.Flush()
}

// path says how the client reaches the SFU: directly, or relayed (by which of Ferry's
// allocations, when one of them relays it), with its candidate type.
func (s SFUSession) path() string {
	switch {
	case s.Candidate == "":
		return "-"
	case s.TURNSession != "":
		return "relayed (allocation " + s.TURNSession + ")"
	case s.Relayed:
		return "relayed (" + s.Candidate + ")"
	}
	return "direct (" + s.Candidate + ")"
}

// layer is a publisher's simulcast layers, or the layer a subscriber gets and how it was
// chosen.
func (s SFUSession) layer() string {
	switch {
	case s.Role == "publisher":
		return dash(strings.Join(s.Layers, "/"))
	case s.Layer == "":
		return "-"
	case s.LayerPinned:
		return s.Layer + " (pinned)"
	}
	return s.Layer + " (auto)"
}

func countOrNone(n int) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprint(n)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(seconds float64) time.Duration {
	return time.Duration(seconds * float64(time.Second)).Round(time.Second)
}
