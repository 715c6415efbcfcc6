package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:9642": true, "[::1]:9642": true, "localhost:9642": true, "localhost": true,
		"attacker.example:9642": false, "192.0.2.10:9642": false, "": false,
	} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestSetSecretGeneratesOnce(t *testing.T) {
	side := &sfuSide{}
	if !side.setSecret("") || *side.tokenSecret.Load() == "" {
		t.Fatal("an empty secret was not replaced by a generated one")
	}
	generated := *side.tokenSecret.Load()
	if side.setSecret("configured-secret-0123") || *side.tokenSecret.Load() != "configured-secret-0123" {
		t.Fatal("a configured secret was not taken")
	}
	if side.setSecret("") || *side.tokenSecret.Load() != generated {
		t.Fatal("emptying the secret again did not go back to the generated one")
	}
}

// TestPprofHandler: the profiler's pages are served on their own mux, and nothing else is.
func TestPprofHandler(t *testing.T) {
	h := pprofHandler()
	for path, want := range map[string]int{
		"/debug/pprof/":        http.StatusOK,
		"/debug/pprof/cmdline": http.StatusOK,
		"/debug/pprof/heap":    http.StatusOK,
		"/metrics":             http.StatusNotFound,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}
}
