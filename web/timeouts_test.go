package web

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/httpdeadline/slowsender"
)

// Issue 9 row 14: a client that sends headers and then trickles the body held a dashboard
// connection open indefinitely. With http.read_timeout the server closes it; the same for
// headers that never end (http.read_header_timeout). Event streams, which have no body,
// outlive the read timeout.
func TestSlowBodyConnectionIsClosed(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.ReadTimeout = 300 * time.Millisecond
		c.ReadHeaderTimeout = 300 * time.Millisecond
	})
	addr := env.srv.Addr()

	// Unauthenticated: the login form, whose body would take 1000 × 50 ms = 50 s.
	r := slowsender.Send(t, addr, "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded", 1000, 50*time.Millisecond, 30*time.Second)
	if r.Status >= 200 && r.Status < 400 {
		t.Errorf("slow login body answered %d", r.Status)
	}
	// Authenticated: an API call with a JSON body.
	r = slowsender.Send(t, addr, "POST /api/v1/test-request HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testToken+"\r\nContent-Type: application/json", 1000, 50*time.Millisecond, 30*time.Second)
	if r.Status >= 200 && r.Status < 400 {
		t.Errorf("slow API body answered %d", r.Status)
	}

	// Headers that never end.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection with unfinished headers still open after 30 s")
			}
			break
		}
		if strings.Contains(string(buf[:n]), "200 OK") {
			t.Fatalf("unfinished headers answered: %s", buf[:n])
		}
	}

	// An event stream outlives the read timeout: it has no body to wait for.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := env.readEvents(ctx, "/api/v1/events")
	start := time.Now()
	n := 0
	for time.Since(start) < 5*env.srv.cfg.ReadTimeout || n < 3 {
		if _, ok := <-events; !ok {
			t.Fatalf("event stream ended after %d events", n)
		}
		n++
	}
}
