package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/ferry-rtc/ferry/turnserver"
)

// AdminClient talks to a running Ferry's admin API (`ferry sessions`, `ferry drain`, `ferry reload`).
type AdminClient struct {
	base  string
	token string
	http  *http.Client
}

// NewAdminClient reaches the admin API listening at addr ("IP:port"; a wildcard address is
// reached over loopback).
func NewAdminClient(addr, token string) *AdminClient {
	return &AdminClient{base: "http://" + dialable(addr), token: token, http: &http.Client{Timeout: 30 * time.Second}}
}

// SessionFilter selects sessions: User the TURN allocations of the users a shell pattern
// matches, Room the SFU sessions of a room. Each leaves out the other kind of session,
// which has no user or no room.
type SessionFilter struct{ User, Room string }

// Sessions lists the live TURN allocations and SFU sessions that f selects.
func (c *AdminClient) Sessions(ctx context.Context, f SessionFilter) (Sessions, error) {
	out := Sessions{TURN: []turnserver.Session{}, SFU: []SFUSession{}}
	if f.Room == "" {
		if err := c.do(ctx, http.MethodGet, "/v1/sessions?user="+url.QueryEscape(f.User), http.StatusOK, &out.TURN); err != nil {
			return out, err
		}
	}
	if f.User == "" {
		return out, c.do(ctx, http.MethodGet, "/v1/sfu/sessions?room="+url.QueryEscape(f.Room), http.StatusOK, &out.SFU)
	}
	return out, nil
}

// Kill ends the TURN allocation or SFU session id.
func (c *AdminClient) Kill(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/sessions/"+url.PathEscape(id), http.StatusNoContent, nil)
}

// KillUser ends every TURN allocation of user and returns how many there were.
func (c *AdminClient) KillUser(ctx context.Context, user string) (int, error) {
	var out struct{ Ended int }
	err := c.do(ctx, http.MethodDelete, "/v1/sessions?user="+url.QueryEscape(user), http.StatusOK, &out)
	return out.Ended, err
}

// DrainStatus tells whether the server drains and what is left.
func (c *AdminClient) DrainStatus(ctx context.Context) (DrainStatus, error) {
	var out DrainStatus
	return out, c.do(ctx, http.MethodGet, "/v1/drain", http.StatusOK, &out)
}

// Drain starts a drain that lasts until CancelDrain or a stop; again, it changes nothing.
func (c *AdminClient) Drain(ctx context.Context) (DrainStatus, error) {
	var out DrainStatus
	return out, c.do(ctx, http.MethodPost, "/v1/drain", http.StatusOK, &out)
}

// CancelDrain ends a drain that Drain started.
func (c *AdminClient) CancelDrain(ctx context.Context) (DrainStatus, error) {
	var out DrainStatus
	return out, c.do(ctx, http.MethodDelete, "/v1/drain", http.StatusOK, &out)
}

// Reload makes the server reload its config.
func (c *AdminClient) Reload(ctx context.Context) (ReloadResult, error) {
	var out ReloadResult
	return out, c.do(ctx, http.MethodPost, "/v1/reload", http.StatusOK, &out)
}

func (c *AdminClient) do(ctx context.Context, method, path string, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	if resp.StatusCode != want {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = string(body)
		}
		return fmt.Errorf("admin API: %s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin API: %s %s: %w", method, path, err)
	}
	return nil
}

// dialable turns a listen address into one a client on this host can dial: the wildcard
// becomes loopback.
func dialable(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsUnspecified() {
		return addr
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if ap.Addr().Is6() {
		lo = netip.IPv6Loopback()
	}
	return net.JoinHostPort(lo.String(), fmt.Sprint(ap.Port()))
}

// Probe asks the metrics endpoint at addr (a wildcard is reached over loopback) for path,
// /healthz or /readyz, and returns its URL; an error unless it answers 200.
func Probe(ctx context.Context, addr, path string) (string, error) {
	url := "http://" + dialable(addr) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return url, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return url, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return url, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return url, nil
}
