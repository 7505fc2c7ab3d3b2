package feed

import (
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/store"
)

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(store.DefaultConfig(dir), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// batch is a predicted batch of one score per request.
func batch(name string, scores ...float32) *pipeline.Observation {
	o := &pipeline.Observation{Spec: model.Spec{Name: name}, Version: 1, Batched: true,
		Outputs: map[string]*tensor.Tensor{"output": tensor.FromFloat32(scores, int64(len(scores)), 1)}}
	for i := range scores {
		o.Requests = append(o.Requests, pipeline.ObservedRequest{ID: `"r-` + string(rune('a'+i)) + `"`, Key: []byte("k"),
			Topic: "inference_requests", Offset: int64(i), Row: int64(i), Rows: 1})
	}
	return o
}

func TestCountsAtTheThreshold(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	f, err := New(st)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	f.now = func() time.Time { return clock }

	f.Observe(batch("demo", 0.01, 0.97, 0.5, 0.2))
	f.Observe(&pipeline.Observation{Spec: model.Spec{Name: "demo"}, Err: errors.New("dead-lettered")})
	clock = clock.Add(bucketLen)
	f.Observe(batch("demo", 0.99))
	// A model with two values per request is listed, not scored.
	two := &pipeline.Observation{Spec: model.Spec{Name: "pair"}, Version: 3, Batched: true,
		Outputs:  map[string]*tensor.Tensor{"y": tensor.FromFloat32([]float32{1, 2, 3, 4}, 2, 2)},
		Requests: []pipeline.ObservedRequest{{ID: "7", Row: 0, Rows: 1}, {ID: "8", Row: 1, Rows: 1}}}
	f.Observe(two)

	v := f.View("", 10)
	if len(v.Models) != 2 || v.Models[0].Model != "demo" || v.Models[1].Model != "pair" {
		t.Fatalf("models %+v", v.Models)
	}
	d := v.Models[0]
	// 0.5 is at the default threshold: an anomaly.
	if d.Threshold != DefaultThreshold || d.Scored != 5 || d.Anomalies != 3 || len(d.Buckets) != 2 ||
		d.Buckets[0].Normal != 2 || d.Buckets[0].Anomalous != 2 || d.Buckets[1].Anomalous != 1 {
		t.Fatalf("demo %+v", d)
	}
	if p := v.Models[1]; p.Scored != 0 || p.Other != 2 {
		t.Fatalf("pair %+v", p)
	}
	if len(v.Recent) != 7 || v.Recent[0].Model != "pair" || v.Recent[0].RequestID != "8" || len(v.Recent[0].Values) != 2 || v.Recent[0].Values[1] != 4 {
		t.Fatalf("newest %+v", v.Recent[0])
	}
	if r := v.Recent[2]; r.RequestID != "r-a" || r.Score == nil || *r.Score < 0.98 || !r.Anomaly {
		t.Fatalf("third newest %+v", r)
	}
	if got := f.View("demo", 2).Recent; len(got) != 2 || got[0].Model != "demo" || got[1].RequestID != "r-d" {
		t.Fatalf("demo's two newest %+v", got)
	}

	// A new threshold starts the model's counts afresh and outlives a restart.
	if err := f.SetThreshold("demo", 0.98); err != nil {
		t.Fatal(err)
	}
	f.Observe(batch("demo", 0.97, 0.99))
	if d := f.View("", 0).Models[0]; d.Threshold != 0.98 || d.Scored != 2 || d.Anomalies != 1 || !d.Since.Equal(clock) {
		t.Fatalf("after the new threshold %+v", d)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	defer st.Close()
	f, err = New(st)
	if err != nil {
		t.Fatal(err)
	}
	if th := f.Threshold("demo"); th != 0.98 {
		t.Fatalf("threshold after a restart %v", th)
	}
	if th := f.Threshold("other"); th != DefaultThreshold {
		t.Fatalf("unset threshold %v", th)
	}
}

func TestRecentKeepsTheLast(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	f, err := New(st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recentLen + 5 {
		o := batch("demo", 0.1)
		o.Requests[0].Offset = int64(i)
		f.Observe(o)
	}
	v := f.View("", 1000)
	if len(v.Recent) != recentLen || v.Recent[0].Offset != recentLen+4 || v.Recent[recentLen-1].Offset != 5 {
		t.Fatalf("%d recent, newest offset %d, oldest %d", len(v.Recent), v.Recent[0].Offset, v.Recent[len(v.Recent)-1].Offset)
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1)} {
		if err := f.SetThreshold("demo", bad); err == nil {
			t.Errorf("threshold %v accepted", bad)
		}
	}
}
