package auth

import (
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Endpoint is a listener as clients reach it.
type Endpoint struct {
	Proto string         // "udp", "tcp", "tls" or "dtls"
	Addr  netip.AddrPort // advertised address (not a wildcard)
	// Name, if set, is the host name clients reach Addr's IP by: a turns: client checks the
	// server's certificate against the host of its URI, and certificates name hosts.
	Name string
}

// hostPort is the host and port of e's URIs: the name if it has one, else the address.
func (e Endpoint) hostPort() string {
	if e.Name != "" {
		return net.JoinHostPort(e.Name, strconv.Itoa(int(e.Addr.Port())))
	}
	return e.Addr.String()
}

// URIs returns the RFC 7064/7065 URIs of endpoints: one stun: URI per UDP listener, and a
// turn: or turns: URI with its transport for every listener. Listeners that differ only by
// address (IPv4 and IPv6) share one URI when they share a name.
func URIs(endpoints []Endpoint) (stunURIs, turnURIs []string) {
	for _, e := range endpoints {
		hostPort := e.hostPort()
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
	return uniq(stunURIs), uniq(turnURIs)
}

// uniq drops the repeats of a list, keeping the first of each in place.
func uniq(list []string) []string {
	seen := make(map[string]bool, len(list))
	out := list[:0]
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
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
