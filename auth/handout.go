package auth

import (
	"net/netip"
	"time"
)

// Endpoint is a listener as clients reach it.
type Endpoint struct {
	Proto string         // "udp", "tcp", "tls" or "dtls"
	Addr  netip.AddrPort // advertised address (not a wildcard)
}

// URIs returns the RFC 7064/7065 URIs of endpoints: one stun: URI per UDP listener, and a
// turn: or turns: URI with its transport for every listener.
func URIs(endpoints []Endpoint) (stunURIs, turnURIs []string) {
	for _, e := range endpoints {
		hostPort := e.Addr.String()
		switch e.Proto {
		case "udp":
			stunURIs = append(stunURIs, "stun:"+hostPort)
			turnURIs = append(turnURIs, "turn:"+hostPort+"?transport=udp")
		case "tcp":
			turnURIs = append(turnURIs, "turn:"+hostPort+"?transport=tcp")
		case "tls":
			turnURIs = append(turnURIs, "turns:"+hostPort+"?transport=tcp")
		case "dtls":
			turnURIs = append(turnURIs, "turns:"+hostPort+"?transport=udp")
		}
	}
	return stunURIs, turnURIs
}

// RESTResponse is the TURN REST API response (draft-uberti-behave-turn-rest-00 section 2.2).
type RESTResponse struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	TTL      int64    `json:"ttl"` // seconds
	URIs     []string `json:"uris"`
}

// NewRESTResponse mints a credential for user under secret, valid for ttl from now.
func NewRESTResponse(secret, user string, ttl time.Duration, now time.Time, uris []string) RESTResponse {
	username, password := RESTCredential(secret, user, ttl, now)
	return RESTResponse{Username: username, Password: password, TTL: int64(ttl / time.Second), URIs: uris}
}

// ICEServer is one entry of RTCConfiguration.iceServers (W3C WebRTC).
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// ICEServers returns the iceServers list for a credential: the STUN URIs, then the TURN
// URIs with the credential.
func ICEServers(stunURIs []string, cred RESTResponse) []ICEServer {
	var out []ICEServer
	if len(stunURIs) > 0 {
		out = append(out, ICEServer{URLs: stunURIs})
	}
	if len(cred.URIs) > 0 {
		out = append(out, ICEServer{URLs: cred.URIs, Username: cred.Username, Credential: cred.Password})
	}
	return out
}
