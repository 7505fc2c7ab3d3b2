// Package webtest drives the infergate dashboard in headless Chromium, for browser tests.
// Every step takes the dashboard's base URL, so the same steps run against web's own test
// server and against a whole appliance (`infergate run`) started by another test:
//
//	ctx := webtest.NewBrowser(t)
//	webtest.Login(t, ctx, baseURL, token)
//	webtest.WaitThroughputMoves(t, ctx)
//	res := webtest.ReplayFromDLQ(t, ctx, baseURL, "validation", "p-1", fixed)
//	v := webtest.UploadModel(t, ctx, baseURL, "demo", "model.onnx")
//	webtest.WaitModelAvailable(t, ctx, baseURL, "demo", v)
//
// Chromium is found at $CHROMIUM or /usr/bin/chromium. Without it the test is skipped, or
// fails when $CI is set, so CI cannot pass by skipping.
package webtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// StepTimeout bounds each waiting step.
var StepTimeout = 30 * time.Second

// ChromiumPath returns the browser binary, or "" if there is none.
func ChromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// NewBrowser starts headless Chromium with a fresh profile and returns a tab context
// that lives until the test ends. Window size 1366×900 (a laptop).
func NewBrowser(t testing.TB) context.Context {
	t.Helper()
	path := ChromiumPath()
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not found (install Debian's chromium or set $CHROMIUM); CI must run the browser tests")
		}
		t.Skip("chromium not found; set $CHROMIUM to run the browser tests")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // containers have a tiny /dev/shm
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser now, so failures show here
		t.Fatalf("starting chromium %s: %v", path, err)
	}
	return ctx
}

func step(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func value[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// WaitJS waits until the JavaScript expression is truthy in the page.
func WaitJS(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	if _, err := chromedp.Run(sctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(StepTimeout))); err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
}

func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Login opens the login page, submits the token and waits for the overview.
func Login(t testing.TB, ctx context.Context, baseURL, token string) {
	t.Helper()
	step(t, ctx, "login",
		chromedp.Navigate(strings.TrimRight(baseURL, "/")+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#view-overview")),
	)
	WaitJS(t, ctx, "the live stream is connected", `document.querySelector('#live').textContent === 'live'`)
	// Bulk actions ask for confirmation; a test always confirms.
	step(t, ctx, "auto-confirm", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true; undefined`))
}

// LoginFails submits a wrong token and returns the error the page shows.
func LoginFails(t testing.TB, ctx context.Context, baseURL, token string) string {
	t.Helper()
	step(t, ctx, "login with a wrong token",
		chromedp.Navigate(strings.TrimRight(baseURL, "/")+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")),
	)
	return value(t, ctx, "login error", chromedp.Text(chromedp.CSS("#login-error")))
}

// Go opens a dashboard view ("overview", "dlq", "dlq?class=decode", "models", "broker", "ingress",
// "sidecar", "settings"). On the dashboard already it only changes the hash: a navigation
// within the page fires no load event to wait for.
func Go(t testing.TB, ctx context.Context, baseURL, view string) {
	t.Helper()
	base := strings.TrimRight(baseURL, "/")
	here, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.origin + location.pathname`))
	if here == base+"/" {
		step(t, ctx, "open "+view, chromedp.Evaluate[chromedp.Void](`location.hash = `+js("#"+view)+`; undefined`))
	} else {
		step(t, ctx, "open "+view, chromedp.Navigate(base+"/#"+view))
	}
	step(t, ctx, "wait for "+view, chromedp.WaitVisible(chromedp.CSS("#view-"+strings.SplitN(view, "?", 2)[0])))
}

// WaitThroughputMoves waits on the overview until requests per second is above zero and the
// request total shown has changed at least twice, i.e. the live numbers move. It returns
// the last requests-per-second text.
func WaitThroughputMoves(t testing.TB, ctx context.Context) string {
	t.Helper()
	WaitJS(t, ctx, "throughput is above zero", `parseFloat(document.querySelector('#tput-in').textContent.replace(/,/g, '')) > 0`)
	step(t, ctx, "watch totals", chromedp.Evaluate[chromedp.Void](`
		window.__seen = new Set();
		window.__watch = setInterval(() => window.__seen.add(document.querySelector('#totals').textContent), 50);
		undefined`))
	WaitJS(t, ctx, "the request total changes", `window.__seen.size >= 3`)
	step(t, ctx, "stop watching", chromedp.Evaluate[chromedp.Void](`clearInterval(window.__watch); undefined`))
	WaitJS(t, ctx, "latency is shown", `document.querySelector('#lat-p99').textContent !== '–'`)
	return value(t, ctx, "throughput", chromedp.Text(chromedp.CSS("#tput-in")))
}

// ReplayFromDLQ opens the DLQ filtered by class, finds the record whose value contains
// match, inspects it, replaces its value with fixed (unless fixed is ""), replays it and
// waits for the result, which it returns as shown (JSON text).
func ReplayFromDLQ(t testing.TB, ctx context.Context, baseURL, class, match, fixed string) string {
	t.Helper()
	Go(t, ctx, baseURL, "dlq?class="+class)
	WaitJS(t, ctx, "DLQ rows are listed", `document.querySelectorAll('#dlq-table tbody tr').length > 0`)
	ids := value(t, ctx, "row ids", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#dlq-table tbody tr')).map(r => r.dataset.id)`))
	found := ""
	for _, id := range ids {
		step(t, ctx, "inspect "+id, chromedp.Click(chromedp.CSS(`#dlq-table tbody tr[data-id="`+id+`"] td:nth-child(2)`)))
		WaitJS(t, ctx, "record "+id+" is shown", `document.querySelector('#d-id').textContent === `+js(id)+` && !document.querySelector('#dlq-detail').hidden`)
		v := value(t, ctx, "record value", chromedp.Value(chromedp.CSS("#d-value")))
		if strings.Contains(v, match) {
			found = id
			break
		}
	}
	if found == "" {
		t.Fatalf("no %s record in the DLQ contains %q (looked at %d)", class, match, len(ids))
	}
	if fixed != "" {
		step(t, ctx, "edit the value", chromedp.SetValue(chromedp.CSS("#d-value"), fixed))
	}
	step(t, ctx, "replay and wait", chromedp.Click(chromedp.CSS("#d-replay-wait")))
	WaitJS(t, ctx, "the replay result is shown", `document.querySelector('#d-result-json') || document.querySelector('#d-result-error')`)
	if errText, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('#d-result-error') || {}).textContent || ''`)); errText != "" {
		t.Fatalf("replay of %s failed: %s", found, errText)
	}
	return value(t, ctx, "replay result", chromedp.Text(chromedp.CSS("#d-result-json")))
}

// UploadModel uploads the ONNX file at path as a new version of name on the models page and
// returns the version the server assigned.
func UploadModel(t testing.TB, ctx context.Context, baseURL, name, path string) int64 {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	Go(t, ctx, baseURL, "models")
	step(t, ctx, "fill the upload form",
		chromedp.SetValue(chromedp.CSS("#upload-name"), name),
		chromedp.SetUploadFiles(chromedp.CSS("#upload-file"), []string{abs}),
		chromedp.Click(chromedp.CSS("#upload-submit")),
	)
	WaitJS(t, ctx, "the upload is confirmed", `document.querySelector('#upload-status').textContent.startsWith('Uploaded')`)
	status := value(t, ctx, "upload status", chromedp.Text(chromedp.CSS("#upload-status")))
	var v int64
	if _, err := fmt.Sscanf(strings.TrimPrefix(status, "Uploaded "+name+" version "), "%d", &v); err != nil {
		t.Fatalf("upload status %q: %v", status, err)
	}
	return v
}

// WaitModelAvailable waits until the models table shows name/version AVAILABLE.
func WaitModelAvailable(t testing.TB, ctx context.Context, baseURL, name string, version int64) {
	t.Helper()
	sel := fmt.Sprintf(`#models-table tr[data-model=%s][data-version="%d"] .badge`, js(name), version)
	WaitJS(t, ctx, fmt.Sprintf("%s version %d is AVAILABLE", name, version),
		`(document.querySelector(`+js(sel)+`) || {}).textContent === 'AVAILABLE'`)
}

// SendTestRequest sends value from the broker page and returns the result text, or the
// error text with ok false.
func SendTestRequest(t testing.TB, ctx context.Context, baseURL, value string) (string, bool) {
	t.Helper()
	Go(t, ctx, baseURL, "broker")
	step(t, ctx, "send a test request",
		chromedp.WaitVisible(chromedp.CSS("#test-value")),
		chromedp.SetValue(chromedp.CSS("#test-value"), value),
		chromedp.Click(chromedp.CSS("#test-send")),
	)
	WaitJS(t, ctx, "the test result is shown", `document.querySelector('#test-result-json') || document.querySelector('#test-result-error')`)
	if txt, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('#test-result-error') || {}).textContent || ''`)); txt != "" {
		return txt, false
	}
	return valueOf(t, ctx, "#test-result-json"), true
}

func valueOf(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	return value(t, ctx, sel, chromedp.Text(chromedp.CSS(sel)))
}

// Screenshot saves a PNG of the whole page to path (directories created), scrolled to the
// top and without a pending notification, so pictures for the docs look alike.
func Screenshot(t testing.TB, ctx context.Context, path string) {
	t.Helper()
	step(t, ctx, "prepare screenshot", chromedp.Evaluate[chromedp.Void](`(() => {
		window.scrollTo(0, 0);
		const el = document.querySelector('#toast');
		if (el) el.hidden = true;
	})()`))
	png := value(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Viewport resizes the page, e.g. 390×844 for a phone.
func Viewport(t testing.TB, ctx context.Context, width, height int64, mobile bool) {
	t.Helper()
	var opts []chromedp.EmulateViewportOption
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulatePortrait)
	}
	step(t, ctx, "resize", chromedp.EmulateViewport(width, height, opts...))
}

// Scenario is the dashboard walk-through of the acceptance criteria: log in, see throughput
// move, find a poisoned request in the DLQ, fix and replay it and see its result, upload a
// model version and see it AVAILABLE. The caller makes requests flow and dead-letters the
// poisoned request before Run.
type Scenario struct {
	BaseURL, Token string
	// PoisonClass is the DLQ class to filter by ("validation"); PoisonMatch is text in the
	// poisoned record's value (its request_id); FixedValue replaces the value before the
	// replay ("" replays it unchanged).
	PoisonClass, PoisonMatch, FixedValue string
	// ModelName and ModelFile: the ONNX file uploaded as a new version.
	ModelName, ModelFile string
	// ScreenshotDir, if set, receives overview.png, dlq.png and models.png.
	ScreenshotDir string
}

// Result is what the scenario saw.
type Result struct {
	Throughput    string // requests per second shown on the overview
	ReplayResult  string // the replayed request's result, as JSON text
	UploadVersion int64
}

// Run walks the scenario in the browser tab ctx (from NewBrowser).
func (s Scenario) Run(t testing.TB, ctx context.Context) Result {
	t.Helper()
	shot := func(name string) {
		if s.ScreenshotDir != "" {
			Screenshot(t, ctx, filepath.Join(s.ScreenshotDir, name))
		}
	}
	var r Result
	Login(t, ctx, s.BaseURL, s.Token)
	r.Throughput = WaitThroughputMoves(t, ctx)
	shot("overview.png")
	r.ReplayResult = ReplayFromDLQ(t, ctx, s.BaseURL, s.PoisonClass, s.PoisonMatch, s.FixedValue)
	shot("dlq.png")
	r.UploadVersion = UploadModel(t, ctx, s.BaseURL, s.ModelName, s.ModelFile)
	WaitModelAvailable(t, ctx, s.BaseURL, s.ModelName, r.UploadVersion)
	shot("models.png")
	return r
}

// Text is the text content of the first element matching the CSS selector.
func Text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	return valueOf(t, ctx, sel)
}

// Eval evaluates a JavaScript expression in the page and returns its value.
func Eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	return value(t, ctx, expr, chromedp.Evaluate[T](expr))
}

// SetSelect chooses value in the <select> sel and fires its change event, as a user's
// choice would.
func SetSelect(t testing.TB, ctx context.Context, sel, value string) {
	t.Helper()
	WaitJS(t, ctx, "option "+value+" of "+sel, `[...(document.querySelector(`+js(sel)+`) || {options: []}).options].some(o => o.value === `+js(value)+`)`)
	step(t, ctx, "choose "+value+" in "+sel, chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector(`+js(sel)+`);
		s.value = `+js(value)+`; s.dispatchEvent(new Event('change', {bubbles: true})); })(); undefined`))
}

// SetValue replaces the value of the input sel, firing its input event as typing would.
func SetValue(t testing.TB, ctx context.Context, sel, value string) {
	t.Helper()
	WaitJS(t, ctx, sel+" shown", `document.querySelector(`+js(sel)+`) !== null`)
	step(t, ctx, "type into "+sel, chromedp.Evaluate[chromedp.Void](`(() => { const el = document.querySelector(`+js(sel)+`);
		el.value = `+js(value)+`; el.dispatchEvent(new Event('input', {bubbles: true})); })(); undefined`))
}

// Click clicks the element sel once it is visible.
func Click(t testing.TB, ctx context.Context, sel string) {
	t.Helper()
	step(t, ctx, "click "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// Reload reloads the page and waits until the dashboard is connected again.
func Reload(t testing.TB, ctx context.Context) {
	t.Helper()
	step(t, ctx, "reload", chromedp.Reload())
	WaitJS(t, ctx, "the live stream after the reload", `(document.querySelector('#live') || {}).className === 'pill pill-ok'`)
}

// WaitJSAcrossReload waits until expr is truthy like WaitJS, on a page that is about to
// reload (a language switch reloads the dashboard): evaluations that fail because the page
// went away are tried again.
func WaitJSAcrossReload(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(StepTimeout)
	var last error
	for time.Now().Before(deadline) {
		ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := chromedp.Run(ectx, chromedp.Evaluate[bool](`!!(() => { try { return `+expr+`; } catch (e) { return false; } })()`))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waiting until %s: %v", what, last)
}
