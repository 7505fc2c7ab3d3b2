package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/internal/testutil"
)

// demoRequests returns n short-form requests for the demo model, as the
// bench command and --demo mode send them.
func demoRequests(n int) [][]byte {
	gen := demo.NewGenerator(1)
	out := make([][]byte, n)
	for i := range out {
		x, _ := gen.Reading()
		out[i] = []byte(fmt.Sprintf(`{"request_id":"sensor-7-%d","features":%s}`, i, featuresJSON(x)))
	}
	return out
}

// nullPredictor answers the demo signature with zeros: it isolates the
// pipeline's own cost from the model's.
type nullPredictor struct{ md *model.Metadata }

func newNullPredictor(t testing.TB, real pipeline.Predictor) *nullPredictor {
	md, err := real.Metadata(context.Background(), model.Spec{Name: demo.Name})
	if err != nil {
		t.Fatal(err)
	}
	return &nullPredictor{md: md}
}

func (p *nullPredictor) Metadata(context.Context, model.Spec) (*model.Metadata, error) {
	return p.md, nil
}

func (p *nullPredictor) Predict(_ context.Context, _ model.Spec, in map[string]*tensor.Tensor) (*model.Result, error) {
	n := in[demo.InputName].Shape[0]
	return &model.Result{Version: 1, Outputs: map[string]*tensor.Tensor{
		demo.OutputName: {DType: tensor.Float, Shape: []int64{n, 1}, Data: make([]float32, n)}}}, nil
}

// BenchmarkHotPath: decode → batch → predict → encode, without the broker,
// for the demo model (real, through the embedded model server in process)
// and for a model that costs nothing (the pipeline's own share).
func BenchmarkHotPath(b *testing.B) {
	pred := newTestPredictor(b)
	null := newNullPredictor(b, pred)
	values := demoRequests(1024)
	for _, m := range []struct {
		name string
		pred pipeline.Predictor
	}{{"demo", pred.demo}, {"null", null}} {
		for _, size := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("model=%s/batch=%d", m.name, size), func(b *testing.B) {
				h, err := pipeline.NewHotPath(m.pred, size)
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := h.Run(ctx, values); err != nil {
						b.Fatal(err)
					}
				}
				reqs := float64(b.N * len(values))
				b.ReportMetric(b.Elapsed().Seconds()*1e9/reqs, "ns/req")
				b.ReportMetric(reqs/b.Elapsed().Seconds(), "req/s")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkDecode compares the request decoder with the standard library
// and with encoding/json/v2's implementation (go-json-experiment) decoding
// the same short-form request into float32s.
func BenchmarkDecode(b *testing.B) {
	values := demoRequests(256)
	sig := &model.Signature{
		Inputs:  []model.TensorSpec{{Name: demo.InputName, DType: tensor.Float, Shape: []int64{-1, demo.Channels}}},
		Outputs: []model.TensorSpec{{Name: demo.OutputName, DType: tensor.Float, Shape: []int64{-1, 1}}},
	}
	type req struct {
		RequestID string    `json:"request_id"`
		Model     string    `json:"model"`
		Features  []float32 `json:"features"`
	}
	run := func(b *testing.B, f func(v []byte) error) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := f(values[i%len(values)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	b.Run("scanner", func(b *testing.B) {
		run(b, func(v []byte) error {
			_, _, err := pipeline.DecodeRequest(v, sig, "")
			return err
		})
	})
	b.Run("encoding_json", func(b *testing.B) {
		run(b, func(v []byte) error {
			var r req
			return json.Unmarshal(v, &r)
		})
	})
	b.Run("json_v2", func(b *testing.B) {
		run(b, func(v []byte) error {
			var r req
			return jsonv2.Unmarshal(v, &r)
		})
	})
}

// BenchmarkPipeline measures the whole pipeline through an in-process kfake
// broker: requests produced beforehand, timed until every result is
// acknowledged. The broker, the model and the pipeline share the machine's
// cores, as in the appliance.
func BenchmarkPipeline(b *testing.B) {
	pred := newTestPredictor(b)
	type variant struct {
		delivery string
		wait     time.Duration
	}
	var variants []variant
	for _, wait := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond} {
		variants = append(variants, variant{pipeline.AtLeastOnce, wait})
	}
	variants = append(variants, variant{pipeline.ExactlyOnce, 0})
	for _, v := range variants {
		wait := v.wait
		b.Run(fmt.Sprintf("delivery=%s/max_wait=%s", v.delivery, wait), func(b *testing.B) {
			const n = 50000
			values := demoRequests(n)
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				addrs := newCluster(b)
				prod := testutil.Client(b, addrs, kgo.ProducerLinger(5*time.Millisecond))
				recs := make([]*kgo.Record, n)
				for i, v := range values {
					recs[i] = &kgo.Record{Value: v, Partition: int32(i % nParts)}
				}
				produce(b, prod, recs...)
				cfg := pipeline.DefaultConfig()
				cfg.MaxBatchWait = wait
				cfg.Delivery = v.delivery
				b.StartTimer()
				start := time.Now()
				run := startPipeline(b, cfg, addrs, pred.demo, nil)
				deadline := time.Now().Add(2 * time.Minute)
				for run.p.Status().Results < n {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d results", run.p.Status().Results, n)
					}
					time.Sleep(time.Millisecond)
				}
				total += time.Since(start)
				b.StopTimer()
				run.stop(b)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*n)/total.Seconds(), "req/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkPipelineLatency sends requests open-loop at a fixed rate for a
// few seconds (producer, broker, pipeline, model and the results consumer
// all in this process, sharing the cores) and reports the latency from each
// request's intended send time to its result's arrival at the consumer.
func BenchmarkPipelineLatency(b *testing.B) {
	pred := newTestPredictor(b)
	const dur = 3 * time.Second
	for _, rate := range []int{1000, 20000, 60000, 100000} {
		for _, wait := range []time.Duration{0, 2 * time.Millisecond} {
			b.Run(fmt.Sprintf("rate=%d/max_wait=%s", rate, wait), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					addrs := newCluster(b)
					cfg := pipeline.DefaultConfig()
					cfg.MaxBatchWait = wait
					run := startPipeline(b, cfg, addrs, pred.demo, nil)
					lat := make(chan time.Duration, 1<<20)
					cons := testutil.Client(b, addrs, kgo.ConsumeTopics(resTopic), kgo.FetchMaxWait(50*time.Millisecond))
					ctx, cancel := context.WithCancel(context.Background())
					go func() {
						for ctx.Err() == nil {
							fs := cons.PollFetches(ctx)
							now := time.Now()
							fs.EachRecord(func(r *kgo.Record) {
								h, _ := header(r, "sent")
								ns, _ := strconv.ParseInt(h, 10, 64)
								lat <- now.Sub(time.Unix(0, ns))
							})
						}
					}()
					// Warm up: the group join and first metadata lookups.
					prod := testutil.Client(b, addrs, kgo.ProducerLinger(time.Millisecond))
					produce(b, prod, &kgo.Record{Value: []byte(`{"features":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}`),
						Headers: []kgo.RecordHeader{{Key: "sent", Value: []byte(strconv.FormatInt(time.Now().UnixNano(), 10))}}})
					<-lat
					values := demoRequests(4096)
					b.StartTimer()
					start := time.Now()
					total := int(float64(rate) * dur.Seconds())
					sent := 0
					tick := time.NewTicker(time.Millisecond)
					for sent < total {
						<-tick.C
						due := min(int(float64(rate)*time.Since(start).Seconds()), total)
						for ; sent < due; sent++ {
							at := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
							prod.Produce(ctx, &kgo.Record{Topic: reqTopic, Value: values[sent%len(values)], Timestamp: at,
								Headers: []kgo.RecordHeader{{Key: "sent", Value: []byte(strconv.FormatInt(at.UnixNano(), 10))}}}, nil)
						}
					}
					tick.Stop()
					var ls []time.Duration
					deadline := time.After(60 * time.Second)
				wait:
					for len(ls) < total {
						select {
						case l := <-lat:
							ls = append(ls, l)
						case <-deadline:
							break wait
						}
					}
					elapsed := time.Since(start)
					b.StopTimer()
					cancel()
					run.stop(b)
					slices.Sort(ls)
					q := func(p float64) float64 {
						if len(ls) == 0 {
							return 0
						}
						return float64(ls[min(int(p*float64(len(ls))), len(ls)-1)]) / 1e6
					}
					b.ReportMetric(q(0.5), "p50_ms")
					b.ReportMetric(q(0.99), "p99_ms")
					b.ReportMetric(q(1), "max_ms")
					b.ReportMetric(float64(len(ls))/elapsed.Seconds(), "results/s")
					b.ReportMetric(0, "ns/op")
					b.StartTimer()
				}
			})
		}
	}
}
