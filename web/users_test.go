package web

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// createUser adds a user with the admin token and returns an API token of that user.
func (e *testEnv) createUser(name string, role Role) (password, token string) {
	e.t.Helper()
	password = "pw-" + name + "-0123456789"
	expectCode(e.t, e.api("POST", "/api/v1/users", map[string]string{"name": name, "role": string(role), "password": password}), http.StatusCreated)
	r := e.api("POST", "/api/v1/users/"+name+"/tokens", map[string]string{"name": "script"})
	expectCode(e.t, r, http.StatusCreated)
	var tok struct {
		Token string `json:"token"`
	}
	r.json(e.t, &tok)
	if !strings.HasPrefix(tok.Token, userTokenPref) {
		e.t.Fatalf("token %q", tok.Token)
	}
	return password, tok.Token
}

func (e *testEnv) postUserLogin(hc *http.Client, user, password string) resp {
	e.t.Helper()
	form := url.Values{"username": {user}, "password": {password}}.Encode()
	return doRequest(e.t, hc, http.MethodPost, e.base+"/login", "", form, "Content-Type", "application/x-www-form-urlencoded")
}

// TestRolesMatrix calls every route group as each role: a viewer reads and changes nothing,
// an operator also pauses, replays and deletes, only an admin touches models, users and the
// token. A 403 names the role needed.
func TestRolesMatrix(t *testing.T) {
	env := newEnv(t)
	_, viewer := env.createUser("vera", RoleViewer)
	_, operator := env.createUser("otto", RoleOperator)
	_, admin := env.createUser("ada", RoleAdmin)

	type call struct {
		method, path string
		body         any
		least        Role
	}
	calls := []call{
		{"GET", "/api/v1/status", nil, RoleViewer},
		{"GET", "/api/v1/dlq", nil, RoleViewer},
		{"GET", "/api/v1/audit", nil, RoleViewer},
		{"GET", "/api/v1/settings", nil, RoleViewer},
		{"GET", "/api/v1/models", nil, RoleViewer},
		{"GET", "/api/v1/logs", nil, RoleViewer},
		{"GET", "/api/v1/predictions", nil, RoleViewer},
		{"GET", "/api/v1/group", nil, RoleViewer},
		{"POST", "/api/v1/pipeline/pause", nil, RoleOperator},
		{"POST", "/api/v1/pipeline/resume", nil, RoleOperator},
		{"POST", "/api/v1/dlq/replay", map[string]any{"class": "decode"}, RoleOperator},
		{"POST", "/api/v1/dlq/delete", map[string]any{"class": "decode"}, RoleOperator},
		{"PUT", "/api/v1/models/demo/labels/stable", map[string]any{"version": 1}, RoleAdmin},
		{"POST", "/api/v1/models/reload", nil, RoleAdmin},
		{"PUT", "/api/v1/models/demo/threshold", map[string]any{"threshold": 0.8}, RoleAdmin},
		{"PUT", "/api/v1/settings", map[string]any{"log.level": "debug"}, RoleAdmin},
		{"GET", "/api/v1/users", nil, RoleAdmin},
		{"POST", "/api/v1/users", map[string]string{"name": "x", "role": "viewer", "password": "0123456789ab"}, RoleAdmin},
	}
	tokens := map[Role]string{RoleViewer: viewer, RoleOperator: operator, RoleAdmin: admin}
	for _, c := range calls {
		for _, role := range []Role{RoleViewer, RoleOperator, RoleAdmin} {
			r := env.call(c.method, c.path, tokens[role], c.body)
			if role.includes(c.least) {
				if r.code == http.StatusForbidden || r.code == http.StatusUnauthorized {
					t.Errorf("%s %s as %s: %d %s, want allowed", c.method, c.path, role, r.code, r.body)
				}
				continue
			}
			if r.code != http.StatusForbidden {
				t.Errorf("%s %s as %s: %d %s, want 403", c.method, c.path, role, r.code, r.body)
				continue
			}
			if msg := r.errMsg(t); !strings.Contains(msg, "needs the "+string(c.least)+" role") {
				t.Errorf("%s %s as %s: message %q does not name the role needed", c.method, c.path, role, msg)
			}
		}
		// the user "x" is created by the admin's call; drop it for the next round
		_ = env.api("DELETE", "/api/v1/users/x", nil)
	}
	// A token that is no one's is refused as such.
	r := env.call("GET", "/api/v1/status", userTokenPref+"nope_nope", nil)
	expectCode(t, r, http.StatusUnauthorized)
}

// TestUsersLoginAuditAndDelete: a user logs in with a password, acts, and the audit log names
// them; a wrong password is audited as a failed login; deleting the user ends their session
// and their tokens.
func TestUsersLoginAuditAndDelete(t *testing.T) {
	env := newEnv(t)
	pw, tok := env.createUser("otto", RoleOperator)

	hc := browserClient(t)
	r := env.postUserLogin(hc, "otto", "wrong-password-123")
	expectCode(t, r, http.StatusUnauthorized)
	if !strings.Contains(string(r.body), "Wrong user name or password") {
		t.Fatalf("login page: %s", r.body)
	}
	expectCode(t, env.postUserLogin(hc, "otto", pw), http.StatusSeeOther)
	s := doRequest(t, hc, "GET", env.base+"/api/v1/session", "", nil)
	expectCode(t, s, http.StatusOK)
	var sess struct {
		CSRF  string `json:"csrf_token"`
		Actor string `json:"actor"`
		Role  Role   `json:"role"`
	}
	s.json(t, &sess)
	if sess.Actor != "otto" || sess.Role != RoleOperator {
		t.Fatalf("session %s", s.body)
	}
	expectCode(t, doRequest(t, hc, "POST", env.base+"/api/v1/pipeline/pause", "", nil, csrfHeader, sess.CSRF), http.StatusOK)
	// Not an admin: uploading a model is refused with the session too.
	r = doRequest(t, hc, "POST", env.base+"/api/v1/models/reload", "", nil, csrfHeader, sess.CSRF)
	expectCode(t, r, http.StatusForbidden)

	log, err := env.store.AuditLog(100)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, e := range log {
		if _, ok := found[e.Action]; !ok {
			found[e.Action] = e.Actor + "|" + e.Detail
		}
	}
	if got := found["pipeline.pause"]; !strings.HasPrefix(got, "otto|") {
		t.Errorf("pause audited as %q, want actor otto", got)
	}
	if got := found["users.create"]; !strings.HasPrefix(got, adminTokenActor+"|otto") {
		t.Errorf("users.create audited as %q", got)
	}
	if got := found["login_failed"]; !strings.Contains(got, `"otto"`) {
		t.Errorf("failed login audited as %q", got)
	}
	if got := found["login"]; !strings.HasPrefix(got, "otto|") || !strings.Contains(got, "operator") {
		t.Errorf("login audited as %q", got)
	}

	expectCode(t, env.api("DELETE", "/api/v1/users/otto", nil), http.StatusNoContent)
	expectCode(t, doRequest(t, hc, "GET", env.base+"/api/v1/status", "", nil), http.StatusUnauthorized)
	expectCode(t, env.call("GET", "/api/v1/status", tok, nil), http.StatusUnauthorized)
	expectCode(t, env.postUserLogin(browserClient(t), "otto", pw), http.StatusUnauthorized)
	expectCode(t, env.api("DELETE", "/api/v1/users/otto", nil), http.StatusNotFound)

	// Users survive a restart of the server: they are in the store.
	_, _ = env.createUser("vera", RoleViewer)
	us, err := loadUsers(env.store)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := us.get("vera"); !ok || v.Role != RoleViewer || len(v.Tokens) != 1 {
		t.Fatalf("reloaded users: %+v %v", v, ok)
	}
	// No hash ever leaves the API.
	r = env.api("GET", "/api/v1/users", nil)
	expectCode(t, r, http.StatusOK)
	if strings.Contains(string(r.body), "$2a$") || strings.Contains(string(r.body), "hash") {
		t.Fatalf("users list shows a hash: %s", r.body)
	}
}

// TestOwnTokensAndPassword: a viewer manages their own password and tokens, not anyone
// else's; a role change ends the user's sessions.
func TestOwnTokensAndPassword(t *testing.T) {
	env := newEnv(t)
	pw, tok := env.createUser("vera", RoleViewer)
	_, _ = env.createUser("otto", RoleOperator)

	r := env.call("POST", "/api/v1/users/vera/tokens", tok, map[string]string{"name": "grafana"})
	expectCode(t, r, http.StatusCreated)
	var created struct {
		Token, ID string
	}
	r.json(t, &created)
	expectCode(t, env.call("GET", "/api/v1/status", created.Token, nil), http.StatusOK)
	expectCode(t, env.call("POST", "/api/v1/users/otto/tokens", tok, map[string]string{"name": "x"}), http.StatusForbidden)
	expectCode(t, env.call("DELETE", "/api/v1/users/vera/tokens/"+created.ID, tok, nil), http.StatusNoContent)
	expectCode(t, env.call("GET", "/api/v1/status", created.Token, nil), http.StatusUnauthorized)

	// Own password: the old one is required.
	r = env.call("POST", "/api/v1/users/vera/password", tok, map[string]string{"old_password": "nope-nope-nope", "new_password": "new-password-vera"})
	expectCode(t, r, http.StatusForbidden)
	expectCode(t, env.call("POST", "/api/v1/users/vera/password", tok, map[string]string{"old_password": pw, "new_password": "new-password-vera"}), http.StatusNoContent)
	expectCode(t, env.postUserLogin(browserClient(t), "vera", pw), http.StatusUnauthorized)
	hc := browserClient(t)
	expectCode(t, env.postUserLogin(hc, "vera", "new-password-vera"), http.StatusSeeOther)
	expectCode(t, doRequest(t, hc, "GET", env.base+"/api/v1/status", "", nil), http.StatusOK)

	// Promote vera: her session ends (it carried the old role); her token now acts as operator.
	expectCode(t, env.api("PATCH", "/api/v1/users/vera", map[string]string{"role": "operator"}), http.StatusOK)
	expectCode(t, doRequest(t, hc, "GET", env.base+"/api/v1/status", "", nil), http.StatusUnauthorized)
	expectCode(t, env.call("POST", "/api/v1/pipeline/pause", tok, nil), http.StatusOK)
}

func TestUserValidation(t *testing.T) {
	env := newEnv(t)
	for _, c := range []struct {
		body map[string]string
		want string
	}{
		{map[string]string{"name": "Bad Name", "role": "viewer", "password": "0123456789ab"}, "user name"},
		{map[string]string{"name": "admin-token", "role": "viewer", "password": "0123456789ab"}, "user name"},
		{map[string]string{"name": "ok", "role": "root", "password": "0123456789ab"}, "root"},
		{map[string]string{"name": "ok", "role": "viewer", "password": "short"}, "at least 10"},
		{map[string]string{"name": "ok", "role": "viewer", "password": strings.Repeat("x", 73)}, "at most 72"},
	} {
		r := env.api("POST", "/api/v1/users", c.body)
		expectCode(t, r, http.StatusBadRequest)
		if msg := r.errMsg(t); !strings.Contains(msg, c.want) {
			t.Errorf("%v: %q does not say %q", c.body, msg, c.want)
		}
	}
	_, _ = env.createUser("ok", RoleViewer)
	r := env.api("POST", "/api/v1/users", map[string]string{"name": "ok", "role": "viewer", "password": "0123456789ab"})
	expectCode(t, r, http.StatusConflict)
	expectCode(t, env.api("PATCH", "/api/v1/users/ok", map[string]string{}), http.StatusBadRequest)
	expectCode(t, env.api("PATCH", "/api/v1/users/nobody", map[string]string{"role": "admin"}), http.StatusNotFound)
}

// TestRotateAdminToken: the new token works at once, the old one does not, sessions opened
// with the old one end; when the token comes from the config the API says where to change it.
func TestRotateAdminToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin-token")
	var mu sync.Mutex
	written := ""
	env := newEnv(t, func(c *Config) {
		c.RotateAdminToken = func() (string, error) {
			mu.Lock()
			defer mu.Unlock()
			written = "rotated-" + randomToken()
			return written, os.WriteFile(file, []byte(written+"\n"), 0o600)
		}
	})
	hc := browserClient(t)
	env.login(hc)
	r := env.api("POST", "/api/v1/admin-token/rotate", nil)
	expectCode(t, r, http.StatusOK)
	var got struct {
		Token string `json:"token"`
	}
	r.json(t, &got)
	mu.Lock()
	if got.Token == "" || got.Token != written {
		t.Fatalf("rotate answered %q, wrote %q", got.Token, written)
	}
	mu.Unlock()
	expectCode(t, env.call("GET", "/api/v1/status", got.Token, nil), http.StatusOK)
	expectCode(t, env.api("GET", "/api/v1/status", nil), http.StatusUnauthorized)
	expectCode(t, doRequest(t, hc, "GET", env.base+"/api/v1/status", "", nil), http.StatusUnauthorized)
	log, err := env.store.AuditLog(10)
	if err != nil {
		t.Fatal(err)
	}
	rotated := false
	for _, e := range log {
		rotated = rotated || (e.Action == "admin_token.rotate" && e.Actor == adminTokenActor)
	}
	if !rotated {
		t.Fatalf("rotation not audited with its actor: %+v", log)
	}

	fixed := newEnv(t)
	r = fixed.api("POST", "/api/v1/admin-token/rotate", nil)
	expectCode(t, r, http.StatusConflict)
	if msg := r.errMsg(t); !strings.Contains(msg, "INFERGATE_ADMIN_TOKEN") {
		t.Fatalf("message %q", msg)
	}
}
