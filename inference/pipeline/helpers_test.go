package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

const (
	reqTopic = "inference_requests"
	resTopic = "inference_results"
	dlqTopic = "inference_dlq"
	nParts   = 3
)

// newCluster starts kfake on a random port with the pipeline's topics.
func newCluster(t testing.TB) []string {
	t.Helper()
	return testutil.Cluster(t, nParts, []string{reqTopic, resTopic, dlqTopic}).ListenAddrs()
}

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(store.DefaultConfig(t.TempDir()), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startModelServer runs the embedded model server (in process only, no
// listeners) serving the demo model.
func startModelServer(t testing.TB) *modelserver.Local {
	t.Helper()
	dir := t.TempDir()
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	cfg := modelserver.DefaultConfig()
	cfg.GRPCListen, cfg.RESTListen = "", ""
	cfg.Models = []tfserving.ModelConfig{{Name: demo.Name, BasePath: filepath.Join(dir, demo.Name)}}
	srv, err := modelserver.New(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := srv.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return srv.InProcess()
}

// testPredictor serves the real demo model through the embedded model
// server, and a few small models written here whose answers are easy to
// check and that misbehave on purpose:
//
//	poison   x float32 [-1,4] -> y float32 [-1,1] = row sum; a row with x[0] == 666 fails the whole call (INVALID_ARGUMENT)
//	multi    a float32 [-1,2], b int64 [-1] -> sum float32 [-1] = a0+a1+b, neg int64 [-1] = -b
//	broken   like poison, every call fails with INTERNAL
//	panics   like poison, every call panics
//	gone     like poison, Predict says NOT_FOUND although Metadata knows it
//	precond  like poison, Predict says FAILED_PRECONDITION
//	slow     like poison, each call takes 3 ms (to have work in flight when stopping)
//	wide     like poison, but y has wideCols columns: a result of ~80 KB
//
// While down, every call fails with UNAVAILABLE, as a stopped model server
// does over gRPC. A demo batch holding a row whose first feature is
// stuckMarker hangs until the call's deadline and fails DEADLINE_EXCEEDED, as
// a model stuck on one input does behind gRPC; exhaustMarker fails at once
// with RESOURCE_EXHAUSTED. While hung, every call hangs so.
type testPredictor struct {
	demo  *modelserver.Local
	down  atomic.Bool
	hung  atomic.Bool
	calls atomic.Int64

	mu    sync.Mutex
	extra map[string]bool // models added at run time (replay test)
}

func newTestPredictor(t testing.TB) *testPredictor {
	return &testPredictor{demo: startModelServer(t), extra: map[string]bool{}}
}

var poisonSig = &model.Signature{
	Method:  model.PredictMethod,
	Inputs:  []model.TensorSpec{{Name: "x", DType: tensor.Float, Shape: []int64{-1, 4}}},
	Outputs: []model.TensorSpec{{Name: "y", DType: tensor.Float, Shape: []int64{-1, 1}}},
}

var multiSig = &model.Signature{
	Method: model.PredictMethod,
	Inputs: []model.TensorSpec{
		{Name: "a", DType: tensor.Float, Shape: []int64{-1, 2}},
		{Name: "b", DType: tensor.Int64, Shape: []int64{-1}},
	},
	Outputs: []model.TensorSpec{
		{Name: "sum", DType: tensor.Float, Shape: []int64{-1}},
		{Name: "neg", DType: tensor.Int64, Shape: []int64{-1}},
	},
}

func (p *testPredictor) known(name string) bool {
	switch name {
	case "poison", "multi", "broken", "panics", "gone", "precond", "slow", "wide":
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.extra[name]
}

func (p *testPredictor) add(name string) {
	p.mu.Lock()
	p.extra[name] = true
	p.mu.Unlock()
}

const (
	stuckMarker   = 999
	exhaustMarker = 888
)

var errDown = status.Error(codes.Unavailable, "connection refused (test model server down)")

func (p *testPredictor) Metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error) {
	if p.down.Load() {
		return nil, errDown
	}
	if spec.Name == demo.Name {
		return p.demo.Metadata(ctx, spec)
	}
	if !p.known(spec.Name) {
		return nil, status.Errorf(codes.NotFound, "Servable not found for request: Latest(%s)", spec.Name)
	}
	sig := poisonSig
	if spec.Name == "multi" {
		sig = multiSig
	}
	return &model.Metadata{Name: spec.Name, Version: 7, Signatures: map[string]*model.Signature{model.DefaultSignature: sig}}, nil
}

func (p *testPredictor) Predict(ctx context.Context, spec model.Spec, in map[string]*tensor.Tensor) (*model.Result, error) {
	p.calls.Add(1)
	if p.down.Load() {
		return nil, errDown
	}
	if p.hung.Load() {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	switch spec.Name {
	case demo.Name:
		if x := in[demo.InputName]; x != nil && x.DType == tensor.Float {
			xs := x.Float32s()
			for i := 0; i+demo.Channels <= len(xs); i += demo.Channels {
				switch xs[i] {
				case stuckMarker:
					<-ctx.Done()
					return nil, status.FromContextError(ctx.Err()).Err()
				case exhaustMarker:
					return nil, status.Error(codes.ResourceExhausted, "OOM when allocating tensor (test)")
				}
			}
		}
		return p.demo.Predict(ctx, spec, in)
	case "multi":
		a, b := in["a"], in["b"]
		if a == nil || b == nil {
			return nil, status.Error(codes.InvalidArgument, "missing input")
		}
		n := b.Shape[0]
		af, bi := a.Float32s(), b.Data.([]int64)
		sum, neg := make([]float32, n), make([]int64, n)
		for i := range n {
			sum[i] = af[2*i] + af[2*i+1] + float32(bi[i])
			neg[i] = -bi[i]
		}
		return &model.Result{Version: 7, Outputs: map[string]*tensor.Tensor{
			"sum": {DType: tensor.Float, Shape: []int64{n}, Data: sum},
			"neg": {DType: tensor.Int64, Shape: []int64{n}, Data: neg},
		}}, nil
	case "broken":
		return nil, status.Error(codes.Internal, "kernel exploded")
	case "panics":
		panic("model bug")
	case "gone":
		return nil, status.Error(codes.NotFound, "version unloaded")
	case "precond":
		return nil, status.Error(codes.FailedPrecondition, "not ready for this")
	case "slow":
		select {
		case <-time.After(3 * time.Millisecond):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if !p.known(spec.Name) {
		return nil, status.Errorf(codes.NotFound, "Servable not found for request: Latest(%s)", spec.Name)
	}
	x := in["x"]
	if x == nil || len(x.Shape) != 2 || x.Shape[1] != 4 {
		return nil, status.Error(codes.InvalidArgument, "bad x")
	}
	xf := x.Float32s()
	n := x.Shape[0]
	y := make([]float32, n)
	for i := range n {
		if xf[4*i] == 666 {
			return nil, status.Error(codes.InvalidArgument, "row with 666")
		}
		y[i] = xf[4*i] + xf[4*i+1] + xf[4*i+2] + xf[4*i+3]
	}
	if spec.Name == "wide" {
		w := make([]float32, 0, n*wideCols)
		for i := range n {
			for range wideCols {
				w = append(w, y[i])
			}
		}
		return &model.Result{Version: 7, Outputs: map[string]*tensor.Tensor{"y": {DType: tensor.Float, Shape: []int64{n, wideCols}, Data: w}}}, nil
	}
	return &model.Result{Version: 7, Outputs: map[string]*tensor.Tensor{"y": {DType: tensor.Float, Shape: []int64{n, 1}, Data: y}}}, nil
}

const wideCols = 40000

// pipelineRun is a running pipeline and how to stop it.
type pipelineRun struct {
	p      *pipeline.Pipeline
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
}

func (r *pipelineRun) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("Run: %v", r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("pipeline did not stop")
	}
}

func testConfig() pipeline.Config {
	cfg := pipeline.DefaultConfig()
	cfg.RetryBackoff, cfg.RetryBackoffMax, cfg.RetryAttempts = 5*time.Millisecond, 20*time.Millisecond, 3
	cfg.ProbeInterval = 20 * time.Millisecond
	cfg.ShutdownTimeout = 20 * time.Second
	return cfg
}

func startPipeline(t testing.TB, cfg pipeline.Config, addrs []string, pred pipeline.Predictor, st *store.Store, opts ...kgo.Opt) *pipelineRun {
	t.Helper()
	return startPipelineReg(t, cfg, addrs, pred, st, nil, opts...)
}

// startPipelineReg is startPipeline with the pipeline's metrics on reg.
func startPipelineReg(t testing.TB, cfg pipeline.Config, addrs []string, pred pipeline.Predictor, st *store.Store, reg prometheus.Registerer, opts ...kgo.Opt) *pipelineRun {
	t.Helper()
	p, err := pipeline.New(cfg, testutil.Logger(t), append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...), pred, st, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &pipelineRun{p: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = p.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(60 * time.Second):
		}
	})
	return r
}

// collector consumes a topic from the start into memory.
type collector struct {
	mu   sync.Mutex
	recs []*kgo.Record
}

func collect(t testing.TB, addrs []string, topic string, opts ...kgo.Opt) *collector {
	t.Helper()
	cl := testutil.Client(t, addrs, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			c.mu.Lock()
			c.recs = append(c.recs, fs.Records()...)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c
}

func (c *collector) records() []*kgo.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*kgo.Record(nil), c.recs...)
}

func (c *collector) waitN(t testing.TB, n int, total time.Duration) []*kgo.Record {
	t.Helper()
	testutil.Eventually(t, total, func() error {
		if got := len(c.records()); got < n {
			return fmt.Errorf("%d of %d records", got, n)
		}
		return nil
	})
	return c.records()
}

type result struct {
	RequestID    string          `json:"request_id"`
	Model        string          `json:"model"`
	ModelVersion int64           `json:"model_version"`
	Prediction   json.RawMessage `json:"prediction"`
	Outputs      map[string]json.RawMessage
	Timestamp    time.Time `json:"timestamp"`
	LatencyMS    float64   `json:"latency_ms"`
}

func decodeResult(t testing.TB, r *kgo.Record) result {
	t.Helper()
	var res result
	if err := json.Unmarshal(r.Value, &res); err != nil {
		t.Fatalf("result %q: %v", r.Value, err)
	}
	return res
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func produce(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range recs {
		if r.Topic == "" {
			r.Topic = reqTopic
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// committed returns the group's committed offsets on the requests topic.
func committed(t testing.TB, addrs []string, group string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(testutil.Client(t, addrs))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	os, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	os.Each(func(o kadm.OffsetResponse) {
		if o.Topic == reqTopic {
			out[o.Partition] = o.At
		}
	})
	return out
}

var errNotYet = errors.New("not yet")
