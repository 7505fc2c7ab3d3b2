package appliance

import (
	"strings"
	"testing"
)

// TestLogViewOfTheAppliance: the dashboard's log view (GET /api/v1/logs) holds the
// appliance's own records, fed by its log handler from New on — the warning that a token
// was generated among them — and never the token itself.
func TestLogViewOfTheAppliance(t *testing.T) {
	a := start(t, testConfig(t))
	api := newAPIClient(t, a)
	code, body := api.do("GET", "/api/v1/logs?level=warn&limit=2000", nil)
	if code != 200 {
		t.Fatalf("GET /api/v1/logs: %d %s", code, body)
	}
	if !strings.Contains(string(body), "generated the admin token") || !strings.Contains(string(body), a.paths.AdminToken) {
		t.Fatalf("the log view lacks the token warning naming the file: %s", body)
	}
	if strings.Contains(string(body), a.AdminToken()) {
		t.Fatal("the log view shows the admin token")
	}
}
