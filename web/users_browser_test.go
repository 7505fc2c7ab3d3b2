package web

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web/webtest"
)

// TestBrowserRoles logs in as a viewer, an operator and an admin in headless Chromium and
// shows what each may and may not do: the controls a role may not use are not shown, and the
// API refuses those actions (403) to the very session the page runs in, cookie and CSRF
// token included, so hiding is a courtesy and not the protection. Along the way every user
// manages their own API tokens and password from the Users view, and the admin manages users
// and rotates the admin token there.
func TestBrowserRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	var mu sync.Mutex
	rotated := ""
	file := filepath.Join(t.TempDir(), "admin-token")
	env := newEnv(t, func(c *Config) {
		c.EventsInterval = 250 * time.Millisecond
		c.RotateAdminToken = func() (string, error) {
			mu.Lock()
			defer mu.Unlock()
			rotated = "rotated-" + randomToken()
			return rotated, os.WriteFile(file, []byte(rotated+"\n"), 0o600)
		}
	})
	putRecords(t, env.store, &store.Record{Key: []byte("k"), Value: []byte(`{"request_id":"r-1","features":[1]}`), Class: "validation",
		Message: "shape", Model: "demo", SourceTopic: "inference_requests", FailedAt: time.Now()})
	var l listResp
	env.api("GET", "/api/v1/dlq", nil).json(t, &l)
	if len(l.Records) != 1 {
		t.Fatalf("%d DLQ records", len(l.Records))
	}
	recID := l.Records[0].ID
	veraPW, _ := env.createUser("vera", RoleViewer)
	ottoPW, _ := env.createUser("otto", RoleOperator)
	adaPW, _ := env.createUser("ada", RoleAdmin)

	ctx := webtest.NewBrowser(t)
	shown := func(sel string) bool { t.Helper(); return webtest.Shown(t, ctx, sel) }
	expectShown := func(role string, want bool, sels ...string) {
		t.Helper()
		for _, sel := range sels {
			if got := shown(sel); got != want {
				t.Errorf("%s: %s shown=%v, want %v", role, sel, got, want)
			}
		}
	}
	// refused checks that the page's own session gets 403 for each call.
	refused := func(role string, calls ...[3]string) {
		t.Helper()
		for _, c := range calls {
			if code := webtest.APIStatus(t, ctx, c[0], c[1], c[2]); code != http.StatusForbidden {
				t.Errorf("%s: %s %s from the page's session: status %d, want 403", role, c[0], c[1], code)
			}
		}
	}
	logout := func() {
		t.Helper()
		webtest.Logout(t, ctx, env.base)
	}
	openRecord := func() {
		t.Helper()
		webtest.Go(t, ctx, env.base, "dlq")
		webtest.WaitJS(t, ctx, "the DLQ row", `document.querySelector('#dlq-table tbody tr[data-id]') !== null`)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#dlq-table tbody tr[data-id] td:nth-child(2)`))); err != nil {
			t.Fatal(err)
		}
		webtest.WaitJS(t, ctx, "the record", `!document.querySelector('#dlq-detail').hidden`)
	}
	showsControls := func(role string, operator, admin bool) {
		t.Helper()
		webtest.Go(t, ctx, env.base, "overview")
		webtest.WaitJS(t, ctx, "the pipeline card", `document.querySelector('#pipeline-toggle') !== null`)
		expectShown(role, operator, "#pipeline-toggle")
		openRecord()
		expectShown(role, operator, "#dlq-replay-all", "#dlq-delete-all", "#d-replay-wait", "#d-delete")
		expectShown(role, true, "#d-value") // everyone reads the record
		webtest.Go(t, ctx, env.base, "broker")
		expectShown(role, operator, "#test-send")
		webtest.Go(t, ctx, env.base, "models")
		expectShown(role, admin, "#upload-form", "#label-form", "#models-reload", "#rollout-start")
		webtest.Go(t, ctx, env.base, "users")
		webtest.WaitJS(t, ctx, "the account card", `document.querySelector('#me-actor') !== null`)
		expectShown(role, admin, "#users-card", "#admin-token-rotate")
		expectShown(role, true, "#tokens-card", "#password-form")
	}

	// The viewer reads everything and changes nothing.
	webtest.LoginUser(t, ctx, env.base, "vera", veraPW)
	if who := webtest.Text(t, ctx, "#whoami"); !strings.Contains(who, "vera") || !strings.Contains(who, "viewer") {
		t.Errorf("top bar says %q", who)
	}
	showsControls("viewer", false, false)
	if code := webtest.APIStatus(t, ctx, "GET", "/status", ""); code != http.StatusOK {
		t.Fatalf("viewer's session reads /status: %d", code)
	}
	refused("viewer",
		[3]string{"POST", "/pipeline/pause", ""},
		[3]string{"POST", "/dlq/replay", `{"ids": ["` + recID + `"]}`},
		[3]string{"DELETE", "/dlq/" + recID, ""},
		[3]string{"POST", "/test-request", `{"request_id": "x"}`},
		[3]string{"POST", "/models/reload", ""},
		[3]string{"GET", "/users", ""},
		[3]string{"POST", "/users", `{"name": "eve", "role": "admin", "password": "0123456789ab"}`},
		[3]string{"POST", "/admin-token/rotate", ""},
		[3]string{"POST", "/users/otto/tokens", `{"name": "steal"}`},
	)
	env.backend.mu.Lock()
	paused := env.backend.paused
	env.backend.mu.Unlock()
	if paused {
		t.Fatal("the viewer's refused pause paused the pipeline")
	}
	if r := env.api("GET", "/api/v1/dlq/"+recID, nil); r.code != http.StatusOK {
		t.Fatalf("the viewer's refused delete deleted the record: %d", r.code)
	}

	// Every user manages their own API tokens and password.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	step("create a token", chromedp.SetValue(chromedp.CSS("#token-name"), "grafana"), chromedp.Click(chromedp.CSS("#token-create")))
	webtest.WaitJS(t, ctx, "the new token", `document.querySelector('#token-new-value') !== null`)
	tok := webtest.Text(t, ctx, "#token-new-value")
	expectCode(t, env.call("GET", "/api/v1/status", tok, nil), http.StatusOK)
	expectCode(t, env.call("POST", "/api/v1/pipeline/pause", tok, nil), http.StatusForbidden)
	webtest.WaitJS(t, ctx, "the token listed", `[...document.querySelectorAll('#tokens-table tbody tr[data-token]')].some(r => r.textContent.includes('grafana'))`)
	nTokens := webtest.Eval[int](t, ctx, `document.querySelectorAll('#tokens-table tbody tr[data-token]').length`)
	step("revoke it", chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll('#tokens-table tbody tr[data-token]')].find(r => r.textContent.includes('grafana')).querySelector('button').click(); undefined`))
	webtest.WaitJS(t, ctx, "the token gone", `document.querySelectorAll('#tokens-table tbody tr[data-token]').length === `+itoa(nTokens-1))
	expectCode(t, env.call("GET", "/api/v1/status", tok, nil), http.StatusUnauthorized)
	newPW := "vera-new-password-42"
	step("change the password", chromedp.SetValue(chromedp.CSS("#pw-old"), veraPW), chromedp.SetValue(chromedp.CSS("#pw-new"), newPW),
		chromedp.Click(chromedp.CSS("#pw-submit")))
	webtest.WaitJS(t, ctx, "password changed", `!document.querySelector('#toast').hidden && document.querySelector('#toast').textContent === 'Password changed'`)
	expectCode(t, env.postUserLogin(browserClient(t), "vera", veraPW), http.StatusUnauthorized)
	if r := env.postUserLogin(browserClient(t), "vera", newPW); r.code != http.StatusOK && r.code != http.StatusSeeOther {
		t.Fatalf("login with the new password: %d", r.code)
	}
	logout()

	// The operator also pauses, replays and deletes, but touches no models, users or token.
	webtest.LoginUser(t, ctx, env.base, "otto", ottoPW)
	showsControls("operator", true, false)
	webtest.Go(t, ctx, env.base, "overview")
	webtest.WaitJS(t, ctx, "the pause button", `document.querySelector('#pipeline-toggle') !== null && document.querySelector('#pipeline-toggle').textContent === 'Pause'`)
	step("pause", chromedp.Click(chromedp.CSS("#pipeline-toggle")))
	webtest.WaitJS(t, ctx, "the resume button", `(document.querySelector('#pipeline-toggle') || {}).textContent === 'Resume'`)
	env.backend.mu.Lock()
	paused = env.backend.paused
	env.backend.mu.Unlock()
	if !paused {
		t.Fatal("the operator's pause did not pause the pipeline")
	}
	refused("operator",
		[3]string{"POST", "/models/reload", ""},
		[3]string{"PUT", "/models/demo/labels/stable", `{"version": 1}`},
		[3]string{"POST", "/rollouts", `{"model": "demo", "mode": "shadow"}`},
		[3]string{"GET", "/users", ""},
		[3]string{"PATCH", "/users/otto", `{"role": "admin"}`},
		[3]string{"POST", "/admin-token/rotate", ""},
	)
	if code := webtest.APIStatus(t, ctx, "POST", "/pipeline/resume", ""); code/100 != 2 {
		t.Fatalf("the operator's session resumes: %d", code)
	}
	logout()

	// The admin sees and may do everything: users and the admin token too.
	webtest.LoginUser(t, ctx, env.base, "ada", adaPW)
	showsControls("admin", true, true)
	webtest.WaitJS(t, ctx, "the users table", `document.querySelector('#users-table tbody tr[data-user="otto"]') !== null`)
	step("create lena", chromedp.SetValue(chromedp.CSS("#user-name"), "lena"), chromedp.SetValue(chromedp.CSS("#user-password"), "lena-password-1"),
		chromedp.SetValue(chromedp.CSS("#user-role"), "viewer"), chromedp.Click(chromedp.CSS("#user-create")))
	webtest.WaitJS(t, ctx, "lena listed", `document.querySelector('#users-table tbody tr[data-user="lena"]') !== null`)
	row := `#users-table tbody tr[data-user="lena"] `
	step("make lena an operator", chromedp.SetValue(chromedp.CSS(row+"select"), "operator"), chromedp.Click(chromedp.CSS(row+".user-set-role")))
	webtest.WaitJS(t, ctx, "the role change", `document.querySelector('#toast').textContent.includes('lena → operator')`)
	var users struct {
		Users []userView `json:"users"`
	}
	env.api("GET", "/api/v1/users", nil).json(t, &users)
	found := false
	for _, u := range users.Users {
		if u.Name == "lena" {
			found = true
			if u.Role != RoleOperator {
				t.Errorf("lena's role is %s after the change", u.Role)
			}
		}
	}
	if !found {
		t.Fatalf("lena not created: %+v", users.Users)
	}
	step("reset lena's password", chromedp.SetValue(chromedp.CSS(row+".user-pw"), "lena-reset-pw-2"), chromedp.Click(chromedp.CSS(row+".user-reset-pw")))
	webtest.WaitJS(t, ctx, "the reset", `document.querySelector('#toast').textContent.includes('Password reset: lena')`)
	if r := env.postUserLogin(browserClient(t), "lena", "lena-reset-pw-2"); r.code != http.StatusOK && r.code != http.StatusSeeOther {
		t.Fatalf("lena's login with the reset password: %d", r.code)
	}
	step("delete lena", chromedp.Click(chromedp.CSS(row+".user-delete")))
	webtest.WaitJS(t, ctx, "lena gone", `document.querySelector('#users-table tbody tr[data-user="lena"]') === null`)
	if _, ok := env.srv.users.get("lena"); ok {
		t.Fatal("lena still exists")
	}

	webtest.Go(t, ctx, env.base, "users")
	webtest.WaitJS(t, ctx, "the users table", `document.querySelector('#users-table tbody tr[data-user="vera"]') !== null`)
	webtest.Screenshot(t, ctx, filepath.Join(screenshotDir(t), "users.png"))
	step("rotate the admin token", chromedp.Click(chromedp.CSS("#admin-token-rotate")))
	webtest.WaitJS(t, ctx, "the new admin token", `document.querySelector('#admin-token-value') !== null`)
	shownTok := webtest.Text(t, ctx, "#admin-token-value")
	mu.Lock()
	want := rotated
	mu.Unlock()
	if shownTok != want || want == "" {
		t.Fatalf("page shows %q, rotation wrote %q", shownTok, want)
	}
	expectCode(t, env.call("GET", "/api/v1/status", testToken, nil), http.StatusUnauthorized)
	expectCode(t, env.call("GET", "/api/v1/status", shownTok, nil), http.StatusOK)

	// The audit log names the actor of each change made from the page.
	var audit struct {
		Entries []store.AuditEntry `json:"entries"`
	}
	env.call("GET", "/api/v1/audit?limit=100", shownTok, nil).json(t, &audit)
	acts := map[string]string{}
	for _, e := range audit.Entries {
		acts[e.Action+" "+e.Detail] = e.Actor
	}
	for what, actor := range map[string]string{"users.create lena (viewer)": "ada", "users.delete lena": "ada", "users.password vera": "vera",
		"pipeline.pause": "otto", "admin_token.rotate the old admin token no longer works": "ada"} {
		got, ok := "", false
		for k, a := range acts {
			if strings.HasPrefix(k, what) {
				got, ok = a, true
			}
		}
		if !ok || got != actor {
			t.Errorf("audit %q: actor %q (found %v), want %q", what, got, ok, actor)
		}
	}
}
