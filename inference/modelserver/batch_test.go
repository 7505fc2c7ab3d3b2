package modelserver

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// TestBatchingMergesConcurrentCalls sends demo requests of 1-3 rows from many
// goroutines through the batcher (padding to allowed sizes) and checks every
// answer against an unbatched run of the same rows.
func TestBatchingMergesConcurrentCalls(t *testing.T) {
	cfg := testConfig(demoRepo(t))
	cfg.Batching = &tfserving.BatchingConfig{MaxBatchSize: 16, BatchTimeout: 2 * time.Millisecond, MaxEnqueuedBatches: 1000,
		NumBatchThreads: 2, AllowedBatchSizes: []int64{4, 16}}
	s := startServer(t, cfg)
	ref, err := loadONNX(demo.ONNX, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	l := s.InProcess()
	const workers, calls = 16, 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := demo.NewGenerator(int64(w))
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			<-start
			for range calls {
				rows := 1 + rng.IntN(3)
				var x []float32
				for range rows {
					r, _ := gen.Reading()
					x = append(x, r...)
				}
				in := map[string]*tensor.Tensor{"input": tensor.FromFloat32(x, int64(rows), 16)}
				res, err := l.Predict(context.Background(), model.Spec{Name: "demo"}, in)
				if err != nil {
					t.Error(err)
					return
				}
				want, err := ref.eng.Run(in, nil)
				if err != nil {
					t.Error(err)
					return
				}
				got := res.Outputs["output"]
				if got.Shape[0] != int64(rows) {
					t.Errorf("got %d rows for %d", got.Shape[0], rows)
					return
				}
				// Merged batches have other row counts than the call, and the
				// runtime picks its GEMM kernel by rows: equal within 1e-5.
				if err := near(got.Float32s(), want["output"].Float32s(), 1e-5); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	var runs int64
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	for _, vs := range s.m.models["demo"].versions {
		if vs.serv != nil {
			runs = vs.serv.batch.runs.Load()
		}
	}
	t.Logf("%d calls ran in %d model runs", workers*calls, runs)
	if runs >= workers*calls {
		t.Fatalf("no call was merged: %d runs for %d calls", runs, workers*calls)
	}
}

// blockingEngine holds every run until released, so a test can fill the queue.
type blockingEngine struct {
	started chan struct{}
	release chan struct{}
}

func (e *blockingEngine) Run(in map[string]*tensor.Tensor, _ []string) (map[string]*tensor.Tensor, error) {
	e.started <- struct{}{}
	<-e.release
	return map[string]*tensor.Tensor{"y": in["x"]}, nil
}

func TestBatchQueueFullIsUnavailable(t *testing.T) {
	eng := &blockingEngine{started: make(chan struct{}, 10), release: make(chan struct{})}
	s := &servable{name: "f", version: 1, eng: eng, outNames: []string{"y"}}
	b := newBatcher(s, tfserving.BatchingConfig{MaxBatchSize: 2, BatchTimeout: time.Hour, MaxEnqueuedBatches: 1, NumBatchThreads: 1})
	x := func() map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{1, 2}, 2, 1)}
	}
	results := make(chan error, 3)
	submit := func() {
		_, err := b.submit(context.Background(), x(), nil)
		results <- err
	}
	go submit() // fills a batch: runs at once and blocks in the engine
	<-eng.started
	go submit() // the one batch allowed to wait
	testutil.WaitFor(t, 20*time.Second, "a queued batch", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.queue) == 1
	})
	_, err := b.submit(context.Background(), x(), nil)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "queue") {
		t.Fatalf("full queue: %v", err)
	}
	close(eng.release)
	for range 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	// stop drains and later calls run unbatched.
	b.stop()
	go func() { <-eng.started }()
	if _, err := b.submit(context.Background(), x(), nil); err != nil {
		t.Fatalf("after stop: %v", err)
	}
}

// Requests whose inputs cannot be stacked (different trailing dims) share a
// batch without failing each other.
func TestBatchingKeepsIncompatibleShapesApart(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, identityModel(t, vi{"x", onnxFloat, []int64{-1, -1}}))
	cfg := testConfig(tfserving.ModelConfig{Name: "id", BasePath: base})
	cfg.Batching = &tfserving.BatchingConfig{MaxBatchSize: 8, BatchTimeout: 20 * time.Millisecond, NumBatchThreads: 1}
	s := startServer(t, cfg)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cols := int64(2 + i%2)
			x := make([]float32, cols)
			for j := range x {
				x[j] = float32(i*10 + j)
			}
			res, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "id"},
				map[string]*tensor.Tensor{"x": tensor.FromFloat32(x, 1, cols)})
			if err != nil {
				t.Error(err)
				return
			}
			if err := near(res.Outputs["x_out"].Float32s(), x, 0); err != nil {
				t.Errorf("request %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
}

func TestBatchingConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		b   tfserving.BatchingConfig
		msg string
	}{
		{tfserving.BatchingConfig{MaxBatchSize: 8, AllowedBatchSizes: []int64{4}}, "must end at the maximum batch size"},
		{tfserving.BatchingConfig{MaxBatchSize: 8, AllowedBatchSizes: []int64{4, 2, 8}}, "increasing"},
		{tfserving.BatchingConfig{MaxBatchSize: -1}, "MaxBatchSize"},
		{tfserving.BatchingConfig{NumBatchThreads: -1}, "NumBatchThreads"},
	} {
		cfg := testConfig()
		cfg.Batching = &tc.b
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v", tc.b, err)
		}
	}
}

// A call waiting in the batch queue gives up at its deadline: gRPC answers
// DEADLINE_EXCEEDED, REST (RESTTimeout) 504.
func TestDeadlineWhileQueued(t *testing.T) {
	cfg := testConfig(demoRepo(t))
	cfg.Batching = &tfserving.BatchingConfig{MaxBatchSize: 1000, BatchTimeout: time.Hour, NumBatchThreads: 1}
	cfg.RESTTimeout = 100 * time.Millisecond
	s := startServer(t, cfg)
	c := dial(t, s.GRPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.pred.Predict(ctx, &servingpb.PredictRequest{ModelSpec: specFor("demo"),
		Inputs: map[string]*tfpb.TensorProto{"input": floatProto([]int64{1, 16}, make([]float32, 16), false)}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("gRPC: %v", err)
	}
	row := `[` + strings.TrimSuffix(strings.Repeat("0,", 16), ",") + `]`
	code, body, _ := httpDo(t, "POST", "http://"+s.RESTAddr()+"/v1/models/demo:predict", `{"instances": [`+row+`]}`)
	if code != 504 {
		t.Fatalf("REST: %d %s", code, body)
	}
}
