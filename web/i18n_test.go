package web

import (
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/web/webtest"
)

// TestBrowserLanguage switches the dashboard to Simplified Chinese and back in headless
// Chromium: the navigation, the overview's cards, the log view and the Users view change
// language, the choice is remembered across a reload, and the browser's language picks the
// first one.
func TestBrowserLanguage(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	env, log := logEnv(t, func(c *Config) { c.EventsInterval = 100 * time.Millisecond })
	log.With("component", "pipeline").Warn("model call failed; retrying", "err", "connection refused")
	ctx := webtest.NewBrowser(t)
	webtest.Login(t, ctx, env.base, testToken)
	if nav := webtest.Text(t, ctx, "#nav"); !strings.Contains(nav, "Overview") || !strings.Contains(nav, "Logs") {
		t.Fatalf("English navigation %q", nav)
	}

	webtest.SetSelect(t, ctx, "#lang", "zh")
	webtest.WaitJSAcrossReload(t, ctx, "the page in Chinese", `document.documentElement.lang === 'zh-CN' && document.querySelector('#nav a[data-view="overview"]').textContent === '概览'`)
	for sel, want := range map[string]string{
		`#nav a[data-view="logs"]`:        "日志",
		`#nav a[data-view="predictions"]`: "预测",
		`#nav a[data-view="users"]`:       "用户",
		`#logout`:                         "退出登录",
	} {
		if got := webtest.Text(t, ctx, sel); got != want {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}
	webtest.WaitJS(t, ctx, "the component cards in Chinese", `(document.querySelector('[data-component="model-server"] .name') || {}).textContent?.startsWith('模型服务器')`)
	webtest.WaitJS(t, ctx, "the totals line in Chinese", `document.querySelector('#totals').textContent.startsWith('启动以来')`)

	// The log view in Chinese: its headers and filters, the records as logged.
	webtest.Go(t, ctx, env.base, "logs")
	webtest.WaitJS(t, ctx, "the record listed", `document.querySelectorAll('#log-table tbody tr').length === 1`)
	head := webtest.Text(t, ctx, "#log-table thead")
	if !strings.Contains(head, "消息") || !strings.Contains(head, "组件") || strings.Contains(head, "Message") {
		t.Errorf("log view header %q", head)
	}
	if row := webtest.Text(t, ctx, "#log-table tbody"); !strings.Contains(row, "model call failed; retrying") {
		t.Errorf("log record %q: records stay as logged", row)
	}
	if n := webtest.Text(t, ctx, "#log-count"); !strings.Contains(n, "显示 1 条记录") {
		t.Errorf("log count %q", n)
	}
	webtest.Go(t, ctx, env.base, "users")
	webtest.WaitJS(t, ctx, "the Users view in Chinese", `document.querySelector('#view-users').textContent.includes('你的账户')`)

	// Remembered across a reload.
	webtest.Reload(t, ctx)
	webtest.WaitJS(t, ctx, "still Chinese after a reload", `document.querySelector('#nav a[data-view="overview"]').textContent === '概览'`)

	// The browser's language decides when nothing was chosen.
	if got := webtest.Eval[string](t, ctx, `localStorage.removeItem('infergate.lang');
		Object.defineProperty(navigator, 'languages', {get: () => ['zh-CN', 'en'], configurable: true}); pickLang()`); got != "zh" {
		t.Errorf("pickLang for zh-CN: %q", got)
	}
	if got := webtest.Eval[string](t, ctx, `Object.defineProperty(navigator, 'languages', {get: () => ['de-DE', 'fr'], configurable: true}); pickLang()`); got != "en" {
		t.Errorf("pickLang for de-DE: %q", got)
	}

	webtest.SetSelect(t, ctx, "#lang", "en")
	webtest.WaitJSAcrossReload(t, ctx, "English again", `document.documentElement.lang === 'en' && document.querySelector('#nav a[data-view="overview"]').textContent === 'Overview'`)
}
