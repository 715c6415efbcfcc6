package sfu

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestBodyFailed: a body that could not be read is answered by why: too large (413), too
// slow (408: the read deadline passed, as the connection reports it), or broken (400).
func TestBodyFailed(t *testing.T) {
	tooLarge := func() error {
		rec := httptest.NewRecorder()
		_, err := io.ReadAll(http.MaxBytesReader(rec, io.NopCloser(strings.NewReader("12345")), 4))
		return err
	}()
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"over the limit", tooLarge, http.StatusRequestEntityTooLarge},
		{"read deadline", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, http.StatusRequestTimeout},
		{"cut short", io.ErrUnexpectedEOF, http.StatusBadRequest},
		{"anything else", errors.New("chunked encoding: bad"), http.StatusBadRequest},
	} {
		rec := httptest.NewRecorder()
		bodyFailed(rec, "offer", tc.err)
		if rec.Code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, rec.Code, rec.Body.String(), tc.want)
		}
	}
}
