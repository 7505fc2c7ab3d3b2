package web

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web/webtest"
)

// go test ./web -run Browser -screenshots ../docs/screenshots refreshes the documentation's
// screenshots; without the flag they go to a temporary directory.
var screenshots = flag.String("screenshots", "", "directory to save dashboard screenshots to")

func screenshotDir(t *testing.T) string {
	if *screenshots != "" {
		return *screenshots
	}
	return t.TempDir()
}

const sixteen = `[0.11,0.42,0.93,0.27,0.55,0.61,0.08,0.77,0.34,0.29,0.81,0.46,0.12,0.65,0.38,0.52]`

// seedForScreens fills the DLQ with a realistic mix, like a line where a firmware update
// sent short feature vectors and a gateway sent garbage.
func seedForScreens(t *testing.T, env *testEnv) {
	t.Helper()
	now := time.Now()
	var recs []*store.Record
	for i := range 14 {
		class, model, msg, val := "validation", "demo", "input \"input\": shape [1,12] does not match the model's [-1,16]",
			fmt.Sprintf(`{"request_id":"line3-%04d","features":[0.2,0.4,0.1,0.9,0.3,0.3,0.5,0.7,0.1,0.2,0.8,0.6]}`, 4100+i)
		switch i % 5 {
		case 1:
			class, msg, val = "decode", "request is not JSON: invalid character 'x' looking for beginning of value", "x\x00\x01 garbled frame"
		case 3:
			class, model, msg = "model", "fraud", "model \"fraud\" version 3: INVALID_ARGUMENT: input must be float32"
		}
		recs = append(recs, &store.Record{
			Key: []byte(fmt.Sprintf("sensor-%02d", i%7)), Value: []byte(val), Class: class, Message: msg, Model: model,
			Headers:     []store.Header{{Key: "source", Value: []byte("gateway-2")}, {Key: "content-type", Value: []byte("application/json")}},
			SourceTopic: "inference_requests", SourcePartition: int32(i % 3), SourceOffset: int64(88120 + i*37), Attempts: 1,
			FailedAt: now.Add(-time.Duration(14-i) * 7 * time.Minute),
		})
	}
	putRecords(t, env.store, recs...)
	env.backend.mu.Lock()
	env.backend.models["fraud"] = &Model{Name: "fraud", Labels: map[string]int64{"stable": 2, "canary": 3},
		Versions: []ModelVersion{{Version: 2, State: ModelAvailable}, {Version: 3, State: ModelAvailable}}}
	env.backend.mu.Unlock()
	env.backend.dlq.WithLabelValues("validation", "demo").Add(9)
	env.backend.dlq.WithLabelValues("decode", "demo").Add(3)
	env.backend.dlq.WithLabelValues("model", "fraud").Add(2)
}

// TestBrowserDashboard drives the dashboard in headless Chromium: log in, watch throughput
// move, find a poisoned request in the DLQ, fix and replay it and see its result, upload a
// model version and see it AVAILABLE; screenshots of every page on the way.
func TestBrowserDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	env := newEnv(t, func(c *Config) { c.EventsInterval = 250 * time.Millisecond })
	seedForScreens(t, env)
	flow(t, env.backend, 2)
	// Errors keep trickling in so the error chart has something to say.
	errCtx, stopErr := context.WithCancel(context.Background())
	defer stopErr()
	go func() {
		tk := time.NewTicker(300 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-errCtx.Done():
				return
			case <-tk.C:
				env.backend.dlq.WithLabelValues([]string{"validation", "decode", "validation", "model"}[i%4], "demo").Inc()
			}
		}
	}()
	// The poisoned request: a sensor sent only three features.
	poisoned := `{"request_id": "poison-1", "features": [0.5, 0.25, 0.75]}`
	if _, err := env.backend.SendTestRequest(context.Background(), []byte("sensor-09"), []byte(poisoned), nil); err == nil {
		t.Fatal("the poisoned request was not dead-lettered")
	}
	dir := screenshotDir(t)
	ctx := webtest.NewBrowser(t)

	// A wrong token is refused on the page.
	if msg := webtest.LoginFails(t, ctx, env.base, "not-the-admin-token"); !strings.Contains(msg, "Wrong admin token") {
		t.Fatalf("login error %q", msg)
	}
	webtest.Screenshot(t, ctx, filepath.Join(dir, "login.png"))

	// Let the charts gather some history before the overview's screenshot.
	warm := func() {
		testutil.Eventually(t, 30*time.Second, func() error {
			env.srv.sampler.mu.Lock()
			n := len(env.srv.sampler.history)
			env.srv.sampler.mu.Unlock()
			if n < 40 {
				return fmt.Errorf("%d history points", n)
			}
			return nil
		})
	}
	warm()
	onnx := filepath.Join(t.TempDir(), "demo.onnx")
	if err := os.WriteFile(onnx, demo.ONNX, 0o644); err != nil {
		t.Fatal(err)
	}
	// The poisoned request is fixed by sending all sixteen features.
	got := webtest.Scenario{
		BaseURL: env.base, Token: testToken,
		PoisonClass: "validation", PoisonMatch: "poison-1", FixedValue: `{"request_id": "poison-1", "features": ` + sixteen + `}`,
		ModelName: "demo", ModelFile: onnx,
		ScreenshotDir: dir,
	}.Run(t, ctx)
	if got.Throughput == "–" {
		t.Fatalf("throughput %q", got.Throughput)
	}
	var result struct {
		RequestID  string    `json:"request_id"`
		Prediction []float64 `json:"prediction"`
	}
	if err := json.Unmarshal([]byte(got.ReplayResult), &result); err != nil || result.RequestID != "poison-1" || len(result.Prediction) != 1 {
		t.Fatalf("replay result %q (%v)", got.ReplayResult, err)
	}
	var l listResp
	env.api("GET", "/api/v1/dlq?class=validation", nil).json(t, &l)
	for _, r := range l.Records {
		if strings.Contains(r.Value, "poison-1") && r.Replays != 1 {
			t.Fatalf("replayed record shows %d replays", r.Replays)
		}
	}
	if got.UploadVersion != 2 {
		t.Fatalf("uploaded as version %d, want 2", got.UploadVersion)
	}

	// Broker: topics and a test request.
	out, ok := webtest.SendTestRequest(t, ctx, env.base, `{"request_id": "dash-1", "features": `+sixteen+`}`)
	if !ok || !strings.Contains(out, "dash-1") {
		t.Fatalf("test request: %q ok=%v", out, ok)
	}
	webtest.Screenshot(t, ctx, filepath.Join(dir, "broker.png"))

	// Sidecar mode, with a crash in its history.
	env.backend.mu.Lock()
	env.backend.sidecar = &SidecarStatus{Mode: "sidecar", State: "running", PID: 48211, Binary: "/usr/bin/tensorflow_model_server",
		Version: "2.18.0", StartedAt: time.Now().Add(-42 * time.Minute), Restarts: 1, LastExit: "signal: killed (OOM)",
		LastExitAt: time.Now().Add(-43 * time.Minute), Ready: []string{"demo", "fraud"},
		Endpoints: []Endpoint{{Address: "127.0.0.1:8500", Healthy: true, Detail: "gRPC health SERVING"}},
		LogTail: []string{
			"2025-06-02 09:14:03.118: I tensorflow_serving/model_servers/server.cc:77] Building single TensorFlow model file config: model_name: demo model_base_path: /var/lib/infergate/models/demo",
			"2025-06-02 09:14:03.312: I tensorflow_serving/core/loader_harness.cc:66] Approving load for servable version {name: demo version: 2}",
			"2025-06-02 09:14:03.901: I tensorflow_serving/core/loader_harness.cc:95] Successfully loaded servable version {name: demo version: 2}",
			"2025-06-02 09:14:03.907: I tensorflow_serving/model_servers/server.cc:444] Running gRPC ModelServer at 0.0.0.0:8500 ...",
			"2025-06-02 09:14:03.911: I tensorflow_serving/model_servers/server.cc:480] Exporting HTTP/REST API at:localhost:8501 ...",
		}}
	env.backend.mu.Unlock()
	webtest.Go(t, ctx, env.base, "sidecar")
	webtest.WaitJS(t, ctx, "sidecar state shown", `(document.querySelector('#sc-state') || {}).textContent === 'running'`)
	webtest.Screenshot(t, ctx, filepath.Join(dir, "sidecar.png"))

	webtest.Go(t, ctx, env.base, "settings")
	webtest.WaitJS(t, ctx, "settings shown", `document.querySelector('#settings').textContent.includes('data_dir')`)
	webtest.Screenshot(t, ctx, filepath.Join(dir, "settings.png"))

	// A phone: the overview and the DLQ must still be usable.
	webtest.Viewport(t, ctx, 390, 844, true)
	webtest.Go(t, ctx, env.base, "overview")
	webtest.WaitJS(t, ctx, "overview on a phone", `document.querySelector('#tput-in').textContent !== '–'`)
	webtest.Screenshot(t, ctx, filepath.Join(dir, "overview-phone.png"))
	t.Logf("screenshots in %s", dir)
}

// TestBrowserPolish checks what an operator saw wrong on the overview and
// models pages: a lag of 1 drew a full bar; "No errors" came with an emoji
// that renders as a box without an emoji font; an unreachable model server
// showed as a fake "v0 UNAVAILABLE" with the raw gRPC error.
func TestBrowserPolish(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	env := newEnv(t, func(c *Config) { c.EventsInterval = 100 * time.Millisecond })
	env.backend.mu.Lock()
	env.backend.ends[0], env.backend.committed[0] = 1, 0
	env.backend.models["demo"] = &Model{Name: "demo", Versions: []ModelVersion{{State: ModelUnavailable,
		Error: "rpc error: code = Unavailable desc = connection error: dial tcp 127.0.0.1:8500: connect: connection refused"}}}
	// The appliance's component says why it is not ready, gRPC's words included.
	env.backend.modelServer = &Component{Mode: "sidecar", State: StateDegraded, Address: "127.0.0.1:8500",
		Detail: "model server: rpc error: code = Unavailable desc = connection error: dial tcp 127.0.0.1:8500: connect: connection refused"}
	env.backend.mu.Unlock()
	ctx := webtest.NewBrowser(t)
	webtest.Login(t, ctx, env.base, testToken)

	webtest.WaitJS(t, ctx, "the lag bar of partition 0", `document.querySelector('#lag-bars .bar-fill') !== null`)
	// The footer shows the version /api/v1/status reports (cfg.Version here;
	// the release build's stamp in packaging's TestEmulated), the same one
	// the CLI, /metrics and the model server print.
	webtest.WaitJS(t, ctx, "the footer to name version test", `document.querySelector('#footer').textContent.startsWith('infergate test · ')`)
	width := webtest.Eval[float64](t, ctx, `parseFloat(document.querySelector('#lag-bars .bar-fill').style.width)`)
	if width <= 0 || width > 1 {
		t.Errorf("a lag of 1 draws a bar %.2f%% wide; want a sliver (scale floor 1000)", width)
	}
	errorsText := webtest.Text(t, ctx, "#err-bars")
	if !strings.Contains(errorsText, "No errors.") || strings.ContainsRune(errorsText, '🎉') {
		t.Errorf("error panel says %q", errorsText)
	}
	webtest.WaitJS(t, ctx, "the model chip says the model server is unreachable",
		`[...document.querySelectorAll('#overview-models .badge')].some(b => b.textContent === 'model server unreachable')`)
	chips := webtest.Text(t, ctx, "#overview-models")
	if strings.Contains(chips, "v0") {
		t.Errorf("overview shows a fake version: %q", chips)
	}
	// After a resume, the requests that waited through the pause finish at
	// once with a latency of seconds; the latency chart's scale follows the
	// 95th percentile then, not the outliers (drawn clipped at the top).
	if m := webtest.Eval[float64](t, ctx, `chartMax([...Array(100).fill(12), 20000])`); m > 100 {
		t.Errorf("latency scale with one 20 s outlier among 12 ms values: %v ms", m)
	}
	if m := webtest.Eval[float64](t, ctx, `chartMax([...Array(100).fill(12), 30])`); m < 30 {
		t.Errorf("latency scale %v hides an ordinary peak of 30 ms", m)
	}
	webtest.WaitJS(t, ctx, "the model server's card", `(document.querySelector('[data-component="model-server"]') || {}).textContent?.includes('connection refused')`)
	if card := webtest.Text(t, ctx, `[data-component="model-server"]`); strings.Contains(card, "rpc error") || strings.Contains(card, "desc =") {
		t.Errorf("model server card shows gRPC's raw error: %q", card)
	}
	// The DLQ's empty state: words only, no emoji that renders as a box without an emoji font.
	webtest.Go(t, ctx, env.base, "dlq")
	webtest.WaitJS(t, ctx, "the DLQ's empty state", `!document.querySelector('#dlq-empty').hidden`)
	if empty := webtest.Text(t, ctx, "#dlq-empty"); empty == "" || strings.ContainsFunc(empty, func(r rune) bool { return r >= 0x1F000 }) {
		t.Errorf("DLQ empty state %q", empty)
	}
	webtest.Go(t, ctx, env.base, "models")
	webtest.WaitJS(t, ctx, "the models table explains the unreachable server",
		`document.querySelector('#models-table tbody').textContent.includes('model server unreachable')`)
	table := webtest.Text(t, ctx, "#models-table tbody")
	if strings.Contains(table, "v0") || strings.Contains(table, "rpc error") || !strings.Contains(table, "connection refused") {
		t.Errorf("models table %q: want the cause without a fake v0 or gRPC's prefix", table)
	}
}
