package appliance

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
	"github.com/infergate/infergate/web/webtest"
)

// go test ./appliance -run Browser -screenshots ../docs/screenshots refreshes
// the documentation's screenshots from a real appliance (it waits a minute
// first so the charts have history); without the flag they go to a
// temporary directory.
var screenshots = flag.String("screenshots", "", "directory to save dashboard screenshots of the real appliance to")

// TestBrowserDashboard walks the dashboard of a whole appliance, with demo
// traffic flowing, in headless Chromium: log in, see throughput move, find a
// poisoned request in the DLQ, fix and replay it and see its result, upload
// a model version and see it AVAILABLE, send a test request.
func TestBrowserDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := webtest.NewBrowser(t) // skips without chromium, before starting anything
	dir := *screenshots
	if dir == "" {
		dir = t.TempDir()
	}

	c := testConfig(t)
	if *screenshots != "" {
		// The settings page shows the data dir: make it look like a real one.
		abs, err := filepath.Abs(*screenshots)
		if err != nil {
			t.Fatal(err)
		}
		dir = abs
		t.Chdir(t.TempDir())
		c.DataDir = "infergate-data"
	}
	c.Demo.Enabled = true
	c.Demo.Rate = 40
	logger := testutil.Logger(t)
	if *screenshots != "" {
		// The log view's picture shows the info records an operator sees
		// (the log stream itself is dropped, not written into the test's log).
		logger = NewLogger(c.Log, io.Discard)
	}
	a := startWith(t, c, logger)
	base := a.WebURL()

	// What a line sends on a bad day: short feature vectors after a firmware
	// update, a garbled frame, a request for a model that is not deployed.
	// The poisoned request the walk-through fixes is among them.
	cl := producer(t, a)
	var recs []*kgo.Record
	for i := range 6 {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("line3-sensor-%02d", i)),
			Value:   requestValue(fmt.Sprintf("line3-%04d", 4100+i), features(12, 0.2)),
			Headers: []kgo.RecordHeader{{Key: "source", Value: []byte("gateway-2")}}})
	}
	recs = append(recs,
		&kgo.Record{Key: []byte("gateway-7"), Value: []byte("x\x00\x01 garbled frame")},
		&kgo.Record{Key: []byte("sensor-11"), Value: []byte(`{"request_id": "q-88", "model": "fraud", "features": [0.1]}`)},
		&kgo.Record{Key: []byte("sensor-09"), Value: []byte(`{"request_id": "poison-1", "features": [0.5, 0.25, 0.75]}`)},
	)
	produce(t, cl, recs...)
	testutil.Eventually(t, time.Minute, func() error {
		n, err := a.Store().Count(store.Filter{})
		if err != nil || n < len(recs) {
			return fmt.Errorf("%d DLQ records (%v)", n, err)
		}
		return nil
	})

	// A wrong token is refused on the page.
	if msg := webtest.LoginFails(t, ctx, base, "not-the-admin-token"); !strings.Contains(msg, "Wrong admin token") {
		t.Fatalf("login error %q", msg)
	}
	if *screenshots != "" {
		// An empty form looks better in the docs than an error.
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("#token"))); err != nil {
			t.Fatal(err)
		}
		webtest.Screenshot(t, ctx, filepath.Join(dir, "login.png"))
	}

	onnx := filepath.Join(t.TempDir(), "demo.onnx")
	if err := os.WriteFile(onnx, demo.ONNX, 0o644); err != nil {
		t.Fatal(err)
	}
	fixed := string(requestValue("poison-1", features(16, 0.5)))
	sc := webtest.Scenario{
		BaseURL: base, Token: a.AdminToken(),
		PoisonClass: "validation", PoisonMatch: "poison-1", FixedValue: fixed,
		ModelName: "demo", ModelFile: onnx,
	}
	if *screenshots != "" {
		sc.ScreenshotDir = dir
		// Let the charts gather a minute of history first (the dashboard
		// samples whether or not anyone watches).
		time.Sleep(70 * time.Second)
	}
	got := sc.Run(t, ctx)

	var result struct {
		RequestID  string    `json:"request_id"`
		Model      string    `json:"model"`
		Prediction []float64 `json:"prediction"`
	}
	if err := json.Unmarshal([]byte(got.ReplayResult), &result); err != nil || result.RequestID != "poison-1" || len(result.Prediction) != 1 {
		t.Fatalf("replay result %q (%v)", got.ReplayResult, err)
	}
	if got.UploadVersion != 2 {
		t.Fatalf("uploaded as version %d, want 2", got.UploadVersion)
	}
	// The model server really serves it.
	var models modelsResp
	newAPIClient(t, a).json("GET", "/api/v1/models", nil, 200, &models)
	if s := modelState(models.Models, "demo", 2); s != "AVAILABLE" {
		t.Fatalf("demo v2 is %q", s)
	}

	// Broker page: topics, and a test request answered by the pipeline.
	out, ok := webtest.SendTestRequest(t, ctx, base, string(requestValue("dash-1", features(16, 0.3))))
	if !ok || !strings.Contains(out, "dash-1") || !strings.Contains(out, "prediction") {
		t.Fatalf("test request: %q ok=%v", out, ok)
	}
	webtest.WaitJS(t, ctx, "topics listed", `document.querySelector('#topics').textContent.includes('inference_requests')`)
	webtest.Screenshot(t, ctx, filepath.Join(dir, "broker.png"))
	// A bad test request shows why it was dead-lettered (the previous
	// answer removed first, so the wait is for the new one).
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('#test-result-json').remove(); undefined`)); err != nil {
		t.Fatal(err)
	}
	out, ok = webtest.SendTestRequest(t, ctx, base, `{"request_id": "dash-2", "features": [1, 2]}`)
	if ok || !strings.Contains(out, "validation") {
		t.Fatalf("bad test request: %q ok=%v", out, ok)
	}

	// Settings (its screenshot comes from TestBrowserSettings, where they can be changed).
	webtest.Go(t, ctx, base, "settings")
	webtest.WaitJS(t, ctx, "settings shown", `document.querySelector('#settings-table').textContent.includes('pipeline.max_batch_size')`)
	shown := webtest.Eval[string](t, ctx, `document.querySelector('#settings-card').innerText + [...document.querySelectorAll('#settings-table input')].map(i => i.value).join(' ')`)
	if strings.Contains(shown, a.AdminToken()) {
		t.Fatal("the settings page shows the admin token")
	}
	if !strings.Contains(shown, "without a config file") {
		t.Errorf("started without a config file, the settings page does not say why they cannot be changed")
	}

	// The demo's predictions with their anomalies, and the appliance's own log.
	webtest.Go(t, ctx, base, "predictions")
	webtest.WaitJS(t, ctx, "predictions listed", `document.querySelectorAll('#pred-table tbody tr[data-model]').length > 5`)
	webtest.Screenshot(t, ctx, filepath.Join(dir, "predictions.png"))
	webtest.Go(t, ctx, base, "logs")
	webtest.WaitJS(t, ctx, "log records listed", `document.querySelectorAll('#log-table tbody tr').length > 0`)
	webtest.Screenshot(t, ctx, filepath.Join(dir, "logs.png"))
	if *screenshots != "" {
		// The overview in Simplified Chinese (needs a CJK font, e.g. fonts-noto-cjk).
		webtest.Go(t, ctx, base, "overview")
		webtest.SetSelect(t, ctx, "#lang", "zh")
		webtest.WaitJSAcrossReload(t, ctx, "the page in Chinese", `document.documentElement.lang === 'zh-CN' && document.querySelector('#tput-in').textContent !== '–'`)
		webtest.WaitJS(t, ctx, "the charts drawn", `document.querySelectorAll('#view-overview svg path').length > 2`)
		webtest.Screenshot(t, ctx, filepath.Join(dir, "overview-zh.png"))
		webtest.SetSelect(t, ctx, "#lang", "en")
		webtest.WaitJSAcrossReload(t, ctx, "the page in English", `document.documentElement.lang === 'en' && document.querySelector('#tput-in').textContent !== '–'`)
	}

	// A phone: the overview must still be usable.
	webtest.Viewport(t, ctx, 390, 844, true)
	webtest.Go(t, ctx, base, "overview")
	webtest.WaitJS(t, ctx, "overview on a phone", `document.querySelector('#tput-in').textContent !== '–'`)
	webtest.Screenshot(t, ctx, filepath.Join(dir, "overview-phone.png"))
	t.Logf("throughput shown %s; screenshots in %s", got.Throughput, dir)
}

// TestBrowserSidecarScreenshot takes the documentation's sidecar page
// screenshot from a real appliance in sidecar mode: `infergate
// model-server` stands in for tensorflow_model_server, demo traffic flows,
// and the child is killed once so restarts and last exit are real. It only
// runs with -screenshots (TestWebSidecar and TestSidecarRestartAndBatching
// test the same paths without a browser).
func TestBrowserSidecarScreenshot(t *testing.T) {
	if *screenshots == "" {
		t.Skip("only with -screenshots")
	}
	ctx := webtest.NewBrowser(t)
	dir, err := filepath.Abs(*screenshots)
	if err != nil {
		t.Fatal(err)
	}

	c := sidecarTestConfig(t)
	if err := demo.Install(filepath.Join(c.DataDir, ModelsDir)); err != nil {
		t.Fatal(err)
	}
	c.Demo.Enabled = true
	c.Demo.Rate = 40
	a := start(t, c)
	api := newAPIClient(t, a)

	var sc struct {
		Enabled bool
		web.SidecarStatus
	}
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/sidecar", nil, 200, &sc)
		if !sc.Enabled || !strings.HasPrefix(sc.State, "ready") || sc.PID == 0 {
			return fmt.Errorf("sidecar: %+v", sc)
		}
		return nil
	})
	first := sc.PID
	// A crash in its history (the stand-in script execs, so the PID is the
	// model server's).
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, func() error {
		api.json("GET", "/api/v1/sidecar", nil, 200, &sc)
		if sc.Restarts != 1 || sc.PID == first || !strings.HasPrefix(sc.State, "ready") {
			return fmt.Errorf("sidecar after the kill: %+v", sc)
		}
		return nil
	})
	// Demo traffic answered by the restarted child.
	res0, _ := scrape(t, a.WebURL())
	testutil.Eventually(t, time.Minute, func() error {
		if s, _ := scrape(t, a.WebURL()); s["infergate_results_total"] < res0["infergate_results_total"]+40 {
			return fmt.Errorf("%v results", s["infergate_results_total"])
		}
		return nil
	})

	webtest.Login(t, ctx, a.WebURL(), a.AdminToken())
	webtest.Go(t, ctx, a.WebURL(), "sidecar")
	webtest.WaitJS(t, ctx, "sidecar state shown", `((document.querySelector('#sc-state') || {}).textContent || '').startsWith('ready') && document.querySelector('#sc-restarts').textContent === '1'`)
	webtest.Screenshot(t, ctx, filepath.Join(dir, "sidecar.png"))
	t.Logf("sidecar %s, pid %d (was %d), last exit %q; screenshot in %s", sc.State, sc.PID, first, sc.LastExit, dir)
}

// TestBrowserIngress drives the dashboard's Ingress view of a real appliance
// with the ingress on and device credentials: a connected mosquitto_sub
// device shows as an MQTT client, mosquitto_pub traffic moves the MQTT rate
// and the answers, and a wrong password and a publish on another device's
// topic appear among the recent rejects (never the password).
func TestBrowserIngress(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	pub, sub := needMosquitto(t)
	ctx := webtest.NewBrowser(t)
	dir := *screenshots
	if dir == "" {
		dir = t.TempDir()
	}
	devices := filepath.Join(t.TempDir(), "devices")
	if err := os.WriteFile(devices, []byte("press1 s3cret-1\npress2 s3cret-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t)
	c.Ingress.Enabled = true
	c.Ingress.MQTTListen = "127.0.0.1:0"
	c.Ingress.NATSListen = "127.0.0.1:0"
	c.Ingress.DevicesFile = devices
	a := start(t, c)
	base := a.WebURL()
	mqttAddr := a.Ingress().MQTTAddr()
	host, port, err := net.SplitHostPort(mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	as := func(user, pass string) []string { return []string{"-h", host, "-p", port, "-u", user, "-P", pass} }

	// press1 stays connected, reading its answers, while it sends a
	// request every 100 ms.
	bg, stop := context.WithCancel(context.Background())
	defer stop()
	listener := exec.CommandContext(bg, sub, append(as("press1", "s3cret-1"), "-q", "1", "-t", "infergate/results/+/press1")...)
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-bg.Done():
				return
			case <-tk.C:
			}
			_ = exec.CommandContext(bg, pub, append(as("press1", "s3cret-1"), "-q", "1", "-t", "infergate/requests/demo/press1",
				"-m", string(requestValue(fmt.Sprintf("press1-%d", i), features(16, 0.4))))...).Run()
		}
	}()
	t.Cleanup(func() { stop(); _ = listener.Wait(); <-sending })

	// A wrong password, and press2 publishing as press1's neighbour.
	if out, err := exec.Command(pub, append(as("press2", "not-the-password"), "-q", "1", "-t",
		"infergate/requests/demo/press2", "-m", "{}")...).CombinedOutput(); err == nil {
		t.Fatalf("a wrong password was let in: %s", out)
	}
	mosquitto(t, pub, append(as("press2", "s3cret-2"), "-q", "1", "-t", "infergate/requests/demo/press1", "-m", `{"request_id":"forged"}`)...)

	webtest.Login(t, ctx, base, a.AdminToken())
	webtest.Go(t, ctx, base, "ingress")
	webtest.WaitJS(t, ctx, "the MQTT listener", `[...document.querySelectorAll('#ing-listeners tr[data-protocol="mqtt"] td')].some((td) => td.textContent === `+jsString(mqttAddr)+`)`)
	webtest.WaitJS(t, ctx, "a connected MQTT device", `parseInt(document.querySelector('#ing-clients-mqtt').textContent) >= 1`)
	webtest.WaitJS(t, ctx, "MQTT requests in and answers out", `parseFloat(document.querySelector('#ing-in-mqtt').textContent) > 0 &&
		parseFloat(document.querySelector('#ing-out').textContent) > 0`)
	webtest.WaitJS(t, ctx, "the wrong password among the rejects", `[...document.querySelectorAll('#ing-rejects tr[data-reason="credentials"]')].some((tr) => tr.textContent.includes('press2'))`)
	webtest.WaitJS(t, ctx, "the forged publish among the rejects", `[...document.querySelectorAll('#ing-rejects tr[data-reason="permission"]')].some((tr) => tr.textContent.includes('infergate.requests.demo.press1'))`)
	webtest.WaitJS(t, ctx, "rejects by reason", `document.querySelector('#ing-rej-bars').textContent.includes('credentials')`)
	if text := webtest.Text(t, ctx, "#view-ingress"); strings.Contains(text, "not-the-password") || strings.Contains(text, "s3cret") {
		t.Fatalf("the Ingress view shows a password: %s", text)
	}
	webtest.Screenshot(t, ctx, filepath.Join(dir, "ingress.png"))
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
