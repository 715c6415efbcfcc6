package sfu

// What a WHEP viewer is sent, with pion clients on loopback against a live SFU: only the
// stream's codecs, only the tracks its offer can take (the others' sections rejected), a
// 422 saying why when it can take none, and a track id for every track.

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/relay"
)

const viewerSecret = "viewer-token-secret-0123456789"

// Client codecs, as browsers offer them.
var (
	clientOpus = codec{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType: 109}, webrtc.RTPCodecTypeAudio}
	clientVP8 = codec{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 120}, webrtc.RTPCodecTypeVideo}
	clientVP9 = codec{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}, PayloadType: 121},
		webrtc.RTPCodecTypeVideo}
	clientH264 = codec{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 126},
		webrtc.RTPCodecTypeVideo}
)

// viewerServer is an SFU on 127.0.0.1 behind an HTTP test server, and a token for its room.
type viewerServer struct {
	sfu   *SFU
	url   string
	token string
}

func newViewerServer(t *testing.T) *viewerServer {
	t.Helper()
	pool, err := relay.NewPool(19800, 19819)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Pool: pool, BindIP: netip.MustParseAddr("127.0.0.1"),
		TokenSecret: func() string { return viewerSecret },
		ICEServers:  func(TURNCredential) []auth.ICEServer { return nil },
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler(nil))
	t.Cleanup(func() {
		srv.Close()
		_ = s.Close()
	})
	token, err := auth.NewToken(viewerSecret, auth.Claims{Room: "codecs", Publish: true, Subscribe: true,
		Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return &viewerServer{sfu: s, url: srv.URL, token: token}
}

// clientPeer is a pion client knowing only the given codecs, with loopback candidates.
func clientPeer(t *testing.T, with ...codec) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range with {
		if err := m.RegisterCodec(c.params, c.typ); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// post sends pc's complete offer, changed by edit (nil: as it is), to path and returns the
// status, the body and the headers of the answer; a 201's answer is applied to pc.
func (v *viewerServer) post(t *testing.T, pc *webrtc.PeerConnection, path string, edit func(string) string) (int, string, http.Header) {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	body := pc.LocalDescription().SDP
	if edit != nil {
		body = edit(body)
	}
	req, _ := http.NewRequest(http.MethodPost, v.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusCreated {
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
			t.Fatalf("the answer does not apply: %v\n%s", err, answer)
		}
	}
	return resp.StatusCode, string(answer), resp.Header
}

// publish publishes one track of each codec (ids "pub-audio", "pub-video"), with its offer
// changed by edit, sends packets on them until the test ends, and returns the stream id
// once the SFU knows every track.
func (v *viewerServer) publish(t *testing.T, edit func(string) string, with ...codec) string {
	t.Helper()
	pc := clientPeer(t, with...)
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, c := range with {
		track, err := webrtc.NewTrackLocalStaticRTP(c.params.RTPCodecCapability, "pub-"+c.typ.String(), "pub")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTrack(track); err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, track)
	}
	status, answer, h := v.post(t, pc, "/whip/codecs", edit)
	if status != http.StatusCreated {
		t.Fatalf("WHIP: %d %s", status, answer)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go sendKeyframes(tracks, stop, done)
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	id := h.Get(streamHeader)
	waitFor(t, "the stream's tracks", func() bool {
		for _, r := range v.sfu.Rooms() {
			for _, st := range r.Streams {
				if st.ID == id && len(st.Tracks) == len(with) {
					return true
				}
			}
		}
		return false
	})
	return id
}

// sendKeyframes writes a packet to every track each 10 ms until stop: video packets are
// keyframes (a VP8 key frame, an H.264 IDR slice), so a viewer starts at any of them.
func sendKeyframes(tracks []*webrtc.TrackLocalStaticRTP, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := uint16(0); ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for _, track := range tracks {
			payload := []byte{0xf8, 0xff, 0xfe} // an Opus frame of silence
			switch track.Codec().MimeType {
			case webrtc.MimeTypeVP8:
				payload = []byte{0x10, 0x00, 0x9d, 0x01, 0x2a}
			case webrtc.MimeTypeH264:
				payload = []byte{0x65, 0x88, 0x84, 0x00}
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: n, Timestamp: uint32(n) * 960,
				Marker: true}, Payload: payload})
		}
	}
}

// viewer is a recvonly client of the given codecs with a section for each kind, in order.
func viewer(t *testing.T, kinds []webrtc.RTPCodecType, with ...codec) *webrtc.PeerConnection {
	t.Helper()
	pc := clientPeer(t, with...)
	for _, kind := range kinds {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	return pc
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// answerSections parses an answer into its media sections.
func answerSections(t *testing.T, answer string) []*sdp.MediaDescription {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		t.Fatalf("answer: %v\n%s", err, answer)
	}
	return d.MediaDescriptions
}

// rtpmapNames are the codec names a section's rtpmap lines list.
func rtpmapNames(m *sdp.MediaDescription) []string {
	var out []string
	for _, a := range m.Attributes {
		if a.Key == "rtpmap" {
			_, enc, _ := strings.Cut(a.Value, " ")
			name, _, _ := strings.Cut(enc, "/")
			out = append(out, name)
		}
	}
	return out
}

// TestViewerWithoutVideoCodec: a viewer of VP8 and Opus (Firefox without H.264) watching an
// H.264 and Opus stream gets a 201 whose answer rejects its video section (port 0, JSEP's
// "none of the offered formats is supported") and accepts its audio section with Opus and
// the SFU's candidates, and then receives the audio: not a 503 for a mismatch that will
// never go away.
func TestViewerWithoutVideoCodec(t *testing.T) {
	v := newViewerServer(t)
	stream := v.publish(t, nil, clientH264, clientOpus)

	// Video first, as browsers order a viewer's sections: the rejected section is the
	// first, which carried the answer's candidates in pion's answer.
	pc := viewer(t, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}, clientVP8, clientOpus)
	audio := make(chan *webrtc.TrackRemote, 2)
	var videoArrived atomic.Bool
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if remote.Kind() == webrtc.RTPCodecTypeVideo {
			videoArrived.Store(true)
			return
		}
		audio <- remote
	})
	status, answer, _ := v.post(t, pc, "/whep/codecs/"+stream, nil)
	if status != http.StatusCreated {
		t.Fatalf("WHEP of a viewer without H.264: %d %q, want 201 with audio only", status, answer)
	}
	sections := answerSections(t, answer)
	if len(sections) != 2 {
		t.Fatalf("the answer has %d sections, want 2:\n%s", len(sections), answer)
	}
	if m := sections[0]; m.MediaName.Media != "video" || m.MediaName.Port.Value != 0 {
		t.Errorf("the video section is %s port %d, want video rejected with port 0:\n%s", m.MediaName.Media, m.MediaName.Port.Value, answer)
	}
	if m := sections[1]; m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 || !slices.Equal(rtpmapNames(m), []string{"opus"}) {
		t.Errorf("the audio section is %s port %d with %v, want audio accepted with opus:\n%s", m.MediaName.Media,
			m.MediaName.Port.Value, rtpmapNames(m), answer)
	}
	if _, ok := sections[1].Attribute("candidate"); !ok {
		t.Errorf("the accepted audio section has no candidate (a browser takes none from a rejected one):\n%s", answer)
	}

	select {
	case remote := <-audio:
		if _, _, err := remote.ReadRTP(); err != nil {
			t.Fatalf("reading the audio: %v", err)
		}
		if !strings.EqualFold(remote.Codec().MimeType, webrtc.MimeTypeOpus) || remote.ID() != "pub-audio" {
			t.Errorf("received %s track %q, want the publisher's opus track pub-audio", remote.Codec().MimeType, remote.ID())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no audio within 10 s (connection %s)", pc.ConnectionState())
	}
	if videoArrived.Load() {
		t.Error("a video track arrived on a rejected section")
	}
}

// TestViewerTakesNothing: a viewer whose offer can take no track of the stream (VP8 video
// only, against H.264 and Opus; or Opus only against a video-only stream) gets 422 with a
// body that names what the stream carries and what the offer takes, and no session.
func TestViewerTakesNothing(t *testing.T) {
	v := newViewerServer(t)
	stream := v.publish(t, nil, clientH264, clientOpus)
	pc := viewer(t, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}, clientVP8, clientVP9)
	status, body, _ := v.post(t, pc, "/whep/codecs/"+stream, nil)
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("WHEP of a VP8-only viewer of an H.264 stream: %d %q, want 422", status, body)
	}
	for _, want := range []string{"none of the stream's tracks", "video track pub-video (H264)",
		"takes only VP8, VP9", "audio track pub-audio (opus)", "no audio section"} {
		if !strings.Contains(body, want) {
			t.Errorf("the 422's body %q does not say %q", body, want)
		}
	}
	if n := v.sfu.Sessions(); n != 1 {
		t.Errorf("%d sessions after the 422, want only the publisher's", n)
	}

	videoOnly := v.publish(t, nil, clientVP8)
	pc = viewer(t, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}, clientOpus)
	if status, body, _ := v.post(t, pc, "/whep/codecs/"+videoOnly, nil); status != http.StatusUnprocessableEntity ||
		!strings.Contains(body, "no video section") {
		t.Errorf("WHEP of an audio-only viewer of a video-only stream: %d %q, want 422 naming the video", status, body)
	}
}

// TestViewerAnswerCodecs: the answer to a viewer that offers every codec (pion's defaults:
// Opus, G.722, PCMU, PCMA, VP8, VP9, H.264, AV1, H.265, RTX) lists only what the stream
// carries, VP8 and Opus: Ferry forwards, it cannot send anything else.
func TestViewerAnswerCodecs(t *testing.T) {
	v := newViewerServer(t)
	stream := v.publish(t, nil, clientVP8, clientOpus)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	status, answer, _ := v.post(t, pc, "/whep/codecs/"+stream, nil)
	if status != http.StatusCreated {
		t.Fatalf("WHEP: %d %q", status, answer)
	}
	want := map[string][]string{"video": {"VP8"}, "audio": {"opus"}}
	for _, m := range answerSections(t, answer) {
		if got := rtpmapNames(m); !slices.Equal(got, want[m.MediaName.Media]) {
			t.Errorf("the answer's %s section lists %v, want only the stream's %v:\n%s", m.MediaName.Media, got,
				want[m.MediaName.Media], answer)
		}
	}
}

// msidTrackRE matches the a=msid lines of an SDP: stream id, and track id if any.
var msidTrackRE = regexp.MustCompile(`(?m)^a=msid:(\S+)(?: (\S*))?\r?$`)

// TestViewerMadeUpTrackID: a publisher whose offer names no track (a=msid with the stream
// id only, and no a=ssrc msid) has its tracks forwarded with ids Ferry made up, distinct
// and not empty, in the viewer's answer and in the rooms API; a publisher's own ids are
// kept.
func TestViewerMadeUpTrackID(t *testing.T) {
	v := newViewerServer(t)
	dropTrackIDs := func(offer string) string {
		var kept []string
		for _, l := range strings.Split(offer, "\r\n") {
			if strings.HasPrefix(l, "a=ssrc:") && strings.Contains(l, " msid:") {
				continue
			}
			if m := msidTrackRE.FindStringSubmatch(l); m != nil {
				l = "a=msid:" + m[1]
			}
			kept = append(kept, l)
		}
		return strings.Join(kept, "\r\n")
	}
	anonymous := v.publish(t, dropTrackIDs, clientVP8, clientOpus)
	named := v.publish(t, nil, clientVP8, clientOpus)

	for _, c := range []struct {
		stream string
		check  func(ids []string) bool
		want   string
	}{
		{anonymous, func(ids []string) bool {
			return len(ids) == 2 && ids[0] != ids[1] && !slices.Contains(ids, "") &&
				strings.HasPrefix(ids[0], "video-") && strings.HasPrefix(ids[1], "audio-")
		}, "two distinct made-up ids, video-... and audio-..."},
		{named, func(ids []string) bool { return slices.Equal(ids, []string{"pub-video", "pub-audio"}) }, "the publisher's"},
	} {
		pc := viewer(t, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}, clientVP8, clientOpus)
		status, answer, _ := v.post(t, pc, "/whep/codecs/"+c.stream, nil)
		if status != http.StatusCreated {
			t.Fatalf("WHEP: %d %q", status, answer)
		}
		var ids []string
		for _, m := range msidTrackRE.FindAllStringSubmatch(answer, -1) {
			if m[1] != c.stream {
				t.Errorf("a=msid:%s %s names another stream than %s", m[1], m[2], c.stream)
			}
			ids = append(ids, m[2])
		}
		if !c.check(ids) {
			t.Errorf("stream %s: the answer's track ids are %q, want %s:\n%s", c.stream, ids, c.want, answer)
		}
		var api []string
		for _, r := range v.sfu.Rooms() {
			for _, st := range r.Streams {
				for _, tr := range st.Tracks {
					if st.ID == c.stream {
						api = append(api, tr.ID)
					}
				}
			}
		}
		if !slices.Equal(slices.Sorted(slices.Values(api)), slices.Sorted(slices.Values(ids))) {
			t.Errorf("stream %s: the rooms API shows track ids %q, the answer %q", c.stream, api, ids)
		}
	}
}
