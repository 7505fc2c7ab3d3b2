package rollout

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testmodels"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

type env struct {
	srv *modelserver.Server
	st  *store.Store
	dir string
}

// newEnv serves model "m": version 1 returns feature 0, version 2 its ReLU,
// so they differ exactly on inputs whose feature 0 is negative.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	for v, relu := range map[int]bool{1: false, 2: true} {
		d := filepath.Join(dir, "models", "m", fmt.Sprint(v))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "model.onnx"), testmodels.Feature(0, relu), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mc := modelserver.DefaultConfig()
	mc.GRPCListen, mc.RESTListen = "", ""
	mc.Models = []tfserving.ModelConfig{{Name: "m", BasePath: filepath.Join(dir, "models", "m"), Policy: tfserving.VersionPolicy{Latest: 2}}}
	srv, err := modelserver.New(mc, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := srv.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, st: openStore(t, filepath.Join(dir, "store")), dir: dir}
}

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(store.DefaultConfig(dir), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func (e *env) versions(ctx context.Context, name string) ([]int64, error) {
	for _, m := range e.srv.Models() {
		if m.Name == name {
			var out []int64
			for _, v := range m.Versions {
				if v.State == modelserver.StateAvailable {
					out = append(out, v.Version)
				}
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("%w: no model %s", ErrNotFound, name)
}

func (e *env) controller(t *testing.T, cfg Config) (*Controller, *[]string) {
	t.Helper()
	var audit []string
	c, err := New(cfg, testutil.Logger(t), e.st, e.srv.InProcess(), e.versions,
		func(_ context.Context, a, d string) { audit = append(audit, a+" "+d) }, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return c, &audit
}

// batch predicts rows on version v as the pipeline would and observes it:
// row i has feature 0 = x(i).
func (e *env) batch(t *testing.T, c *Controller, v int64, first, n int, x func(i int) float32) {
	t.Helper()
	data := make([]float32, n*16)
	o := &pipeline.Observation{Spec: model.Spec{Name: "m", Version: v}, Batched: true}
	for i := range n {
		data[i*16] = x(first + i)
		o.Requests = append(o.Requests, pipeline.ObservedRequest{ID: fmt.Sprintf(`"r-%d"`, first+i),
			Key: fmt.Appendf(nil, "dev-%d", first+i), Topic: "inference_requests", Offset: int64(first + i), Row: int64(i), Rows: 1})
	}
	o.Inputs = map[string]*tensor.Tensor{"input": {DType: tensor.Float, Shape: []int64{int64(n), 16}, Data: data}}
	start := time.Now()
	res, err := e.srv.InProcess().Predict(context.Background(), o.Spec, o.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	o.Latency, o.Version, o.Outputs = time.Since(start), res.Version, res.Outputs
	c.Observe(o)
}

func run(t *testing.T, c *Controller) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A shadow of a candidate that differs on every 4th input reports 25%
// disagreement, those requests as the top differences, and the flips.
func TestShadowReportShowsKnownShare(t *testing.T) {
	e := newEnv(t)
	c, audit := e.controller(t, DefaultConfig())
	run(t, c)
	if _, err := c.Start(context.Background(), Spec{Model: "m"}); err == nil {
		t.Fatal("started without a candidate: the highest version is already the one serving")
	}
	r, err := c.Start(context.Background(), Spec{Model: "m", Stable: 1, Candidate: 2, Threshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != ModeShadow || r.Percent != 0 {
		t.Fatalf("started %+v, want a shadow", r)
	}
	// Every request is answered by version 1 while shadowing.
	for i := range 50 {
		if v := c.Route("m", fmt.Appendf(nil, "dev-%d", i)); v != 1 {
			t.Fatalf("shadow routes key %d to %d, want 1", i, v)
		}
	}
	x := func(i int) float32 {
		if i%4 == 0 {
			return -float32(i%7 + 1) // candidate says 0: differs by i%7+1
		}
		return 0.25
	}
	const n = 400
	for first := 0; first < n; first += 40 {
		e.batch(t, c, 1, first, 40, x)
	}
	var rep *Report
	testutil.Eventually(t, time.Minute, func() error {
		rep, err = c.Report("m")
		if err != nil {
			return err
		}
		if rep.Compared+int(rep.Dropped) < n {
			return fmt.Errorf("compared %d, dropped %d of %d", rep.Compared, rep.Dropped, n)
		}
		return nil
	})
	if rep.Compared < n/2 {
		t.Fatalf("only %d of %d compared (%d dropped)", rep.Compared, n, rep.Dropped)
	}
	// Exactly the inputs with a negative feature 0 differ.
	want := 0
	for _, top := range rep.Top {
		var i int
		fmt.Sscanf(top.RequestID, `"r-%d"`, &i)
		if i%4 != 0 || top.Diff != float64(i%7+1) || top.Stable[0] != float64(x(i)) || top.Candidate[0] != 0 {
			t.Errorf("top difference %+v is not one of the differing inputs", top)
		}
	}
	for _, q := range rep.Top {
		if q.Diff == 7 {
			want++
		}
	}
	if math.Abs(1-rep.Agreement-0.25) > 0.001 {
		t.Errorf("disagreement %.3f, want 0.25 (%d compared)", 1-rep.Agreement, rep.Compared)
	}
	if rep.Difference.Max != 7 || len(rep.Top) != TopN || rep.Top[0].Diff != 7 || want == 0 {
		t.Errorf("max %v, top %d (first %v), want 7 and %d", rep.Difference.Max, len(rep.Top), rep.Top[0].Diff, TopN)
	}
	// Scores of 0.25 vs 0.25 and -k vs 0 never cross 0.5: no flips.
	if rep.Flips != 0 || rep.Kind != "score" || rep.Candidate.Errors != 0 || rep.Stable.P99Ms <= 0 || rep.Candidate.P99Ms <= 0 {
		t.Errorf("report %+v", rep)
	}
	if len(*audit) != 1 {
		t.Errorf("audit %v", *audit)
	}
}

// A planned split moves keys consistently, survives a restart of the
// controller, and a guard rolls it back with the stable version pinned.
func TestSplitStepsAndGuardRollback(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	clock := func() time.Time { return now }
	cfg := DefaultConfig()
	cfg.Now = clock
	cfg.CheckInterval = time.Hour // checks are driven by the test
	c, audit := e.controller(t, cfg)
	_, err := c.Start(context.Background(), Spec{Model: "m", Stable: 1, Candidate: 2,
		Steps:  []Step{{10, Duration(time.Minute)}, {50, Duration(time.Minute)}, {100, Duration(time.Minute)}},
		Guards: Guards{MaxDisagreement: 0.1, MinRequests: 20}})
	if err != nil {
		t.Fatal(err)
	}
	share := func() (float64, map[string]int64) {
		got := map[string]int64{}
		n := 0
		for i := range 2000 {
			k := fmt.Sprintf("dev-%d", i)
			got[k] = c.Route("m", []byte(k))
			if got[k] == 2 {
				n++
			}
		}
		return float64(n) / 20, got
	}
	p10, at10 := share()
	if p10 < 7 || p10 > 13 {
		t.Fatalf("10%% step sends %.1f%% of keys to the candidate", p10)
	}
	now = now.Add(61 * time.Second)
	c.check()
	p50, at50 := share()
	if p50 < 45 || p50 > 55 {
		t.Fatalf("50%% step sends %.1f%%", p50)
	}
	for k, v := range at10 {
		if v == 2 && at50[k] != 2 {
			t.Fatalf("key %s left the candidate when its share grew", k)
		}
	}
	// A restarted controller routes the same.
	c2, _ := e.controller(t, cfg)
	if _, again := share(); fmt.Sprint(again) != fmt.Sprint(at50) {
		t.Fatal("routing changed")
	}
	_ = c2
	// The candidate disagrees on every input with a negative feature 0.
	run(t, c)
	for first := 0; first < 200; first += 20 {
		e.batch(t, c, 1, first, 20, func(int) float32 { return -1 })
	}
	testutil.Eventually(t, time.Minute, func() error {
		c.check()
		r, _ := c.Get("m")
		if r.State != StateRolledBack {
			return fmt.Errorf("state %s", r.State)
		}
		return nil
	})
	r, _ := c.Get("m")
	if r.Evidence == nil || r.Evidence.Disagreement < 0.99 || r.Percent != 0 {
		t.Fatalf("rolled back %+v %+v", r, r.Evidence)
	}
	for i := range 100 {
		if v := c.Route("m", fmt.Appendf(nil, "dev-%d", i)); v != 1 {
			t.Fatalf("after the rollback key %d goes to %d", i, v)
		}
	}
	if c.Serving("m") != 1 {
		t.Fatalf("pinned %d after rollback", c.Serving("m"))
	}
	found := false
	for _, a := range *audit {
		if len(a) > 19 && a[:19] == "rollout.rolled_back" {
			found = true
		}
	}
	if !found {
		t.Errorf("no rollback in the audit: %v", *audit)
	}
	// The evidence stays readable. The rollback decides on the live counts; the report
	// reads the store, which the shadow queue fills a moment later.
	testutil.Eventually(t, time.Minute, func() error {
		rep, err := c.Report("m")
		if err != nil || rep.Compared == 0 {
			return fmt.Errorf("report after rollback: %+v %v", rep, err)
		}
		if rep.Agreement != 0 {
			t.Fatalf("report after rollback: agreement %v, want 0: %+v", rep.Agreement, rep)
		}
		return nil
	})
}

func TestPin(t *testing.T) {
	e := newEnv(t)
	c, _ := e.controller(t, DefaultConfig())
	if err := c.Pin(context.Background(), "m", 3); err == nil {
		t.Fatal("pinned an unavailable version")
	}
	if err := c.Pin(context.Background(), "m", 1); err != nil {
		t.Fatal(err)
	}
	if v := c.Route("m", []byte("k")); v != 1 {
		t.Fatalf("route %d", v)
	}
	c2, _ := e.controller(t, DefaultConfig())
	if v := c2.Route("m", []byte("k")); v != 1 {
		t.Fatalf("after restart route %d", v)
	}
	if err := c2.Pin(context.Background(), "m", 0); err != nil || c2.Route("m", nil) != 0 {
		t.Fatalf("unpin: %v", err)
	}
}

func TestParseSteps(t *testing.T) {
	s, err := ParseSteps("10%:30s, 50%:1m,100")
	if err != nil || len(s) != 3 || s[0].Percent != 10 || time.Duration(s[1].Hold) != time.Minute || s[2].Hold != 0 {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := ParseSteps("x%:1s"); err == nil {
		t.Fatal("accepted x%")
	}
}

// Dead-lettered answers of the candidate break max_error_rate; the stable
// version's failures do not count against it.
func TestErrorRateGuard(t *testing.T) {
	e := newEnv(t)
	cfg := DefaultConfig()
	cfg.CheckInterval = time.Hour
	c, _ := e.controller(t, cfg)
	if _, err := c.Start(context.Background(), Spec{Model: "m", Stable: 1, Candidate: 2, Percent: 50,
		Guards: Guards{MaxErrorRate: 0.1, MinRequests: 10}}); err != nil {
		t.Fatal(err)
	}
	fail := func(v int64, n int) {
		o := &pipeline.Observation{Spec: model.Spec{Name: "m", Version: v}, Err: fmt.Errorf("boom"), Class: "model"}
		for i := range n {
			o.Requests = append(o.Requests, pipeline.ObservedRequest{ID: fmt.Sprint(i), Rows: 1, Row: int64(i)})
		}
		c.Observe(o)
	}
	fail(1, 50)
	c.check()
	if r, _ := c.Get("m"); r.State != StateRunning {
		t.Fatalf("the stable version's errors ended the rollout: %+v", r)
	}
	for range 9 {
		e.batch(t, c, 2, 0, 1, func(int) float32 { return 1 })
	}
	fail(2, 1)
	c.check()
	if r, _ := c.Get("m"); r.State != StateRunning {
		t.Fatalf("1 error in 10 (at the bound) ended the rollout: %+v %+v", r, r.Evidence)
	}
	fail(2, 2)
	c.check()
	r, _ := c.Get("m")
	if r.State != StateRolledBack || !strings.Contains(r.Reason, "failed 3 of 12") || c.Route("m", []byte("x")) != 1 {
		t.Fatalf("after 3 errors in 12: %+v %v", r, r.Evidence)
	}
}

// TestGatherPicksSampledRows: a sampled share of a batch is copied out row
// by row, whatever the element type, so the shadow scores only the sample.
func TestGatherPicksSampledRows(t *testing.T) {
	o := &pipeline.Observation{Batched: true, Inputs: map[string]*tensor.Tensor{
		"f": {DType: tensor.Float, Shape: []int64{4, 2}, Data: []float32{0, 1, 10, 11, 20, 21, 30, 31}},
		"b": {DType: tensor.String, Shape: []int64{4}, Data: [][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d")}},
	}, Requests: []pipeline.ObservedRequest{{Row: 0, Rows: 1}, {Row: 1, Rows: 2}, {Row: 3, Rows: 1}}}
	in, whole := gather(o, []pipeline.ObservedRequest{o.Requests[1], o.Requests[2]})
	if whole {
		t.Fatal("gather scored the whole batch")
	}
	if f := in["f"]; fmt.Sprint(f.Shape, f.Data) != "[3 2] [10 11 20 21 30 31]" {
		t.Errorf("float rows %v %v", f.Shape, f.Data)
	}
	if b := in["b"]; fmt.Sprintf("%v %s", b.Shape, b.Data) != "[3] [b c d]" {
		t.Errorf("string rows %v %s", b.Shape, b.Data)
	}
	if in, whole := gather(o, o.Requests); !whole || in["f"] != o.Inputs["f"] {
		t.Error("all requests sampled: the batch itself is scored")
	}
}

// TestShadowModelServerDown: a shadow call the model server answers
// UNAVAILABLE (a sidecar restarting, no endpoint of a fleet answering; here a
// gRPC client of a port nobody listens on) is skipped and counted as
// dropped, not held against the candidate: its error-rate guard does not
// roll the split back.
func TestShadowModelServerDown(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	down, err := tfserving.Dial(tfserving.DefaultConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { down.Close() })
	cfg := DefaultConfig()
	cfg.CheckInterval = time.Hour
	c, err := New(cfg, testutil.Logger(t), e.st, down, e.versions, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	if _, err := c.Start(context.Background(), Spec{Model: "m", Stable: 1, Candidate: 2, Percent: 50,
		Guards: Guards{MaxErrorRate: 0.1, MinRequests: 10}}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		e.batch(t, c, 1, 10*i, 10, func(int) float32 { return 1 })
	}
	testutil.Eventually(t, time.Minute, func() error {
		if rep, err := c.Report("m"); err != nil || rep.Dropped != 50 || rep.Queue != 0 {
			return fmt.Errorf("report %+v %v", rep, err)
		}
		return nil
	})
	c.check()
	r, _ := c.Get("m")
	if r.State != StateRunning {
		t.Fatalf("an unavailable model server rolled the candidate back: %+v %+v", r, r.Evidence)
	}
	if rep, _ := c.Report("m"); rep.Compared != 0 || rep.Candidate.Errors != 0 {
		t.Errorf("report %+v: nothing compared, no candidate error", rep)
	}
}

// The shadow's budget: unlimited while the pipeline keeps up; while it has a
// backlog, scoring stops once share × elapsed time is spent and resumes as the
// bucket refills.
func TestShadowBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := &shadowBudget{share: 0.2}
	idle := t0.UnixNano() // busyUntil in the past: not busy
	for i := range 100 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if !b.take(now, idle) {
			t.Fatalf("job %d skipped while the pipeline keeps up", i)
		}
		b.spent(time.Millisecond) // busier than the share: no matter
	}
	// A backlog: jobs of 10 ms each, one every 10 ms, for 10 s.
	busy := t0.Add(time.Hour).UnixNano()
	scored := 0
	for i := range 1000 {
		now := t0.Add(time.Second + time.Duration(i)*10*time.Millisecond)
		if b.take(now, busy) {
			scored++
			b.spent(10 * time.Millisecond)
		}
	}
	// 10 s at a share of 0.2 is 2 s of scoring, 200 jobs, give or take the
	// bucket's content at the start (at most 0.2 s, 20 jobs) and one job.
	if scored < 180 || scored > 221 {
		t.Fatalf("scored %d of 1000 jobs while busy, want about 200", scored)
	}
	// A long busy job overdraws the bucket; the debt is bounded by 1 s × share.
	b = &shadowBudget{share: 0.2}
	b.take(t0, busy)
	b.spent(time.Minute)
	if b.take(t0.Add(500*time.Millisecond), busy) {
		t.Fatal("scored with an overdrawn bucket")
	}
	if !b.take(t0.Add(1100*time.Millisecond), busy) {
		t.Fatal("the debt of one long job lasted more than a second")
	}
}

// The pinned version and a running rollout's two versions are held: the
// model server keeps them loaded when latest:2 alone would unload them as
// newer versions arrive, its status says why, and they go when the hold
// ends.
func TestHoldsKeepVersionsLoaded(t *testing.T) {
	e := newEnv(t)
	c, _ := e.controller(t, DefaultConfig())
	c.SetHolder(func(h Holds) { e.srv.SetHolds(h) })
	run(t, c)
	ctx := context.Background()
	upload := func(v int64) {
		t.Helper()
		if got, err := e.srv.UploadVersion("m", v, testmodels.Feature(0, true)); err != nil || got != v {
			t.Fatalf("upload %d: %d %v", v, got, err)
		}
	}
	held := func(want map[int64]string) {
		t.Helper()
		testutil.Eventually(t, time.Minute, func() error {
			avail, _ := e.versions(ctx, "m")
			got := map[int64]string{}
			for _, m := range e.srv.Models() {
				for _, v := range m.Versions {
					if m.Name == "m" && v.Held != "" {
						got[v.Version] = v.Held
					}
				}
			}
			for v, why := range want {
				if got[v] != why || !slices.Contains(avail, v) {
					return fmt.Errorf("available %v, held %v; want %v held and available", avail, got, want)
				}
			}
			if len(got) != len(want) {
				return fmt.Errorf("held %v, want %v", got, want)
			}
			return nil
		})
	}

	if err := c.Pin(ctx, "m", 1); err != nil {
		t.Fatal(err)
	}
	upload(3)
	held(map[int64]string{1: "pinned"})
	r, err := c.Start(ctx, Spec{Model: "m", Candidate: 2})
	if err != nil {
		t.Fatal(err)
	}
	upload(4)
	upload(5)
	held(map[int64]string{1: "pinned; stable of rollout " + r.ID, 2: "candidate of rollout " + r.ID})
	if avail, _ := e.versions(ctx, "m"); !slices.Equal(avail, []int64{5, 4, 2, 1}) {
		t.Fatalf("available %v, want the policy's 5 and 4 and the held 2 and 1", avail)
	}
	if _, err := c.Abort(ctx, "m", "test"); err != nil {
		t.Fatal(err)
	}
	held(map[int64]string{1: "pinned"})
	testutil.Eventually(t, time.Minute, func() error {
		if avail, _ := e.versions(ctx, "m"); !slices.Equal(avail, []int64{5, 4, 1}) {
			return fmt.Errorf("available %v, want [5 4 1]: version 2 no longer held", avail)
		}
		return nil
	})
}
