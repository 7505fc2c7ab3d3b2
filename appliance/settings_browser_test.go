package appliance

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/web/webtest"
)

// TestBrowserSettings changes settings on the Settings page of an appliance started with a
// config file, in headless Chromium: a live one (pipeline.max_batch_size) is applied to the
// running pipeline at once, a restart-only one (broker.compression) is shown as waiting for
// the restart, a bad value is refused naming the setting, and a viewer sees the settings
// without a way to change them. With -screenshots it takes the docs' settings.png.
func TestBrowserSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := webtest.NewBrowser(t)
	_, args := settingsTestFile(t)
	c := loadArgs(t, args)
	a := startWith(t, c, NewLogger(c.Log, testutil.Writer(t)))
	base := a.WebURL()
	row := func(key string) string { return `#settings-table tr[data-key="` + key + `"]` }

	webtest.Login(t, ctx, base, a.AdminToken())
	webtest.Go(t, ctx, base, "settings")
	webtest.WaitJS(t, ctx, "the settings table", `document.querySelectorAll('#settings-table tbody tr').length > 50`)
	if txt := webtest.Text(t, ctx, "#settings-file"); !strings.Contains(txt, c.ConfigFile()) {
		t.Errorf("the page does not say where changes go: %q", txt)
	}
	if txt := webtest.Text(t, ctx, row("pipeline.max_batch_size")); !strings.Contains(txt, "live") {
		t.Errorf("max batch size row %q does not say it applies live", txt)
	}
	if txt := webtest.Text(t, ctx, row("broker.compression")); !strings.Contains(txt, "after restart") {
		t.Errorf("compression row %q does not say it applies after a restart", txt)
	}
	if !webtest.Eval[bool](t, ctx, `document.querySelector('`+row("broker.tls.enabled")+` .setting-input').type === 'checkbox'`) {
		t.Error("a boolean setting is not a checkbox")
	}

	webtest.SetValue(t, ctx, row("pipeline.max_batch_size")+" .setting-input", "16")
	webtest.SetValue(t, ctx, row("broker.compression")+" .setting-input", "zstd")
	webtest.Click(t, ctx, "#settings-save")
	webtest.WaitJS(t, ctx, "the change applied", `document.querySelector('#toast').textContent.includes('Applied now: pipeline.max_batch_size = 16')`)
	webtest.WaitJS(t, ctx, "the compression waiting for the restart",
		`(document.querySelector('`+row("broker.compression")+` .setting-pending') || {}).textContent === 'after restart: zstd'`)
	if got := a.Pipeline().Tuning().MaxBatchSize; got != 16 {
		t.Fatalf("the running pipeline's max batch size is %d, want 16", got)
	}

	webtest.SetValue(t, ctx, row("pipeline.max_batch_size")+" .setting-input", "0")
	webtest.Click(t, ctx, "#settings-save")
	webtest.WaitJS(t, ctx, "the refusal shown", `!document.querySelector('#settings-problems').hidden &&
		document.querySelector('#settings-problems').textContent.includes('pipeline.max_batch_size') &&
		document.querySelector('`+row("pipeline.max_batch_size")+`').classList.contains('setting-bad')`)
	if got := a.Pipeline().Tuning().MaxBatchSize; got != 16 {
		t.Fatalf("a refused value was applied: %d", got)
	}
	if *screenshots != "" {
		dir, err := filepath.Abs(*screenshots)
		if err != nil {
			t.Fatal(err)
		}
		webtest.Go(t, ctx, base, "overview")
		webtest.Go(t, ctx, base, "settings")
		webtest.WaitJS(t, ctx, "the settings table", `document.querySelectorAll('#settings-table tbody tr').length > 50`)
		webtest.Click(t, ctx, "#settings-only-set")
		webtest.SetValue(t, ctx, row("log.level")+" .setting-input", "debug")
		webtest.Screenshot(t, ctx, filepath.Join(dir, "settings.png"))
	}

	// A viewer reads the settings; the page offers no change and the API refuses one.
	api := newAPIClient(t, a)
	api.json("POST", "/api/v1/users", map[string]string{"name": "line1", "role": "viewer", "password": "pw-0123456789-line"}, 201, nil)
	webtest.Logout(t, ctx, base)
	webtest.LoginUser(t, ctx, base, "line1", "pw-0123456789-line")
	webtest.Go(t, ctx, base, "settings")
	webtest.WaitJS(t, ctx, "the settings table", `document.querySelectorAll('#settings-table tbody tr').length > 50`)
	if webtest.Shown(t, ctx, "#settings-save") {
		t.Error("a viewer sees the Save button")
	}
	if !webtest.Eval[bool](t, ctx, `document.querySelector('`+row("pipeline.max_batch_size")+` .setting-input').disabled`) {
		t.Error("a viewer can edit a setting")
	}
	if code := webtest.APIStatus(t, ctx, "PUT", "/settings", `{"pipeline.max_batch_size": 8}`); code != 403 {
		t.Errorf("PUT /settings as a viewer from the page: %d, want 403", code)
	}
}
