package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
)

// httpClient talks to the SFU: loopback only, every request bounded.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// token mints an SFU access token for room.
func token(room string, publish bool) (string, error) {
	t, err := auth.NewToken(tokenSecret, auth.Claims{Room: room, Publish: publish, Subscribe: !publish,
		Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		return "", fmt.Errorf("access token: %w", err)
	}
	return t, nil
}

// session is a WHIP or WHEP session as the client sees it.
type session struct {
	resource string // absolute URL of the session resource: secret, and wants bearer too
	bearer   string // the access token that made the session
	links    []string
}

// post sends an SDP offer to url (RFC 9725) and returns the answer and the session.
func post(ctx context.Context, url, bearer, offer string) (string, session, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(offer))
	if err != nil {
		return "", session{}, fmt.Errorf("POST %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", session{}, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", session{}, fmt.Errorf("POST %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", session{}, fmt.Errorf("POST %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	base := url[:strings.Index(url[len("http://"):], "/")+len("http://")]
	sess := session{resource: base + resp.Header.Get("Location"), bearer: bearer, links: resp.Header.Values("Link")}
	return string(body), sess, nil
}

// request sends a body-less or sdpfrag request to the session resource, with the
// session's token, and wants status.
func (sess session) request(ctx context.Context, method, frag string, status int) error {
	req, err := http.NewRequestWithContext(ctx, method, sess.resource, strings.NewReader(frag))
	if err != nil {
		return fmt.Errorf("%s session: %w", method, err)
	}
	req.Header.Set("Authorization", "Bearer "+sess.bearer)
	if frag != "" {
		req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s session: %w", method, err)
	}
	resp.Body.Close()
	if resp.StatusCode != status {
		return fmt.Errorf("%s session: %s", method, resp.Status)
	}
	return nil
}

// exchange runs the RFC 9725 exchange for pc against url: POST the offer, apply the answer,
// gather, and trickle the local candidates with one PATCH.
func exchange(ctx context.Context, pc *webrtc.PeerConnection, url, bearer string) (session, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return session{}, fmt.Errorf("offer: %w", err)
	}
	answer, sess, err := post(ctx, url, bearer, offer.SDP)
	if err != nil {
		return session{}, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return sess, fmt.Errorf("set offer: %w", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return sess, fmt.Errorf("set answer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return sess, fmt.Errorf("ICE gathering: %w", ctx.Err())
	}
	return sess, sess.request(ctx, http.MethodPatch, candidates(pc.LocalDescription().SDP), http.StatusNoContent)
}

// candidates is the trickle-ice-sdpfrag of a local description's candidates.
func candidates(local string) string {
	var frag strings.Builder
	for l := range strings.SplitSeq(local, "\r\n") {
		if strings.HasPrefix(l, "a=ice-ufrag:") || strings.HasPrefix(l, "a=ice-pwd:") || strings.HasPrefix(l, "m=") ||
			strings.HasPrefix(l, "a=mid:") || strings.HasPrefix(l, "a=candidate:") {
			frag.WriteString(l + "\r\n")
		}
	}
	return frag.String()
}

var linkRE = regexp.MustCompile(`^<([^>]+)>; rel="ice-server"(?:; username="([^"]*)"; credential="([^"]*)"; credential-type="password")?$`)

// iceServers reads RFC 9725 Link headers.
func iceServers(links []string) ([]webrtc.ICEServer, error) {
	var out []webrtc.ICEServer
	for _, l := range links {
		m := linkRE.FindStringSubmatch(l)
		if m == nil {
			return nil, fmt.Errorf("link header %q is not an RFC 9725 ice-server link", l)
		}
		srv := webrtc.ICEServer{URLs: []string{m[1]}}
		if m[2] != "" {
			srv.Username, srv.Credential = m[2], m[3]
		}
		out = append(out, srv)
	}
	return out, nil
}
