package web

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/feed"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web/webtest"
)

// observeScores feeds f one batch of demo scores, as the pipeline would.
func observeScores(f *feed.Feed, first int, scores ...float32) {
	o := &pipeline.Observation{Spec: model.Spec{Name: "demo"}, Version: 1, Batched: true,
		Outputs: map[string]*tensor.Tensor{"output": tensor.FromFloat32(scores, int64(len(scores)), 1)}}
	for i := range scores {
		o.Requests = append(o.Requests, pipeline.ObservedRequest{ID: fmt.Sprintf(`"r-%d"`, first+i), Key: []byte("press-1"),
			Topic: "inference_requests", Offset: int64(first + i), Row: int64(i), Rows: 1})
	}
	f.Observe(o)
}

// TestBrowserPredictions shows the Predictions view in headless Chromium: the recent
// predictions with their scores, the anomaly count at the threshold, and a new threshold
// saved from the page (the admin's) starting the counts afresh.
func TestBrowserPredictions(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	// The feed keeps its thresholds in a store of its own here (the appliance's is shared).
	st, err := store.Open(store.DefaultConfig(t.TempDir()), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	fd, err := feed.New(st)
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, func(c *Config) { c.Predictions = fd })
	observeScores(fd, 0, 0.003, 0.002, 0.9991, 0.004, 0.998)

	ctx := webtest.NewBrowser(t)
	webtest.Login(t, ctx, env.base, testToken)
	webtest.Go(t, ctx, env.base, "predictions")
	webtest.WaitJS(t, ctx, "five predictions listed", `document.querySelectorAll('#pred-table tbody tr[data-model]').length === 5`)
	if n := webtest.Text(t, ctx, `.pred-model[data-model="demo"] .pred-anomalies`); n != "2" {
		t.Fatalf("anomalies shown %q, want 2", n)
	}
	if n := webtest.Eval[int](t, ctx, `document.querySelectorAll('#pred-table tbody tr[data-anomaly="1"]').length`); n != 2 {
		t.Fatalf("%d rows marked anomalous, want 2", n)
	}
	if text := webtest.Text(t, ctx, "#pred-table tbody"); !strings.Contains(text, "0.9991") || !strings.Contains(text, "r-4") {
		t.Fatalf("feed %q", text)
	}
	if bars := webtest.Eval[int](t, ctx, `document.querySelectorAll('.pred-model[data-model="demo"] .pred-chart rect.bar-anomalous').length`); bars != 1 {
		t.Fatalf("%d anomalous bars in the chart, want 1 (one interval)", bars)
	}

	// A threshold of 0.999 from the page: counts start afresh, one of two new scores is above it.
	webtest.SetValue(t, ctx, `.pred-model[data-model="demo"] .pred-threshold`, "0.999")
	webtest.Click(t, ctx, `.pred-model[data-model="demo"] .pred-threshold-form button`)
	testutil.WaitFor(t, 30*time.Second, "the threshold saved", func() bool { return fd.Threshold("demo") == 0.999 })
	observeScores(fd, 5, 0.9995, 0.998)
	webtest.WaitJS(t, ctx, "counts at the new threshold", `document.querySelector('.pred-model[data-model="demo"] .pred-scored').textContent === '2' &&
		document.querySelector('.pred-model[data-model="demo"] .pred-anomalies').textContent === '1'`)
}
