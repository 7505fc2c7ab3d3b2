package modelserver

import (
	"testing"
	"time"

	"github.com/infergate/infergate/internal/httpdeadline/slowsender"
)

// Issue 9 row 14: a predict request whose body trickles in held a REST connection open
// indefinitely; RESTReadTimeout closes it.
func TestRESTSlowBodyConnectionIsClosed(t *testing.T) {
	cfg := testConfig(demoRepo(t))
	cfg.RESTReadTimeout = 300 * time.Millisecond
	s := startServer(t, cfg)
	r := slowsender.Send(t, s.RESTAddr(), "POST /v1/models/demo:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json", 1000, 50*time.Millisecond, 30*time.Second)
	if r.Status >= 200 && r.Status < 300 {
		t.Errorf("slow predict body answered %d", r.Status)
	}
	// A normal request still works.
	code, body, _ := httpDo(t, "POST", "http://"+s.RESTAddr()+"/v1/models/demo:predict", `{"instances": [[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]]}`)
	if code != 200 {
		t.Errorf("normal predict: %d %s", code, body)
	}
}
