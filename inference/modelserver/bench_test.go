package modelserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

var benchBatches = []int{1, 32, 256}

func demoBatch(rows int) []float32 {
	g := demo.NewGenerator(1)
	x := make([]float32, 0, rows*demo.Channels)
	for range rows {
		r, _ := g.Reading()
		x = append(x, r...)
	}
	return x
}

func reportPredictions(b *testing.B, rows int, start time.Time) {
	el := time.Since(start)
	b.ReportMetric(float64(rows)*float64(b.N)/el.Seconds(), "predictions/s")
	b.ReportMetric(float64(el.Microseconds())/float64(b.N), "µs/call")
}

func benchServer(b *testing.B, batching *tfserving.BatchingConfig) *Server {
	cfg := testConfig(demoRepo(b))
	cfg.Batching = batching
	return startServer(b, cfg)
}

// BenchmarkPredictInProcess is the pipeline's path: Local.Predict, no encoding.
func BenchmarkPredictInProcess(b *testing.B) {
	s := benchServer(b, nil)
	l := s.InProcess()
	for _, rows := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", rows), func(b *testing.B) {
			in := map[string]*tensor.Tensor{demo.InputName: tensor.FromFloat32(demoBatch(rows), int64(rows), demo.Channels)}
			spec := model.Spec{Name: demo.Name}
			ctx := context.Background()
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if _, err := l.Predict(ctx, spec, in); err != nil {
					b.Fatal(err)
				}
			}
			reportPredictions(b, rows, start)
		})
	}
}

// BenchmarkPredictInProcessParallel calls from GOMAXPROCS goroutines at once.
func BenchmarkPredictInProcessParallel(b *testing.B) {
	s := benchServer(b, nil)
	l := s.InProcess()
	for _, rows := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", rows), func(b *testing.B) {
			in := map[string]*tensor.Tensor{demo.InputName: tensor.FromFloat32(demoBatch(rows), int64(rows), demo.Channels)}
			spec := model.Spec{Name: demo.Name}
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Predict(context.Background(), spec, in); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportPredictions(b, rows, start)
		})
	}
}

// BenchmarkPredictGRPC is a TF Serving client's path over loopback gRPC,
// typed fields in the request (what most clients send).
func BenchmarkPredictGRPC(b *testing.B) {
	s := benchServer(b, nil)
	c := dial(b, s.GRPCAddr())
	for _, rows := range benchBatches {
		for _, content := range []bool{false, true} {
			name := fmt.Sprintf("batch=%d", rows)
			if content {
				name += "/tensor_content"
			}
			b.Run(name, func(b *testing.B) {
				req := &servingpb.PredictRequest{ModelSpec: specFor(demo.Name), Inputs: map[string]*tfpb.TensorProto{
					demo.InputName: floatProto([]int64{int64(rows), demo.Channels}, demoBatch(rows), content)}}
				ctx := context.Background()
				b.ReportAllocs()
				start := time.Now()
				for b.Loop() {
					if _, err := c.pred.Predict(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
				reportPredictions(b, rows, start)
			})
		}
	}
}

// BenchmarkPredictGRPCParallel keeps GOMAXPROCS×4 calls in flight.
func BenchmarkPredictGRPCParallel(b *testing.B) {
	s := benchServer(b, nil)
	c := dial(b, s.GRPCAddr())
	for _, rows := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", rows), func(b *testing.B) {
			req := &servingpb.PredictRequest{ModelSpec: specFor(demo.Name), Inputs: map[string]*tfpb.TensorProto{
				demo.InputName: floatProto([]int64{int64(rows), demo.Channels}, demoBatch(rows), true)}}
			b.SetParallelism(4)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.pred.Predict(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportPredictions(b, rows, start)
		})
	}
}

// BenchmarkPredictBatchingInProcess: many single-row callers merged by the
// server-side batcher (max 256 rows, 200 µs timeout).
func BenchmarkPredictBatchingInProcess(b *testing.B) {
	s := benchServer(b, &tfserving.BatchingConfig{MaxBatchSize: 256, BatchTimeout: 200 * time.Microsecond, MaxEnqueuedBatches: 1000, NumBatchThreads: 2})
	l := s.InProcess()
	in := map[string]*tensor.Tensor{demo.InputName: tensor.FromFloat32(demoBatch(1), 1, demo.Channels)}
	spec := model.Spec{Name: demo.Name}
	b.SetParallelism(64)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Predict(context.Background(), spec, in); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportPredictions(b, 1, start)
}
