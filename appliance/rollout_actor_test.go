package appliance

import (
	"strings"
	"testing"

	"github.com/infergate/infergate/store"
)

// TestRolloutChangesAuditedWithTheirActor: the rollout controller audits
// its changes itself; a change asked for through the API is recorded with
// the user who asked (as the web server's own changes are), here an admin
// user's API token starting, moving and aborting a rollout.
func TestRolloutChangesAuditedWithTheirActor(t *testing.T) {
	_, api := startTwoVersions(t, testConfig(t))
	api.json("POST", "/api/v1/users", map[string]string{"name": "ada", "role": "admin", "password": "pw-0123456789-ada"}, 201, nil)
	var tok struct {
		Token string `json:"token"`
	}
	api.json("POST", "/api/v1/users/ada/tokens", map[string]string{"name": "script"}, 201, &tok)
	ada := &apiClient{t: t, base: api.base, token: tok.Token}

	ada.json("POST", "/api/v1/rollouts", map[string]any{"model": "demo", "stable": 1, "candidate": 2, "mode": "shadow"}, 201, nil)
	ada.json("PUT", "/api/v1/rollouts/demo/percent", map[string]any{"percent": 10}, 200, nil)
	ada.json("POST", "/api/v1/rollouts/demo/abort", map[string]string{"reason": "checked"}, 200, nil)

	var log struct {
		Entries []store.AuditEntry `json:"entries"`
	}
	api.json("GET", "/api/v1/audit", nil, 200, &log)
	seen := map[string]string{}
	for _, e := range log.Entries {
		if strings.HasPrefix(e.Action, "rollout.") {
			seen[e.Action] = e.Actor
		}
	}
	for _, action := range []string{"rollout.start", "rollout.percent", "rollout.abort"} {
		if got, ok := seen[action]; !ok || got != "ada" {
			t.Errorf("%s audited with actor %q (found %v), want ada; audit log: %+v", action, got, ok, log.Entries)
		}
	}
}
