package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/internal/field"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

func featuresJSON(x []float32) string {
	parts := make([]string, len(x))
	for i, v := range x {
		parts[i] = strconv.FormatFloat(float64(v), 'g', -1, 32)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// demoScore runs the demo model on one reading, outside the pipeline.
func demoScore(t testing.TB, pred *testPredictor, x []float32) float32 {
	t.Helper()
	res, err := pred.demo.Predict(context.Background(), model.Spec{Name: demo.Name},
		map[string]*tensor.Tensor{demo.InputName: tensor.FromFloat32(x, 1, demo.Channels)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Outputs[demo.OutputName].Float32s()[0]
}

func seqOf(t testing.TB, id string) int {
	t.Helper()
	n, err := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
	if err != nil {
		t.Fatalf("request id %q", id)
	}
	return n
}

// TestResults sends the demo model readings in both request forms, keyed and
// unkeyed, and checks every result: value against the model run directly,
// key and headers copied, one result per request, and per-key and
// per-partition order.
func TestResults(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	st := openStore(t)
	results := collect(t, addrs, resTopic)
	run := startPipeline(t, testConfig(), addrs, pred, st)

	prod := testutil.Client(t, addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	gen := demo.NewGenerator(1)
	const n = 600
	want := map[string]float32{}
	var recs []*kgo.Record
	for i := range n {
		x, _ := gen.Reading()
		id := fmt.Sprintf("r-%d", i)
		want[id] = demoScore(t, pred, x)
		var value string
		switch i % 4 {
		case 0, 1:
			value = fmt.Sprintf(`{"request_id":%q,"features":%s}`, id, featuresJSON(x))
		case 2:
			value = fmt.Sprintf(`{"request_id":%q,"model":"demo","instances":[%s]}`, id, featuresJSON(x))
		case 3:
			value = fmt.Sprintf(`{"request_id":%q,"inputs":{"input":[%s]}}`, id, featuresJSON(x))
		}
		r := &kgo.Record{Value: []byte(value), Partition: int32(i % nParts),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-" + id)}}}
		if i%5 != 0 { // every fifth request has no key
			r.Key = []byte(fmt.Sprintf("sensor-%d", i%7))
			r.Partition = int32(i%7) % nParts
		}
		recs = append(recs, r)
	}
	produce(t, prod, recs...)

	got := results.waitN(t, n, 60*time.Second)
	if len(got) != n {
		t.Fatalf("%d results for %d requests", len(got), n)
	}
	byID := map[string]bool{}
	lastByKey := map[string]int{}
	lastByPart := map[int32]int{}
	for _, r := range got {
		res := decodeResult(t, r)
		if byID[res.RequestID] {
			t.Fatalf("duplicate result for %s", res.RequestID)
		}
		byID[res.RequestID] = true
		i := seqOf(t, res.RequestID)
		if res.Model != demo.Name || res.ModelVersion != 1 {
			t.Errorf("%s: model %q version %d", res.RequestID, res.Model, res.ModelVersion)
		}
		var score float32
		switch i % 4 {
		case 0, 1: // short form: this request's row
			var row []float32
			mustJSON(t, res.Prediction, &row)
			score = row[0]
		default: // full forms keep their batch dimension
			var rows [][]float32
			mustJSON(t, res.Prediction, &rows)
			if len(rows) != 1 {
				t.Fatalf("%s: prediction %s", res.RequestID, res.Prediction)
			}
			score = rows[0][0]
		}
		if w := want[res.RequestID]; math.Abs(float64(score-w)) > 1e-6 {
			t.Errorf("%s: score %v, model says %v", res.RequestID, score, w)
		}
		if h, _ := header(r, "trace"); h != "t-"+res.RequestID {
			t.Errorf("%s: trace header %q", res.RequestID, h)
		}
		if res.Timestamp.IsZero() || res.LatencyMS < 0 {
			t.Errorf("%s: timestamp %v latency %v", res.RequestID, res.Timestamp, res.LatencyMS)
		}
		if i%5 != 0 {
			if wantKey := fmt.Sprintf("sensor-%d", i%7); string(r.Key) != wantKey {
				t.Errorf("%s: key %q, want %q", res.RequestID, r.Key, wantKey)
			}
			if last, ok := lastByKey[string(r.Key)]; ok && last > i {
				t.Errorf("key %s: result of %d after %d", r.Key, i, last)
			}
			lastByKey[string(r.Key)] = i
		} else {
			if r.Key != nil {
				t.Errorf("%s: key %q, want none", res.RequestID, r.Key)
			}
			if r.Partition != int32(i%nParts) {
				t.Errorf("%s: unkeyed result in partition %d, request was in %d", res.RequestID, r.Partition, i%nParts)
			}
			if last, ok := lastByPart[r.Partition]; ok && last > i {
				t.Errorf("partition %d: result of %d after %d", r.Partition, i, last)
			}
			lastByPart[r.Partition] = i
		}
	}
	s := run.p.Status()
	if s.Results != n || s.Consumed != n || s.State != pipeline.StateRunning || s.Circuit != "closed" {
		t.Errorf("status %+v", s)
	}
	if c, _ := st.Count(store.Filter{}); c != 0 {
		t.Errorf("%d DLQ records in the store", c)
	}
}

func mustJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

// TestMultiInputModel sends a model with two inputs and two outputs both
// full forms, with several rows per request, batched with each other.
func TestMultiInputModel(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	results := collect(t, addrs, resTopic)
	startPipeline(t, testConfig(), addrs, pred, openStore(t))
	prod := testutil.Client(t, addrs)
	produce(t, prod,
		&kgo.Record{Key: []byte("k"), Value: []byte(`{"request_id":"m-1","model":"multi","instances":[{"a":[1,2],"b":3},{"a":[0.5,0.25],"b":-1}]}`)},
		&kgo.Record{Key: []byte("k"), Value: []byte(`{"request_id":"m-2","model":"multi","inputs":{"b":[10],"a":[[1,1]]}}`)},
		&kgo.Record{Key: []byte("k"), Headers: []kgo.RecordHeader{{Key: "model", Value: []byte("multi")}},
			Value: []byte(`{"request_id":"m-3","instances":[{"b":5,"a":[0,0]}]}`)},
	)
	got := results.waitN(t, 3, 30*time.Second)
	want := map[string]string{
		"m-1": `{"neg":[-3,1],"sum":[6,-0.25]}`,
		"m-2": `{"neg":[-10],"sum":[12]}`,
		"m-3": `{"neg":[-5],"sum":[5]}`,
	}
	for _, r := range got {
		res := decodeResult(t, r)
		b, _ := json.Marshal(res.Outputs)
		if string(b) != want[res.RequestID] || res.Prediction != nil || res.ModelVersion != 7 {
			t.Errorf("%s: %s, want outputs %s", res.RequestID, r.Value, want[res.RequestID])
		}
	}
}

// TestDLQClasses sends a request of every error class among good ones:
// each bad one lands in the DLQ topic and the store with the headers of
// DESIGN.md, its good neighbours (even in the same batch) get results.
func TestDLQClasses(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	st := openStore(t)
	results := collect(t, addrs, resTopic)
	dlq := collect(t, addrs, dlqTopic)
	cfg := testConfig()
	cfg.MaxBatchWait = 50 * time.Millisecond // so the poisoned request shares its batch
	run := startPipeline(t, cfg, addrs, pred, st)

	bad := []struct {
		value, class string
		hdr          []kgo.RecordHeader
	}{
		{`not json`, pipeline.ClassDecode, nil},
		{`{"request_id":"d-2","features":"abc"}`, pipeline.ClassValidation, nil},
		{`{"request_id":"d-3","features":[1,2,3]}`, pipeline.ClassValidation, nil},
		{`{"request_id":"d-4","features":[[1,2],[3]]}`, pipeline.ClassDecode, nil},
		{`{"request_id":"d-5","model":"nope","features":[1]}`, pipeline.ClassValidation, nil},
		{`{"request_id":"d-6","features":[1,2,3,4]}`, pipeline.ClassValidation, []kgo.RecordHeader{{Key: "model", Value: []byte("missing")}}},
		{`{"request_id":"d-7","model":"poison","features":[666,0,0,0]}`, pipeline.ClassModel, nil},
		{`{"request_id":"d-8","model":"broken","features":[1,2,3,4]}`, pipeline.ClassInternal, nil},
		{`{"request_id":"d-9","model":"panics","features":[1,2,3,4]}`, pipeline.ClassInternal, nil},
		{`{"request_id":"d-10","model":"gone","features":[1,2,3,4]}`, pipeline.ClassModel, nil},
		{`{"request_id":"d-11","model":"precond","features":[1,2,3,4]}`, pipeline.ClassModel, nil},
		{`{"request_id":"d-12","model":"multi","instances":[{"a":[1,2]}]}`, pipeline.ClassValidation, nil},
		{`{"request_id":"d-13","features":[1,2,3,4]} trailing`, pipeline.ClassDecode, nil},
	}
	var recs []*kgo.Record
	good := 0
	for i, b := range bad {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("bad-%d", i)), Value: []byte(b.value),
			Headers: append([]kgo.RecordHeader{{Key: "orig", Value: []byte("h")}}, b.hdr...)})
		for j := range 3 { // good neighbours, some for the poisoned model's batch
			good++
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("good-%d", j)),
				Value: []byte(fmt.Sprintf(`{"request_id":"g-%d","model":"poison","features":[%d,1,1,1]}`, good, good))})
		}
	}
	produce(t, testutil.Client(t, addrs), recs...)

	res := results.waitN(t, good, 30*time.Second)
	for _, r := range res {
		out := decodeResult(t, r)
		var row []float32
		mustJSON(t, out.Prediction, &row)
		if want := float32(seqOf(t, out.RequestID) + 3); row[0] != want {
			t.Errorf("%s: %v, want %v", out.RequestID, row, want)
		}
	}
	dl := dlq.waitN(t, len(bad), 30*time.Second)
	if len(dl) != len(bad) {
		t.Fatalf("%d DLQ records, want %d", len(dl), len(bad))
	}
	for _, r := range dl {
		i, _ := strconv.Atoi(strings.TrimPrefix(string(r.Key), "bad-"))
		b := bad[i]
		if string(r.Value) != b.value {
			t.Errorf("DLQ value %q, want %q", r.Value, b.value)
		}
		if h, _ := header(r, "orig"); h != "h" {
			t.Errorf("%s: original header lost", r.Key)
		}
		if c, _ := header(r, pipeline.HeaderErrorClass); c != b.class {
			msg, _ := header(r, pipeline.HeaderErrorMessage)
			t.Errorf("%s (%s): class %q, want %q (%s)", r.Key, b.value, c, b.class, msg)
		}
		for _, k := range []string{pipeline.HeaderErrorMessage, pipeline.HeaderSourceTopic, pipeline.HeaderSourcePartition,
			pipeline.HeaderSourceOffset, pipeline.HeaderAttempts, pipeline.HeaderFailedAt} {
			if v, ok := header(r, k); !ok || v == "" {
				t.Errorf("%s: header %s missing", r.Key, k)
			}
		}
		if v, _ := header(r, pipeline.HeaderSourceTopic); v != reqTopic {
			t.Errorf("source.topic %q", v)
		}
		if v, _ := header(r, pipeline.HeaderFailedAt); v != "" {
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				t.Errorf("failed.at %q: %v", v, err)
			}
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if c, _ := st.Count(store.Filter{}); c != len(bad) {
			return fmt.Errorf("%d records in the store, want %d", c, len(bad))
		}
		return nil
	})
	stored, _, err := st.List(store.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	// Each DLQ record carries the id the store gave it (dlq.id), so the other instances of a
	// group can show it under the same id (docs/scaling.md).
	idOf := map[string]string{}
	for _, r := range dl {
		idOf[string(r.Key)], _ = header(r, pipeline.HeaderDLQID)
	}
	for _, s := range stored {
		i, _ := strconv.Atoi(strings.TrimPrefix(string(s.Key), "bad-"))
		if s.Class != bad[i].class || string(s.Value) != bad[i].value || s.SourceTopic != reqTopic || s.Message == "" || s.FailedAt.IsZero() {
			t.Errorf("stored %+v", s)
		}
		if idOf[string(s.Key)] != s.ID {
			t.Errorf("%s: DLQ record's %s header %q, stored as %s", s.Key, pipeline.HeaderDLQID, idOf[string(s.Key)], s.ID)
		}
		for _, h := range s.Headers {
			if h.Key == pipeline.HeaderDLQID || h.Key == pipeline.HeaderDLQModel {
				t.Errorf("%s: the stored record has header %s", s.Key, h.Key)
			}
		}
	}
	// Read back from the topic (as the other instances of a group do), each is the stored record.
	byID := map[string]*store.Record{}
	for _, s := range stored {
		byID[s.ID] = s
	}
	for _, r := range dl {
		got, truncated, err := pipeline.StoreRecord(r)
		if err != nil || truncated {
			t.Errorf("StoreRecord(%s): %v (truncated %t)", r.Key, err, truncated)
			continue
		}
		want := byID[got.ID]
		if want == nil {
			t.Errorf("StoreRecord(%s): id %s is not in the store", r.Key, got.ID)
			continue
		}
		if got.Class != want.Class || got.Message != want.Message || got.Model != want.Model || got.SourceTopic != want.SourceTopic ||
			got.SourcePartition != want.SourcePartition || got.SourceOffset != want.SourceOffset || got.Attempts != want.Attempts ||
			!got.FailedAt.Equal(want.FailedAt) || len(got.Headers) != len(want.Headers) || string(got.Value) != string(want.Value) {
			t.Errorf("StoreRecord(%s) = %+v, stored %+v", r.Key, got, want)
		}
	}
	// The pipeline keeps going after all that.
	produce(t, testutil.Client(t, addrs), &kgo.Record{Value: []byte(`{"request_id":"after","model":"poison","features":[1,1,1,1]}`)})
	results.waitN(t, good+1, 30*time.Second)
	s := run.p.Status()
	if s.DLQ[pipeline.ClassDecode] != 3 || s.DLQ[pipeline.ClassValidation] != 5 || s.DLQ[pipeline.ClassModel] != 3 || s.DLQ[pipeline.ClassInternal] != 2 {
		t.Errorf("status DLQ counts %v", s.DLQ)
	}
}

// TestModelServerDown stops the model server mid-stream: no request is
// dead-lettered for it, consumption pauses with the circuit open, and when
// the server is back every request gets its result.
func TestModelServerDown(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	results := collect(t, addrs, resTopic)
	dlq := collect(t, addrs, dlqTopic)
	run := startPipeline(t, testConfig(), addrs, pred, openStore(t))
	prod := testutil.Client(t, addrs)

	send := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i % 5)),
				Value: []byte(fmt.Sprintf(`{"request_id":"r-%d","features":[%d,0,0,0],"model":"poison"}`, i, i+1000))})
		}
		produce(t, prod, recs...)
	}
	send(0, 100)
	results.waitN(t, 100, 30*time.Second)

	pred.down.Store(true)
	send(100, 200)
	testutil.Eventually(t, 30*time.Second, func() error {
		if s := run.p.Status(); s.State != pipeline.StateCircuitOpen || s.Circuit != "open" {
			return fmt.Errorf("state %s circuit %s", s.State, s.Circuit)
		}
		return nil
	})
	if run.p.Ready() {
		t.Error("ready with the circuit open")
	}
	send(200, 300) // arrives while paused

	pred.down.Store(false)
	got := results.waitN(t, 300, 60*time.Second)
	ids := map[string]bool{}
	for _, r := range got {
		ids[decodeResult(t, r).RequestID] = true
	}
	for i := range 300 {
		if !ids[fmt.Sprintf("r-%d", i)] {
			t.Errorf("no result for r-%d", i)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if s := run.p.Status(); s.State != pipeline.StateRunning || s.Circuit != "closed" {
			return fmt.Errorf("state %s circuit %s", s.State, s.Circuit)
		}
		return nil
	})
	if n := len(dlq.records()); n != 0 {
		t.Errorf("%d DLQ records for an unavailable model server", n)
	}
}

// TestMetadataDownAtStart: the model server is down before the first
// request, so even decoding (which needs the signature) waits.
func TestMetadataDownAtStart(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	pred.down.Store(true)
	results := collect(t, addrs, resTopic)
	dlq := collect(t, addrs, dlqTopic)
	run := startPipeline(t, testConfig(), addrs, pred, openStore(t))
	produce(t, testutil.Client(t, addrs), &kgo.Record{Value: []byte(`{"request_id":"x-1","features":[1,2,3,4],"model":"poison"}`)})
	testutil.Eventually(t, 30*time.Second, func() error {
		if s := run.p.Status(); s.Circuit != "open" {
			return fmt.Errorf("circuit %s", s.Circuit)
		}
		return nil
	})
	pred.down.Store(false)
	results.waitN(t, 1, 30*time.Second)
	if n := len(dlq.records()); n != 0 {
		t.Errorf("%d DLQ records", n)
	}
}

// TestGracefulDrain stops the pipeline while requests are in flight: every
// request it consumed has a result and its offset committed, and a second
// pipeline finishes the rest without duplicates.
func TestGracefulDrain(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	results := collect(t, addrs, resTopic)
	cfg := testConfig()
	cfg.MaxBatchSize = 8 // with the slow model: seconds of work, most of it in flight when stopping
	run := startPipeline(t, cfg, addrs, pred, openStore(t))
	const n = 3000
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Value: []byte(fmt.Sprintf(`{"request_id":"r-%d","features":[%d,0,0,0],"model":"slow"}`, i, i+1000))})
	}
	produce(t, testutil.Client(t, addrs), recs...)
	results.waitN(t, 1, 30*time.Second)
	before := run.p.Status()
	run.stop(t)

	consumed := run.p.Status().Consumed
	t.Logf("stopped with %d pending of %d consumed; %d consumed in all", before.Pending, before.Consumed, consumed)
	if consumed == n {
		t.Log("the pipeline consumed everything before it stopped: the drain had less to do than intended")
	}
	if s := run.p.Status(); s.State != pipeline.StateStopped || s.Pending != 0 {
		t.Errorf("after drain: %+v", s)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := uint64(len(results.records())); got != consumed {
			have := map[string]bool{}
			for _, r := range results.records() {
				have[decodeResult(t, r).RequestID] = true
			}
			var missing []string
			for i := range n {
				if id := fmt.Sprintf("r-%d", i); !have[id] && len(missing) < 5 {
					missing = append(missing, id)
				}
			}
			return fmt.Errorf("%d results for %d consumed requests (first missing %v)", got, consumed, missing)
		}
		return nil
	})
	var sum int64
	for _, o := range committed(t, addrs, cfg.Group) {
		sum += o
	}
	if uint64(sum) != consumed {
		t.Errorf("committed %d offsets, consumed %d", sum, consumed)
	}

	startPipeline(t, cfg, addrs, pred, openStore(t))
	got := results.waitN(t, n, 60*time.Second)
	seen := map[string]bool{}
	for _, r := range got {
		id := decodeResult(t, r).RequestID
		if seen[id] {
			t.Errorf("duplicate result %s", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct results, want %d", len(seen), n)
	}
}

// TestExactlyOnce runs the exactly-once mode, restarting the pipeline
// mid-stream: a read_committed consumer sees each result once, and the DLQ
// record of a bad request once, in the topic and the store.
func TestExactlyOnce(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	st := openStore(t)
	results := collect(t, addrs, resTopic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	dlq := collect(t, addrs, dlqTopic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	cfg := testConfig()
	cfg.Delivery = pipeline.ExactlyOnce
	cfg.TransactionalID = "infergate-test"
	cfg.MaxBatchSize = 16
	prod := testutil.Client(t, addrs)
	const n = 2000
	send := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			v := fmt.Sprintf(`{"request_id":"r-%d","features":[%d,0,0,0],"model":"slow"}`, i, i+1000)
			if i == 1234 {
				v = `{"request_id":"bad","features":"x"}`
			}
			recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i % 11)), Value: []byte(v)})
		}
		produce(t, prod, recs...)
	}
	send(0, n/2)
	run := startPipeline(t, cfg, addrs, pred, st)
	results.waitN(t, 100, 30*time.Second)
	run.stop(t)

	send(n/2, n)
	run2 := startPipeline(t, cfg, addrs, pred, st)
	results.waitN(t, n-1, 60*time.Second)
	dlq.waitN(t, 1, 30*time.Second)
	run2.stop(t)

	seen := map[string]int{}
	for _, r := range results.records() {
		seen[decodeResult(t, r).RequestID]++
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s: %d results", id, c)
		}
	}
	if len(seen) != n-1 {
		t.Errorf("%d distinct results, want %d", len(seen), n-1)
	}
	if d := len(dlq.records()); d != 1 {
		t.Errorf("%d DLQ records, want 1", d)
	}
	if c, _ := st.Count(store.Filter{}); c != 1 {
		t.Errorf("%d records in the store, want 1", c)
	}
}

// TestPauseResume: an operator pause stops consumption without leaving the
// group; resume picks up where it stopped.
func TestPauseResume(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	results := collect(t, addrs, resTopic)
	run := startPipeline(t, testConfig(), addrs, pred, openStore(t))
	prod := testutil.Client(t, addrs)
	produce(t, prod, &kgo.Record{Value: []byte(`{"request_id":"a","features":[1,1,1,1],"model":"poison"}`)})
	results.waitN(t, 1, 30*time.Second)

	run.p.Pause()
	if s := run.p.Status(); s.State != pipeline.StatePaused || !s.Paused {
		t.Fatalf("status %+v", s)
	}
	if !run.p.Ready() {
		t.Error("a paused pipeline is still ready")
	}
	produce(t, prod, &kgo.Record{Value: []byte(`{"request_id":"b","features":[1,1,1,1],"model":"poison"}`)})
	// Give a fetch time to happen if the pause did not work.
	time.Sleep(700 * time.Millisecond)
	if c := run.p.Status().Consumed; c != 1 {
		t.Fatalf("consumed %d while paused", c)
	}
	run.p.Resume()
	results.waitN(t, 2, 30*time.Second)
}

// TestReplay dead-letters requests for a model that does not exist yet,
// adds the model, replays them from the store, and gets their results.
func TestReplay(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	st := openStore(t)
	results := collect(t, addrs, resTopic)
	startPipeline(t, testConfig(), addrs, pred, st)
	prod := testutil.Client(t, addrs)
	produce(t, prod,
		&kgo.Record{Key: []byte("k1"), Value: []byte(`{"request_id":"late-1","model":"later","features":[1,2,3,4]}`),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("x")}}},
		&kgo.Record{Key: []byte("k2"), Value: []byte(`{"request_id":"late-2","model":"later","features":[5,6,7,8]}`)},
	)
	var recs []*store.Record
	testutil.Eventually(t, 30*time.Second, func() error {
		var err error
		recs, _, err = st.List(store.Filter{Model: "later"})
		if err != nil {
			return err
		}
		if len(recs) != 2 {
			return fmt.Errorf("%d stored", len(recs))
		}
		return nil
	})
	pred.add("later")
	// The "no such model" answer is cached for a second.
	testutil.Eventually(t, 10*time.Second, func() error {
		if err := pipeline.Replay(context.Background(), prod, reqTopic, recs[:1]); err != nil {
			return err
		}
		for _, r := range results.records() {
			if decodeResult(t, r).RequestID == "late-1" {
				return nil
			}
		}
		return errNotYet
	})
	if err := pipeline.Replay(context.Background(), prod, reqTopic, recs[1:]); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		ids := map[string]*kgo.Record{}
		for _, r := range results.records() {
			ids[decodeResult(t, r).RequestID] = r
		}
		r1, r2 := ids["late-1"], ids["late-2"]
		if r1 == nil || r2 == nil {
			return errNotYet
		}
		if of, _ := header(r2, pipeline.HeaderReplayOf); of != recs[1].ID {
			return fmt.Errorf("replay.of %q, want %q", of, recs[1].ID)
		}
		if tr, _ := header(r1, "trace"); tr != "x" {
			return fmt.Errorf("trace header %q", tr)
		}
		for _, h := range r1.Headers {
			if strings.HasPrefix(h.Key, "error.") || strings.HasPrefix(h.Key, "source.") {
				return fmt.Errorf("replayed result has header %s", h.Key)
			}
		}
		if string(r2.Key) != "k2" {
			return fmt.Errorf("key %q", r2.Key)
		}
		return nil
	})
}

// TestRebalance runs a second pipeline in the same group mid-stream (the
// first gives up partitions) and then stops the first (the second takes
// them all), while requests keep arriving: every request gets a result,
// none is lost in the handovers.
func TestRebalance(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	results := collect(t, addrs, resTopic)
	cfg := testConfig()
	cfg.MaxBatchSize = 8
	a := startPipeline(t, cfg, addrs, pred, openStore(t))
	prod := testutil.Client(t, addrs)
	const n = 4000
	sent := make(chan struct{})
	go func() { // about 2000 requests a second
		defer close(sent)
		for i := 0; i < n; i += 20 {
			var recs []*kgo.Record
			for j := i; j < i+20; j++ {
				recs = append(recs, &kgo.Record{Topic: reqTopic, Key: []byte(strconv.Itoa(j % 13)),
					Value: []byte(fmt.Sprintf(`{"request_id":"r-%d","features":[%d,0,0,0],"model":"slow"}`, j, j+1000))})
			}
			if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	results.waitN(t, 10, 30*time.Second)
	b := startPipeline(t, cfg, addrs, pred, openStore(t))
	testutil.Eventually(t, 30*time.Second, func() error {
		if b.p.Status().Consumed == 0 {
			return errNotYet
		}
		return nil
	})
	a.stop(t)
	<-sent
	testutil.Eventually(t, 60*time.Second, func() error {
		seen := map[string]bool{}
		for _, r := range results.records() {
			seen[decodeResult(t, r).RequestID] = true
		}
		if len(seen) < n {
			return fmt.Errorf("%d of %d requests have results", len(seen), n)
		}
		return nil
	})
	t.Logf("%d results for %d requests; first pipeline consumed %d, second %d (duplicates are allowed at least once)",
		len(results.records()), n, a.p.Status().Consumed, b.p.Status().Consumed)
}

func TestMetrics(t *testing.T) {
	addrs := newCluster(t)
	pred := newTestPredictor(t)
	reg := prometheus.NewRegistry()
	p, err := pipeline.New(testConfig(), testutil.Logger(t), []kgo.Opt{kgo.SeedBrokers(addrs...)}, pred, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.New(testConfig(), testutil.Logger(t), nil, pred, nil, reg); err == nil {
		t.Error("registering the metrics twice did not fail")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	results := collect(t, addrs, resTopic)
	dlq := collect(t, addrs, dlqTopic)
	produce(t, testutil.Client(t, addrs),
		&kgo.Record{Value: []byte(`{"features":[1,2,3,4],"model":"poison"}`)},
		&kgo.Record{Value: []byte(`oops`)})
	results.waitN(t, 1, 30*time.Second)
	dlq.waitN(t, 1, 30*time.Second)
	testutil.Eventually(t, 10*time.Second, func() error {
		mfs, err := reg.Gather()
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, mf := range mfs {
			got[mf.GetName()] = true
		}
		for _, name := range []string{"infergate_requests_total", "infergate_results_total", "infergate_dlq_records_total",
			"infergate_end_to_end_latency_seconds", "infergate_predict_latency_seconds", "infergate_batch_size",
			"infergate_inflight_batches", "infergate_circuit_state", "infergate_consumer_lag"} {
			if !got[name] {
				return fmt.Errorf("metric %s missing", name)
			}
		}
		return nil
	})
}

// Every invalid field is reported as a field.Error pointing at that field
// (the appliance turns the pointer into the setting's key, flag and
// environment variable), and Validate fills nothing in.
func TestConfigValidate(t *testing.T) {
	def := pipeline.DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		mod   func(*pipeline.Config)
		field func(*pipeline.Config) any
		name  string
	}{
		{func(c *pipeline.Config) { c.MaxBatchSize = 0 }, func(c *pipeline.Config) any { return &c.MaxBatchSize }, "MaxBatchSize"},
		{func(c *pipeline.Config) { c.MaxBatchSize = 70000 }, func(c *pipeline.Config) any { return &c.MaxBatchSize }, "MaxBatchSize"},
		{func(c *pipeline.Config) { c.MaxBatchWait = -1 }, func(c *pipeline.Config) any { return &c.MaxBatchWait }, "MaxBatchWait"},
		{func(c *pipeline.Config) { c.MaxBatchWait = 2 * time.Minute }, func(c *pipeline.Config) any { return &c.MaxBatchWait }, "MaxBatchWait"},
		{func(c *pipeline.Config) { c.MaxInflightBatches = 0 }, func(c *pipeline.Config) any { return &c.MaxInflightBatches }, "MaxInflightBatches"},
		{func(c *pipeline.Config) { c.Delivery = "twice" }, func(c *pipeline.Config) any { return &c.Delivery }, "Delivery"},
		{func(c *pipeline.Config) { c.RetryBackoff = 0 }, func(c *pipeline.Config) any { return &c.RetryBackoff }, "RetryBackoff"},
		{func(c *pipeline.Config) { c.RetryBackoffMax = time.Nanosecond }, func(c *pipeline.Config) any { return &c.RetryBackoffMax }, "RetryBackoffMax"},
		{func(c *pipeline.Config) { c.RetryAttempts = 0 }, func(c *pipeline.Config) any { return &c.RetryAttempts }, "RetryAttempts"},
		{func(c *pipeline.Config) { c.MaxAttempts = 0 }, func(c *pipeline.Config) any { return &c.MaxAttempts }, "MaxAttempts"},
		{func(c *pipeline.Config) { c.ProbeInterval = 0 }, func(c *pipeline.Config) any { return &c.ProbeInterval }, "ProbeInterval"},
		{func(c *pipeline.Config) { c.PredictTimeout = 0 }, func(c *pipeline.Config) any { return &c.PredictTimeout }, "PredictTimeout"},
		{func(c *pipeline.Config) { c.ShutdownTimeout = 0 }, func(c *pipeline.Config) any { return &c.ShutdownTimeout }, "ShutdownTimeout"},
		{func(c *pipeline.Config) { c.Group = "" }, func(c *pipeline.Config) any { return &c.Group }, "Group"},
		{func(c *pipeline.Config) { c.DefaultModel = "" }, func(c *pipeline.Config) any { return &c.DefaultModel }, "DefaultModel"},
		{func(c *pipeline.Config) { c.DLQTopic = "dead letters" }, func(c *pipeline.Config) any { return &c.DLQTopic }, "DLQTopic"},
		{func(c *pipeline.Config) { c.ResultsTopic = c.RequestsTopic }, func(c *pipeline.Config) any { return &c.ResultsTopic }, "ResultsTopic"},
	} {
		c := pipeline.DefaultConfig()
		tc.mod(&c)
		before := c
		err := c.Validate()
		fields, other := field.All(err)
		if len(fields) != 1 || len(other) != 0 {
			t.Errorf("%s: want one field error, got %v", tc.name, err)
			continue
		}
		if fields[0].Ptr != tc.field(&c) || fields[0].Name != tc.name {
			t.Errorf("%s: error points at %s, want %s: %v", tc.name, fields[0].Name, tc.name, err)
		}
		if !strings.HasPrefix(err.Error(), tc.name+": ") {
			t.Errorf("%s: error %q does not start with the field's name", tc.name, err)
		}
		if c != before {
			t.Errorf("%s: Validate changed the config", tc.name)
		}
	}
}
