// Package httpdeadline bounds how long an HTTP server waits for a request body.
//
// net/http offers ReadHeaderTimeout for the headers and ReadTimeout for the whole request,
// but ReadTimeout's deadline stays on the connection while the handler runs: once the body is
// read, the server's background read hits it and cancels the request's context, which ends
// server-sent event streams and slow model calls. Handler sets the deadline only while a body
// is being read and clears it when the body reaches its end, so a sender that trickles a body
// (a slowloris) is cut off and everything else is not.
package httpdeadline

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// Handler wraps h so that the body of each request must arrive within timeout(r) of the
// request's start; the connection is closed when it does not. A timeout of 0 sets no deadline.
func Handler(h http.Handler, timeout func(*http.Request) time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		d := timeout(r)
		if d <= 0 {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
			// Not a net.Conn underneath (an httptest recorder): nothing to bound.
			h.ServeHTTP(w, r)
			return
		}
		r.Body = &body{ReadCloser: r.Body, rc: rc}
		h.ServeHTTP(w, r)
	})
}

type body struct {
	io.ReadCloser
	rc      *http.ResponseController
	cleared bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.cleared {
		// The whole body is in: the rest of the request may take as long as it needs.
		b.cleared = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
