package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/ferry-rtc/ferry/conf"
)

// Limits of every HTTP endpoint against slow or oversized requests. The servers set no
// ReadTimeout: it would also cut the SFU's long-lived event feeds (net/http cancels a
// request's context once a read deadline passes), so bodies get a deadline of their own.
const (
	// readHeaderTimeout is how long a client has to send a request's header, counted from
	// the first byte of the request or, on a new connection, from the accept: a connection
	// that sends nothing, or trickles its header (slowloris), is closed then.
	readHeaderTimeout = 5 * time.Second
	// maxHeaderBytes caps a request's header (net/http's default is 1 MiB). The largest
	// legitimate header is a bearer token and a few cookies; a connection that may send a
	// mebibyte in readHeaderTimeout costs that much memory each.
	maxHeaderBytes = 64 << 10
	// bodyTimeout is how long a client has to send a request body, counted from the start of
	// the handler. It also bounds what net/http does with a body a handler left unread (a
	// 401, 404 or 405 answer): it reads up to 256 KiB of it before answering, to keep the
	// connection, and without a deadline a client trickling that body held the connection
	// and its goroutine for as long as it liked.
	bodyTimeout = 10 * time.Second
	// maxBody caps any request body. No endpoint takes more than an SDP offer, which the
	// SFU caps lower.
	maxBody = 1 << 20
)

// limitBody gives a request that carries a body bodyTimeout to send it and caps it at
// maxBody. The read deadline is lifted once the body is read to its end, so a handler
// that then runs long (a WHIP answer) is not cancelled by it; on any other outcome it
// stays, and the connection is closed after the answer.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(bodyTimeout)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody calls lift when the body has been read to its end.
type deadlineBody struct {
	io.ReadCloser
	lift   func()
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		b.lift()
	}
	return n, err
}

// httpServer is one of the server's HTTP endpoints.
type httpServer struct {
	name string
	srv  *http.Server
	addr net.Addr
}

// close lets requests in flight finish for a second, then cuts what is left (event feeds).
func (h *httpServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if h.srv.Shutdown(ctx) != nil {
		_ = h.srv.Close()
	}
}

// startHTTP opens the SFU, metrics and admin endpoints that cfg enables.
func (s *Server) startHTTP(cfg *conf.Config) error {
	if s.sfu != nil {
		if err := s.serveHTTP(cfg, "sfu", "sfu.http", cfg.SFU.HTTP, s.sfu.handler); err != nil {
			return err
		}
	}
	if err := s.serveHTTP(cfg, "metrics", "metrics.listen", cfg.Metrics.Listen, s.metricsHandler()); err != nil {
		return err
	}
	if err := s.serveHTTP(cfg, "admin", "admin.listen", cfg.Admin.Listen, s.adminHandler()); err != nil {
		return err
	}
	return s.serveHTTP(cfg, "pprof", "debug.pprof", cfg.Debug.Pprof, pprofHandler())
}

// pprofHandler serves net/http/pprof's pages on a mux of its own: importing the package
// registers them on http.DefaultServeMux, which no Ferry endpoint serves.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveHTTP serves handler on addr ("" = off); key names addr in the config for errors.
func (s *Server) serveHTTP(cfg *conf.Config, name, key, addr string, handler http.Handler) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen(tcpNetwork(addr), addr)
	if err != nil {
		return cfg.Errorf(key, "%v", err)
	}
	h := &httpServer{name: name, addr: ln.Addr(), srv: &http.Server{
		Handler:           limitBody(handler),
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       time.Minute, // no write or read timeout: event feeds are long
	}}
	s.http = append(s.http, h)
	go func() {
		if err := h.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http endpoint failed", "endpoint", h.name, "err", err)
		}
	}()
	return nil
}

// tcpNetwork is the network an HTTP endpoint at addr, a validated "IP:port", listens on:
// that of the address's family alone, as a TURN listener does. Go's "tcp" would make
// "0.0.0.0" dual-stack, and an IPv4-only firewall rule would not cover the IPv6 side.
func tcpNetwork(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is6() {
		return "tcp6"
	}
	return "tcp4"
}

// httpAddr is the bound address of the named endpoint, or "off".
func (s *Server) httpAddr(name string) string {
	for _, h := range s.http {
		if h.name == name {
			return h.addr.String()
		}
	}
	return "off"
}

// metricsHandler serves /metrics (Prometheus text), /healthz (200 while the listeners
// are up, which they are as long as this answers) and /readyz (503 while draining, so a
// load balancer stops sending new clients).
func (s *Server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.writeMetrics(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// ReloadResult is the admin API's answer to a reload.
type ReloadResult struct {
	Changed []string `json:"changed"`          // keys applied
	Restart []string `json:"restart_required"` // keys that changed but need a restart
	Error   string   `json:"error,omitempty"`
}

// adminHandler is the admin API: sessions (see adminSessions), drain, reload.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	s.adminSessions(mux)
	mux.HandleFunc("GET /v1/drain", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.drainStatus())
	})
	mux.HandleFunc("POST /v1/drain", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.StartDrain(r.RemoteAddr))
	})
	mux.HandleFunc("DELETE /v1/drain", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.CancelDrain(r.RemoteAddr)
		if err != nil {
			writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "status": st})
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, _ *http.Request) {
		res, err := s.Reload()
		if err != nil {
			res.Error = err.Error()
			writeJSON(w, http.StatusUnprocessableEntity, res)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	return s.requireToken(mux)
}

// requireToken checks the bearer token, read at each request so a reload can change it.
// A web page must not drive the admin API from the operator's browser: requests carrying
// an Origin are refused, and without a token only a loopback Host is accepted (DNS
// rebinding would give another name).
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := s.cfg.Load().Admin.Token
		if r.Header.Get("Origin") != "" || (token == "" && !loopbackHost(r.Host)) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "not from a browser page, and only over loopback without a token"})
			return
		}
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ferry admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine over loopback.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
