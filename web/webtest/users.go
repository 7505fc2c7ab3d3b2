package webtest

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// LoginUser logs in with a user name and password and waits for the overview.
func LoginUser(t testing.TB, ctx context.Context, baseURL, user, password string) {
	t.Helper()
	step(t, ctx, "log in as "+user,
		chromedp.Navigate(strings.TrimRight(baseURL, "/")+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#login-user-submit")),
		chromedp.WaitVisible(chromedp.CSS("#view-overview")),
	)
	WaitJS(t, ctx, "the role is known", `document.body.dataset.role !== undefined && document.body.dataset.role !== ''`)
	step(t, ctx, "auto-confirm", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true; undefined`))
}

// Shown reports whether the first element matching sel exists and is rendered (not hidden
// by itself, an ancestor or a style).
func Shown(t testing.TB, ctx context.Context, sel string) bool {
	t.Helper()
	return Eval[bool](t, ctx, `(() => { const el = document.querySelector(`+js(sel)+`); return !!el && el.checkVisibility(); })()`)
}

// APIStatus calls the admin API from the page, as the dashboard does: with the session's
// cookie and its CSRF token. It returns the HTTP status, so a test can show that the API
// refuses what the page hides from the same session.
func APIStatus(t testing.TB, ctx context.Context, method, path, jsonBody string) int {
	t.Helper()
	body := "undefined"
	if jsonBody != "" {
		body = js(jsonBody)
	}
	expr := `fetch('/api/v1' + ` + js(path) + `, {method: ` + js(method) + `, credentials: 'same-origin',
		headers: {'X-CSRF-Token': state.csrf, 'Content-Type': 'application/json'}, body: ` + body + `}).then(r => r.status)`
	return value(t, ctx, method+" "+path+" from the page", chromedp.Evaluate[int](expr, chromedp.EvalAwaitPromise))
}

// Logout ends the session as the Log out button does and opens the login page.
func Logout(t testing.TB, ctx context.Context, baseURL string) {
	t.Helper()
	value(t, ctx, "log out", chromedp.Evaluate[int](`fetch('/logout', {method: 'POST', credentials: 'same-origin',
		headers: {'X-CSRF-Token': state.csrf}}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	step(t, ctx, "the login page",
		chromedp.Navigate(strings.TrimRight(baseURL, "/")+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#username")))
}
