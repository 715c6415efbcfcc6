package sfu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
)

const (
	maxSDP  = 64 << 10 // an offer with a few dozen tracks is well under this
	maxForm = 1 << 10  // the layer form: one rid
	// bodyTimeout is how long a client has to send a request body (a slow one holds a
	// connection and a goroutine).
	bodyTimeout   = 10 * time.Second
	answerTimeout = 10 * time.Second
)

// streamHeader names, in a 201, the stream a session publishes or watches: a publisher's
// own stream id is not in its resource URL, which is secret.
const streamHeader = "Ferry-Stream"

// Handler serves WHIP (RFC 9725), WHEP, the session resources, the rooms API and the room
// event feeds, with CORS so a page on another origin can use them.
func (s *SFU) Handler(demo http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/{room}", s.handleWHIP)
	mux.HandleFunc("POST /whep/{room}", s.handleWHEP)
	mux.HandleFunc("POST /whep/{room}/{stream}", s.handleWHEP)
	mux.HandleFunc("GET /session/{resource}", s.handleSessionInfo)
	mux.HandleFunc("PATCH /session/{resource}", s.handlePatch)
	mux.HandleFunc("DELETE /session/{resource}", s.handleDelete)
	mux.HandleFunc("POST /session/{resource}/layer", s.handleLayer)
	mux.HandleFunc("GET /api/rooms", s.handleRooms)
	mux.HandleFunc("GET /api/rooms/{room}", s.handleRoom)
	mux.HandleFunc("GET /api/rooms/{room}/events", s.handleEvents)
	if demo != nil {
		mux.Handle("GET /", demo)
	}
	return cors(mux)
}

// cors lets pages of any origin use the API: access is by token, not by cookie.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "Location, Link, ETag, Content-Type, Retry-After, "+streamHeader)
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func canPublish(c auth.Claims) bool   { return c.Publish }
func canSubscribe(c auth.Claims) bool { return c.Subscribe }

// authorize checks the access token (bearerToken) and returns who holds it: 401 when it is
// missing or invalid, 403 when it is for another room or lacks the right. A token for room
// "*" is valid in every room.
func (s *SFU) authorize(w http.ResponseWriter, r *http.Request, room string, right func(auth.Claims) bool) (owner, bool) {
	token := bearerToken(r)
	if token == "" {
		unauthorized(w, "", "missing access token")
		return owner{}, false
	}
	claims, err := auth.ParseToken(s.cfg.TokenSecret(), token, time.Now())
	if err != nil {
		unauthorized(w, "invalid_token", err.Error())
		return owner{}, false
	}
	if (claims.Room != room && claims.Room != "*") || !right(claims) {
		http.Error(w, fmt.Sprintf("the token does not allow this in room %q", room), http.StatusForbidden)
		return owner{}, false
	}
	return ownerOf(r, token, claims.Expiry), true
}

// limitBody caps r's body at limit bytes and gives the client bodyTimeout to send it: the
// server has no read timeout, which would cut the long-lived event feeds. After a failed
// read the deadline stays, so that net/http does not wait for the rest of the body before
// it answers; readBody lifts it once the body is read.
func limitBody(w http.ResponseWriter, r *http.Request, limit int64) *http.ResponseController {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	return rc
}

// readBody reads a small request body (an offer or a trickle fragment).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := limitBody(w, r, maxSDP)
	body, err := io.ReadAll(r.Body)
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{}) // an answer may take answerTimeout more
	}
	return body, err
}

// bodyFailed answers a request whose body could not be read: 413 over the limit, 408 when
// it came too slowly, 400 otherwise.
func bodyFailed(w http.ResponseWriter, what string, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		http.Error(w, what+" too large", http.StatusRequestEntityTooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		http.Error(w, what+" not sent in time", http.StatusRequestTimeout)
	default:
		http.Error(w, what+" unreadable", http.StatusBadRequest)
	}
}

func readOffer(w http.ResponseWriter, r *http.Request) (string, bool) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
		http.Error(w, "want Content-Type: application/sdp", http.StatusUnsupportedMediaType)
		return "", false
	}
	body, err := readBody(w, r)
	if err != nil {
		bodyFailed(w, "offer", err)
		return "", false
	}
	return string(body), true
}

func (s *SFU) handleWHIP(w http.ResponseWriter, r *http.Request) {
	s.handleOffer(w, r, true, func(ctx context.Context, room, offer string, o owner) (*session, string, error) {
		return s.publish(ctx, room, r.URL.Query().Get("name"), offer, o)
	})
}

func (s *SFU) handleWHEP(w http.ResponseWriter, r *http.Request) {
	s.handleOffer(w, r, false, func(ctx context.Context, room, offer string, o owner) (*session, string, error) {
		return s.subscribe(ctx, room, r.PathValue("stream"), r.URL.Query().Get("layer"), offer, o)
	})
}

// handleOffer is the shared part of WHIP (publish) and WHEP: the token, the room's node (a
// 307 to another), a session slot of its token and source address, the offer, a session
// made by open within answerTimeout, and the 201. The slot is the session's from then on,
// and end gives it back; a session that could not be made gives it back here.
func (s *SFU) handleOffer(w http.ResponseWriter, r *http.Request, publish bool,
	open func(ctx context.Context, room, offer string, o owner) (*session, string, error)) {
	room := r.PathValue("room")
	right := canSubscribe
	if publish {
		right = canPublish
	}
	o, ok := s.authorize(w, r, room, right)
	if !ok || s.routed(w, r, room, publish) {
		return
	}
	lim := s.limits()
	if !s.admit(w, s.sessionSlots, o, lim.SessionsPerToken, lim.SessionsPerIP) {
		return
	}
	offer, ok := readOffer(w, r)
	if !ok {
		s.sessionSlots.release(o)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), answerTimeout)
	defer cancel()
	sess, answer, err := open(ctx, room, offer, o)
	if err != nil {
		s.sessionSlots.release(o)
	}
	s.created(w, sess, answer, err)
}

// Redirect is where a request for a room is served when not here (see Config.Route): URL is
// the base URL of the node that serves it; with URL "", RetryAfter > 0 says that the room's
// node cannot be reached now (503).
type Redirect struct {
	URL        string
	RetryAfter time.Duration
}

// routed answers a request for room that another node serves: 307 to the same path and
// query there, with the access token in the query (RFC 9725 allows redirects; a client
// drops the Authorization header when a redirect leaves the host, and Ferry reads
// ?token=), or 503 with Retry-After when that node cannot be reached now. false when the
// request is served here.
func (s *SFU) routed(w http.ResponseWriter, r *http.Request, room string, publish bool) bool {
	if s.cfg.Route == nil {
		return false
	}
	rd := s.cfg.Route(r.Context(), room, publish)
	switch {
	case rd.URL != "":
		q := r.URL.Query()
		if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			q.Set("token", token)
		}
		loc := strings.TrimSuffix(rd.URL, "/") + r.URL.EscapedPath()
		if len(q) > 0 {
			loc += "?" + q.Encode()
		}
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return true
	case rd.RetryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(int((rd.RetryAfter+time.Second-1)/time.Second)))
		http.Error(w, "the node that serves this room does not answer now; it is free again after the Retry-After", http.StatusServiceUnavailable)
		return true
	}
	return false
}

// created writes the 201 answer of a new session with its resource URL and ICE servers
// (RFC 9725 section 4.6), or the error.
func (s *SFU) created(w http.ResponseWriter, sess *session, answer string, err error) {
	switch {
	case errors.Is(err, errNoStream):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case errors.Is(err, errNotLive):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case errors.Is(err, errBadOffer), errors.Is(err, errNotPublish), errors.Is(err, errBadName):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case errors.Is(err, errNoMedia):
		// The offer is valid SDP, but no track of the stream can go to it: the same offer
		// will never do, so neither 503 (retry later) nor 400 (malformed) fits.
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	case errors.Is(err, errDraining):
		w.Header().Set("Retry-After", "30")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		s.log.Warn("sfu: session failed", "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/session/"+sess.resource)
	h.Set("ETag", `"`+sess.id+`"`)
	h.Set(streamHeader, sess.streamID())
	cred := TURNCredential{Session: sess.id, Token: sess.owner.token, Expiry: sess.owner.expiry}
	for _, link := range linkHeaders(s.cfg.ICEServers(cred)) {
		h.Add("Link", link)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// linkHeaders renders ICE servers as RFC 9725 section 4.6 Link headers.
func linkHeaders(servers []auth.ICEServer) []string {
	var out []string
	for _, srv := range servers {
		for _, url := range srv.URLs {
			link := fmt.Sprintf("<%s>; rel=\"ice-server\"", url)
			if srv.Username != "" {
				link += fmt.Sprintf("; username=%q; credential=%q; credential-type=\"password\"", srv.Username, srv.Credential)
			}
			out = append(out, link)
		}
	}
	return out
}

// handlePatch applies trickled candidates, or restarts ICE when the fragment brings new
// credentials (RFC 9725 section 4.4).
func (s *SFU) handlePatch(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.sessionOf(w, r)
	if !ok {
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/trickle-ice-sdpfrag") {
		http.Error(w, "want Content-Type: application/trickle-ice-sdpfrag", http.StatusUnsupportedMediaType)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		bodyFailed(w, "fragment", err)
		return
	}
	frag := parseFragment(string(body))
	remote := sess.pc.RemoteDescription()
	if frag.ufrag != "" && remote != nil && !strings.Contains(remote.SDP, "a=ice-ufrag:"+frag.ufrag+"\r\n") {
		s.restartICE(w, r, sess, frag)
		return
	}
	for _, c := range frag.candidates {
		if err := s.addCandidate(sess, c); err != nil {
			http.Error(w, "bad candidate: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// restartICE answers a PATCH with new ICE credentials: the session's offer, as the gate
// let it through, with those credentials is applied again (RFC 9725 section 4.4.2).
func (s *SFU) restartICE(w http.ResponseWriter, r *http.Request, sess *session, frag fragment) {
	if !iceCredentials(frag.ufrag, frag.pwd) {
		http.Error(w, "ICE restart: bad ice-ufrag or ice-pwd", http.StatusBadRequest)
		return
	}
	offer, err := parseOffer(sess.pc.RemoteDescription().SDP)
	if err != nil {
		http.Error(w, "ICE restart: "+err.Error(), http.StatusBadRequest)
		return
	}
	setICECredentials(offer, frag.ufrag, frag.pwd)
	ctx, cancel := context.WithTimeout(r.Context(), answerTimeout)
	defer cancel()
	answer, err := s.answer(ctx, sess, offer)
	if err != nil {
		http.Error(w, "ICE restart: "+err.Error(), http.StatusBadRequest)
		return
	}
	for _, c := range frag.candidates {
		_ = s.addCandidate(sess, c)
	}
	w.Header().Set("Content-Type", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, answerFragment(answer))
}

// handleSessionInfo describes a session to its creator, as the admin API does: a publisher
// learns how many watch it.
func (s *SFU) handleSessionInfo(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.sessionOf(w, r)
	if !ok {
		return
	}
	writeJSON(w, sess.describe(time.Now()))
}

func (s *SFU) handleDelete(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.sessionOf(w, r)
	if !ok {
		return
	}
	s.end(sess)
	w.WriteHeader(http.StatusOK)
}

// handleLayer pins a subscriber's simulcast layer (form value layer = a rid), or returns
// it to automatic choice (layer empty).
func (s *SFU) handleLayer(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.sessionOf(w, r)
	if !ok {
		return
	}
	if sess.sub == nil {
		http.Error(w, "a publisher has no layer to pin", http.StatusNotFound)
		return
	}
	limitBody(w, r, maxForm)
	if err := r.ParseForm(); err != nil {
		bodyFailed(w, "form", err)
		return
	}
	rid := r.FormValue("layer")
	for _, d := range sess.sub.downs {
		if d.track.kind == webrtc.RTPCodecTypeVideo {
			d.pin(rid)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
