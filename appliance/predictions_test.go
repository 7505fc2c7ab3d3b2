package appliance

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/feed"
	"github.com/infergate/infergate/internal/testutil"
)

type predictionsResp struct {
	feed.View
}

// TestPredictionsFeed sends the demo model normal and anomalous readings (inference/demo's
// generator, as `--demo` does) through the real pipeline: the Predictions API lists them with
// their scores and counts the anomalous ones at the model's threshold; an admin's new
// threshold is a model setting that starts the counts afresh.
func TestPredictionsFeed(t *testing.T) {
	a := start(t, testConfig(t))
	api := newAPIClient(t, a)
	cl := producer(t, a)
	gen := demo.NewGenerator(7)
	send := func(prefix string, normal, anomalous int) {
		var recs []*kgo.Record
		for i := range normal + anomalous {
			f := gen.Normal()
			if i >= normal {
				f = gen.Anomalous()
			}
			recs = append(recs, &kgo.Record{Key: []byte("press-1"), Value: requestValue(fmt.Sprintf("%s-%d", prefix, i), f)})
		}
		produce(t, cl, recs...)
	}
	demoStats := func(v predictionsResp) feed.ModelStats {
		for _, m := range v.Models {
			if m.Model == "demo" {
				return m
			}
		}
		return feed.ModelStats{}
	}

	send("n", 12, 4)
	var v predictionsResp
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/predictions?model=demo&limit=100", nil, 200, &v)
		if d := demoStats(v); d.Scored < 16 {
			return fmt.Errorf("demo: %+v", d)
		}
		return nil
	})
	d := demoStats(v)
	if d.Threshold != feed.DefaultThreshold || d.Anomalies != 4 || d.Scored != 16 || len(d.Buckets) == 0 {
		t.Fatalf("demo counts %+v, want 4 anomalies of 16 at threshold 0.5", d)
	}
	byID := map[string]feed.Prediction{}
	for _, p := range v.Recent {
		byID[p.RequestID] = p
	}
	for i := range 16 {
		p, ok := byID[fmt.Sprintf("n-%d", i)]
		if !ok || p.Score == nil || p.Key != "press-1" || p.Version != 1 || p.Anomaly != (i >= 12) {
			t.Fatalf("prediction n-%d: %+v (listed %v)", i, p, ok)
		}
	}

	// A viewer may not change the threshold; an admin may, and it is audited.
	code, _ := api.do("PUT", "/api/v1/models/demo/threshold", map[string]any{"threshold": "high"})
	if code != 400 {
		t.Fatalf("a threshold that is not a number: %d", code)
	}
	api.json("PUT", "/api/v1/models/demo/threshold", map[string]any{"threshold": 2}, 200, nil)
	send("m", 3, 3)
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/predictions", nil, 200, &v)
		if d := demoStats(v); d.Scored < 6 {
			return fmt.Errorf("demo after the new threshold: %+v", d)
		}
		return nil
	})
	if d := demoStats(v); d.Threshold != 2 || d.Scored != 6 || d.Anomalies != 0 {
		t.Fatalf("at threshold 2 (above every score): %+v", d)
	}
	var audit struct {
		Entries []struct{ Action, Detail string }
	}
	api.json("GET", "/api/v1/audit?limit=5", nil, 200, &audit)
	if len(audit.Entries) == 0 || audit.Entries[0].Action != "models.threshold" {
		t.Fatalf("audit %+v", audit.Entries)
	}
}
