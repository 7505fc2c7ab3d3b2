package web

import (
	"net/http"
	"strings"
	"testing"
)

// TestDatasetRoles: a viewer reads datasets and reports; capturing,
// replaying and deleting need an admin, as starting a rollout does. The
// test backend has no datasets (501 past the role check); the appliance's
// TestCaptureAndReplay runs the routes on real components.
func TestDatasetRoles(t *testing.T) {
	env := newEnv(t)
	_, viewer := env.createUser("vera", RoleViewer)
	_, operator := env.createUser("otto", RoleOperator)
	_, admin := env.createUser("ada", RoleAdmin)
	tokens := map[Role]string{RoleViewer: viewer, RoleOperator: operator, RoleAdmin: admin}
	for _, c := range []struct {
		method, path string
		body         any
		least        Role
	}{
		{"GET", "/api/v1/datasets", nil, RoleViewer},
		{"GET", "/api/v1/datasets/live/report", nil, RoleViewer},
		{"POST", "/api/v1/datasets", map[string]any{"name": "live", "last": 10}, RoleAdmin},
		{"POST", "/api/v1/datasets/live/replay", map[string]any{"candidate": 2}, RoleAdmin},
		{"DELETE", "/api/v1/datasets/live", nil, RoleAdmin},
	} {
		for _, role := range []Role{RoleViewer, RoleOperator, RoleAdmin} {
			r := env.call(c.method, c.path, tokens[role], c.body)
			if role.includes(c.least) {
				if r.code != http.StatusNotImplemented {
					t.Errorf("%s %s as %s: %d %s, want 501 (allowed; no datasets here)", c.method, c.path, role, r.code, r.body)
				}
				continue
			}
			if r.code != http.StatusForbidden || !strings.Contains(r.errMsg(t), "needs the "+string(c.least)+" role") {
				t.Errorf("%s %s as %s: %d %s, want 403 naming the %s role", c.method, c.path, role, r.code, r.body, c.least)
			}
		}
	}
	r := env.api("POST", "/api/v1/datasets", map[string]any{"name": "../x"})
	expectCode(t, r, http.StatusBadRequest)
}
