// Package slowsender is a test client that sends an HTTP request's headers, then trickles its
// body a byte at a time, the way a slowloris attacker or a stalled sender does. Tests use it
// to prove that a server closes such connections.
package slowsender

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// Result is what the server did with a slow request.
type Result struct {
	// Status is the status code the server answered with, 0 if it closed without answering.
	Status int
	// BytesSent is how many body bytes were written before the server closed.
	BytesSent int
}

// Send writes head (a request line and headers, without the blank line) announcing a body of
// bodyLen bytes, then one body byte every gap until the server closes the connection or the
// whole body is sent. It fails the test when the connection is still open after within.
func Send(t testing.TB, addr, head string, bodyLen int, gap, within time.Duration) Result {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head = strings.TrimRight(head, "\r\n") + fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", bodyLen)
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	// The reader sees the server's answer, if any, and the close.
	type answer struct {
		status int
		err    error
	}
	answers := make(chan answer, 1)
	go func() {
		conn.SetReadDeadline(time.Now().Add(within))
		br := bufio.NewReader(conn)
		status := 0
		if resp, err := http.ReadResponse(br, nil); err == nil {
			status = resp.StatusCode
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		// Then wait for the close itself.
		_, err := io.Copy(io.Discard, br)
		answers <- answer{status, err}
	}()
	deadline := time.Now().Add(within)
	sent := 0
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for {
		select {
		case a := <-answers:
			if a.err != nil && errors.Is(a.err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open %s after the request started (%d of %d body bytes sent)", within, sent, bodyLen)
			}
			return Result{Status: a.status, BytesSent: sent}
		case <-tick.C:
			if time.Now().After(deadline) {
				t.Fatalf("connection still open %s after the request started (%d of %d body bytes sent)", within, sent, bodyLen)
			}
			if sent < bodyLen-1 { // never the last byte: the body must stay incomplete
				if _, err := conn.Write([]byte{'x'}); err == nil {
					sent++
				}
			}
		}
	}
}
