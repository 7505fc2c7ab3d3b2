package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/internal/testmodels"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/web"
)

// results follows the results topic: request_id -> result.
type results struct {
	mu  sync.Mutex
	got map[string]resultRec
	n   map[string]int // results per request_id (1 each: nothing twice)
}

type resultRec struct {
	Version    int64     `json:"model_version"`
	Prediction []float64 `json:"prediction"`
	key        string
}

func followResults(t *testing.T, a *running) *results {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.BrokerAddr()), kgo.ConsumeTopics(a.Config().Pipeline.ResultsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	r := &results{got: map[string]resultRec{}, n: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(rec *kgo.Record) {
				var v struct {
					ID string `json:"request_id"`
					resultRec
				}
				if err := json.Unmarshal(rec.Value, &v); err != nil {
					return
				}
				v.resultRec.key = string(rec.Key)
				r.mu.Lock()
				r.got[v.ID] = v.resultRec
				r.n[v.ID]++
				r.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return r
}

// wave produces one keyed request per device, feature 0 = x(device), and
// waits for all their results, which it returns by device.
func wave(t *testing.T, a *running, prod *kgo.Client, res *results, name string, devices int, x func(d int) float32) map[int]resultRec {
	t.Helper()
	var recs []*kgo.Record
	for d := range devices {
		f := make([]float32, 16)
		f[0] = x(d)
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "dev-%d", d), Value: requestValue(fmt.Sprintf("%s-%d", name, d), f)})
	}
	produce(t, prod, recs...)
	out := map[int]resultRec{}
	testutil.Eventually(t, 2*time.Minute, func() error {
		res.mu.Lock()
		defer res.mu.Unlock()
		for d := range devices {
			r, ok := res.got[fmt.Sprintf("%s-%d", name, d)]
			if !ok {
				return fmt.Errorf("wave %s: no result for device %d yet", name, d)
			}
			out[d] = r
		}
		return nil
	})
	return out
}

// waitRollout polls model demo's rollout until done says so.
func waitRollout(t *testing.T, api *apiClient, d time.Duration, done func(rollout.Rollout) bool) {
	t.Helper()
	testutil.Eventually(t, d, func() error {
		var r rollout.Rollout
		api.json("GET", "/api/v1/rollouts/demo", nil, 200, &r)
		if !done(r) {
			return fmt.Errorf("rollout %s at %.0f%% (step %d)", r.State, r.Percent, r.StepIndex)
		}
		return nil
	})
}

// writeFeatureVersion writes version v of the demo model into c's model
// repository: a model answering feature 0 of its input, or (relu) its ReLU.
func writeFeatureVersion(t *testing.T, c Config, v int, relu bool) {
	t.Helper()
	dir := filepath.Join(c.DataDir, "models", "demo", fmt.Sprint(v))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), testmodels.Feature(0, relu), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startTwoVersions starts an appliance whose demo v1 answers feature 0,
// uploads v2 answering its ReLU (they differ exactly when feature 0 is
// negative) and waits until both are AVAILABLE.
func startTwoVersions(t *testing.T, c Config) (*running, *apiClient) {
	t.Helper()
	writeFeatureVersion(t, c, 1, false)
	a := start(t, c)
	api := newAPIClient(t, a)
	var up struct {
		Version int64 `json:"version"`
	}
	api.json("POST", "/api/v1/models/demo/versions", testmodels.Feature(0, true), 201, &up)
	if up.Version != 2 {
		t.Fatalf("uploaded as version %d", up.Version)
	}
	var models struct {
		Models []web.Model `json:"models"`
	}
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/models", nil, 200, &models)
		if modelState(models.Models, "demo", 1) != web.ModelAvailable || modelState(models.Models, "demo", 2) != web.ModelAvailable {
			return fmt.Errorf("models %+v", models.Models)
		}
		return nil
	})
	return a, api
}

// TestRolloutOnLiveTraffic is issue 14's Done-when with real components:
// versions to go back to, a shadow whose report shows the known share of
// differing inputs, a planned split moving model_version per key
// consistently, and a candidate that starts disagreeing rolled back by its
// guard with every request answered once and nothing dead-lettered.
func TestRolloutOnLiveTraffic(t *testing.T) {
	c := testConfig(t)
	c.Rollout.CheckInterval = 50 * time.Millisecond
	// 0. Versions to go back to: an upload keeps v1 loaded (latest:2).
	a, api := startTwoVersions(t, c)
	prod := producer(t, a)
	res := followResults(t, a)
	var up struct {
		Version int64 `json:"version"`
	}
	var models struct {
		Models []web.Model `json:"models"`
	}
	w := wave(t, a, prod, res, "latest", 4, func(int) float32 { return -1 })
	for d, r := range w {
		if r.Version != 2 || r.Prediction[0] != 0 {
			t.Fatalf("after the upload device %d got %+v, want version 2's 0", d, r)
		}
	}
	var rb struct {
		Serving int64 `json:"serving_version"`
	}
	api.json("POST", "/api/v1/models/demo/rollback", nil, 200, &rb)
	if rb.Serving != 1 {
		t.Fatalf("rollback serves %d", rb.Serving)
	}
	w = wave(t, a, prod, res, "rolledback", 4, func(int) float32 { return -1 })
	for d, r := range w {
		if r.Version != 1 || r.Prediction[0] != -1 {
			t.Fatalf("after the rollback device %d got %+v, want version 1's -1", d, r)
		}
	}
	if code, body := api.do("POST", "/api/v1/models/demo/rollback", nil); code != 400 {
		t.Errorf("rollback below the lowest version: %d %s", code, body)
	}
	if code, body := api.do("DELETE", "/api/v1/models/demo/versions/1", nil); code != 409 {
		t.Errorf("deleting the serving version: %d %s", code, body)
	}

	// 1-2. Shadow: v2 scores a copy (the stable version is the pin, v1).
	shadowShare(t, a, api, prod, res, map[string]any{"model": "demo", "candidate": 2})
	// 3. A planned split 10% -> 50% -> 100%.
	plannedSplit(t, a, api, prod, res, 1, 2)

	// 4. A candidate that starts disagreeing mid-rollout is rolled back by
	// its guard: v3 answers feature 0 as v1 did, so it disagrees with v2 on
	// negative inputs only.
	api.json("POST", "/api/v1/models/demo/versions", testmodels.Feature(0, false), 201, &up)
	if up.Version != 3 {
		t.Fatalf("uploaded version %d", up.Version)
	}
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/models", nil, 200, &models)
		if modelState(models.Models, "demo", 3) != web.ModelAvailable {
			return fmt.Errorf("models %+v", models.Models)
		}
		return nil
	})
	guardRollback(t, a, api, prod, res, map[string]any{"model": "demo", "candidate": 3}, 2, 3)
	var audit struct {
		Entries []struct {
			Action string `json:"action"`
			Detail string `json:"detail"`
		} `json:"entries"`
	}
	api.json("GET", "/api/v1/audit?limit=1000", nil, 200, &audit)
	actions := map[string]int{}
	for _, e := range audit.Entries {
		actions[e.Action]++
	}
	for _, want := range []string{"models.rollback", "rollout.start", "rollout.abort", "rollout.step", "rollout.promote", "rollout.rolled_back"} {
		if actions[want] == 0 {
			t.Errorf("no %s in the audit log: %v", want, actions)
		}
	}
	metrics, _ := scrape(t, a.WebURL())
	if metrics["infergate_rollout_rollbacks_total"] != 1 || metrics["infergate_shadow_compared_total"] == 0 {
		t.Errorf("rollbacks %v, compared %v", metrics["infergate_rollout_rollbacks_total"], metrics["infergate_shadow_compared_total"])
	}
}

// rolloutDevices is how many keyed requests a wave of the rollout tests
// sends.
const rolloutDevices = 200

// shadowShare runs a shadow started with start (stable v1: feature 0,
// candidate v2: its ReLU): the results topic carries v1's predictions only,
// and the report shows the 25% of inputs with a negative feature 0 as
// differing, with the largest differences first. It aborts the shadow.
func shadowShare(t *testing.T, a *running, api *apiClient, prod *kgo.Client, res *results, start map[string]any) {
	t.Helper()
	var r rollout.Rollout
	api.json("POST", "/api/v1/rollouts", start, 201, &r)
	if r.Stable != 1 || r.Candidate != 2 || r.Mode != rollout.ModeShadow {
		t.Fatalf("shadow started as %+v", r)
	}
	const devices = rolloutDevices
	x := func(d int) float32 {
		if d%4 == 0 {
			return -float32(d%5 + 1)
		}
		return 0.5
	}
	w := wave(t, a, prod, res, "shadow", devices, x)
	for d, r := range w {
		if r.Version != 1 || r.Prediction[0] != float64(x(d)) {
			t.Fatalf("shadowed device %d got %+v: the results topic must carry the stable version only", d, r)
		}
	}
	var rep rollout.Report
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/rollouts/demo/report", nil, 200, &rep)
		if rep.Compared+int(rep.Dropped) < devices {
			return fmt.Errorf("compared %d, dropped %d", rep.Compared, rep.Dropped)
		}
		return nil
	})
	if rep.Compared < devices/2 {
		t.Fatalf("the shadow compared only %d of %d (dropped %d)", rep.Compared, devices, rep.Dropped)
	}
	// Sampling error: with every request sampled, drops are the only loss;
	// they are independent of the input, so the share stays near 25%.
	if share := 1 - rep.Agreement; math.Abs(share-0.25) > 0.05 {
		t.Errorf("the report shows %.3f differing, want 0.25 (compared %d)", share, rep.Compared)
	}
	if rep.Difference == nil || rep.Difference.Max != 5 || len(rep.Top) == 0 || rep.Top[0].Diff != 5 {
		t.Errorf("difference %+v top %+v", rep.Difference, rep.Top)
	}
	for _, c := range rep.Top {
		var d int
		fmt.Sscanf(c.Key, "dev-%d", &d)
		if d%4 != 0 || c.Topic != a.Config().Pipeline.RequestsTopic || c.Stable[0] != float64(x(d)) || c.Candidate[0] != 0 {
			t.Errorf("top difference %+v is not one of the differing inputs", c)
		}
	}
	api.json("POST", "/api/v1/rollouts/demo/abort", map[string]string{"reason": "shadow done"}, 200, &r)
}

// plannedSplit rolls model demo out from stable to candidate in planned
// steps 10% -> 50% -> 100%: model_version follows each key's percentile,
// and a key never goes back. The plan moves on wall-clock holds, so the loop
// is bounded by the plan, not by a number of waves (a pipeline that answers
// a wave in 20 ms sends hundreds within one hold), and after a wave that saw
// one step only it waits for the next step instead of sending more.
func plannedSplit(t *testing.T, a *running, api *apiClient, prod *kgo.Client, res *results, stable, candidate int64) {
	t.Helper()
	const devices = rolloutDevices
	holds := 3 * time.Second
	var r rollout.Rollout
	api.json("POST", "/api/v1/rollouts", map[string]any{"model": "demo", "stable": stable, "candidate": candidate,
		"steps": []map[string]any{{"percent": 10, "hold": holds.String()}, {"percent": 50, "hold": holds.String()}, {"percent": 100, "hold": holds.String()}}}, 201, &r)
	onCandidate := map[int]bool{}
	seen := map[float64]bool{}
	for i := 0; ; i++ {
		var before, after rollout.Rollout
		api.json("GET", "/api/v1/rollouts/demo", nil, 200, &before)
		w := wave(t, a, prod, res, fmt.Sprintf("split%d", i), devices, func(int) float32 { return 0.5 })
		api.json("GET", "/api/v1/rollouts/demo", nil, 200, &after)
		lo, hi := before.Percent, after.Percent
		if before.State != rollout.StateRunning {
			lo = 100
		}
		if after.State != rollout.StateRunning {
			hi = 100
		}
		nc := 0
		for d, res := range w {
			p := rollout.KeyPercentile(fmt.Appendf(nil, "dev-%d", d))
			switch {
			case res.Version == candidate:
				nc++
				onCandidate[d] = true
				if p >= hi {
					t.Errorf("wave %d (%.0f%%..%.0f%%): device %d at percentile %.2f answered by the candidate", i, lo, hi, d, p)
				}
			case res.Version == stable:
				if onCandidate[d] {
					t.Errorf("wave %d: device %d went back to the stable version", i, d)
				}
				if p < lo {
					t.Errorf("wave %d (%.0f%%..%.0f%%): device %d at percentile %.2f answered by the stable version", i, lo, hi, d, p)
				}
			default:
				t.Errorf("device %d answered by version %d", d, res.Version)
			}
		}
		if after.State == rollout.StatePromoted {
			break
		}
		if lo == hi {
			seen[lo] = true
			t.Logf("wave %d at %.0f%%: %d of %d devices on version %d", i, lo, nc, devices, candidate)
			waitRollout(t, api, 3*holds+2*time.Minute, func(r rollout.Rollout) bool {
				return r.State != rollout.StateRunning || r.Percent != lo
			})
		}
	}
	if !seen[100] {
		w := wave(t, a, prod, res, "promoted", devices, func(int) float32 { return 0.5 })
		for d, r := range w {
			if r.Version != candidate {
				t.Fatalf("after promotion device %d got version %d", d, r.Version)
			}
		}
	}
}

// guardRollback starts a 50% split with a disagreement guard (start names
// the model and versions; the versions must agree on a positive feature 0
// and differ on a negative one): it keeps running while they agree and is
// rolled back by its guard once the inputs turn negative; afterwards the
// stable version answers everything, every request has exactly one result
// and nothing was dead-lettered.
func guardRollback(t *testing.T, a *running, api *apiClient, prod *kgo.Client, res *results, start map[string]any, stable, candidate int64) {
	t.Helper()
	const devices = rolloutDevices
	start["steps"] = []map[string]any{{"percent": 50, "hold": "1h"}}
	start["guards"] = map[string]any{"max_disagreement": 0.05, "min_requests": 20}
	var r rollout.Rollout
	api.json("POST", "/api/v1/rollouts", start, 201, &r)
	if r.Stable != stable || r.Candidate != candidate {
		t.Fatalf("guarded rollout %+v, want stable %d candidate %d", r, stable, candidate)
	}
	w := wave(t, a, prod, res, "healthy", devices, func(int) float32 { return 0.5 })
	counts := map[int64]int{}
	for _, r := range w {
		counts[r.Version]++
	}
	if counts[stable] == 0 || counts[candidate] == 0 {
		t.Fatalf("a 50%% split answered %v", counts)
	}
	api.json("GET", "/api/v1/rollouts/demo", nil, 200, &r)
	if r.State != rollout.StateRunning {
		t.Fatalf("an agreeing candidate ended: %+v", r)
	}
	// Now the inputs turn negative: the candidate disagrees. Waves go on
	// until the guard acts (bounded by time: how many waves the shadow needs
	// depends on how many copies it dropped while busy).
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		wave(t, a, prod, res, fmt.Sprintf("failing%d", i), devices, func(int) float32 { return -2 })
		api.json("GET", "/api/v1/rollouts/demo", nil, 200, &r)
		if r.State == rollout.StateRolledBack {
			break
		}
		if r.State != rollout.StateRunning || time.Now().After(deadline) {
			t.Fatalf("not rolled back after %d failing waves: %+v", i+1, r)
		}
	}
	if !strings.Contains(r.Reason, "disagrees") || r.Evidence == nil || r.Evidence.Disagreement <= 0.05 {
		t.Errorf("rolled back with %q %+v", r.Reason, r.Evidence)
	}
	w = wave(t, a, prod, res, "after", devices, func(int) float32 { return -2 })
	for d, r := range w {
		if r.Version != stable {
			t.Fatalf("after the rollback device %d got version %d", d, r.Version)
		}
	}
	// Nothing lost, nothing twice, nothing dead-lettered.
	res.mu.Lock()
	for id, n := range res.n {
		if n != 1 {
			t.Errorf("request %s has %d results", id, n)
		}
	}
	res.mu.Unlock()
	var dl struct {
		Total int `json:"total"`
	}
	api.json("GET", "/api/v1/dlq", nil, 200, &dl)
	if dl.Total != 0 {
		t.Errorf("%d requests dead-lettered", dl.Total)
	}
}
