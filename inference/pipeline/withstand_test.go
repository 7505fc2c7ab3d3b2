package pipeline_test

// Tests of issue 9's rows owned by the pipeline: hostile records and faults
// that must not stop the pipeline (docs/operations.md, "What it withstands").

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

// newFaultCluster is newCluster with the cluster itself, for faults and
// broker configs.
func newFaultCluster(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	t.Helper()
	c := testutil.Cluster(t, nParts, []string{reqTopic, resTopic, dlqTopic}, opts...)
	return c, c.ListenAddrs()
}

func storeCount(st *store.Store) int {
	n, _ := st.Count(store.Filter{})
	return n
}

// TestRedeliveredFailureStoredOnce (issue 9, row 15): a request dead-lettered
// twice is one store record. At-least-once: a second consumer group reads
// the same records again, as a redelivery after a crash does. Exactly-once:
// the first transaction's offset commit fails, so the transaction aborts
// after the DLQ record was stored; the store already holds it (it is written
// before the commit, never after), and the redelivery overwrites it.
func TestRedeliveredFailureStoredOnce(t *testing.T) {
	t.Run("at-least-once", func(t *testing.T) {
		addrs := newCluster(t)
		pred := newTestPredictor(t)
		st := openStore(t)
		dlq := collect(t, addrs, dlqTopic)
		produce(t, testutil.Client(t, addrs),
			&kgo.Record{Key: []byte("bad"), Value: []byte(`not json`)},
			&kgo.Record{Value: []byte(`{"request_id":"ok","model":"poison","features":[1,1,1,1]}`)})

		cfg := testConfig()
		run := startPipeline(t, cfg, addrs, pred, st)
		dlq.waitN(t, 1, 30*time.Second)
		testutil.Eventually(t, 10*time.Second, func() error {
			if n := storeCount(st); n != 1 {
				return fmt.Errorf("%d store records", n)
			}
			return nil
		})
		run.stop(t)
		first, _, _ := st.List(store.Filter{Limit: 10})

		cfg.Group = "redelivery"
		run = startPipeline(t, cfg, addrs, pred, st)
		dlq.waitN(t, 2, 30*time.Second) // the second delivery was dead-lettered too
		run.stop(t)
		recs, _, err := st.List(store.Filter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].ID != first[0].ID {
			t.Fatalf("store after redelivery: %d records (%v), want the one record %s", len(recs), ids(recs), first[0].ID)
		}
	})

	t.Run("exactly-once", func(t *testing.T) {
		c, addrs := newFaultCluster(t)
		pred := newTestPredictor(t)
		st := openStore(t)
		dlq := collect(t, addrs, dlqTopic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		results := collect(t, addrs, resTopic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		produce(t, testutil.Client(t, addrs),
			&kgo.Record{Key: []byte("bad"), Value: []byte(`not json`)},
			&kgo.Record{Key: []byte("bad"), Value: []byte(`{"request_id":"ok","model":"poison","features":[1,1,1,1]}`)})
		h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.UnknownServerError})

		cfg := testConfig()
		cfg.Delivery = pipeline.ExactlyOnce
		cfg.TransactionalID = "row15"
		run := startPipeline(t, cfg, addrs, pred, st)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.Wait(ctx, 1); err != nil {
			t.Fatalf("the offset commit was never attempted: %v", err)
		}
		// The transaction is failing: its DLQ record must be in the store already.
		if n := storeCount(st); n != 1 {
			t.Errorf("%d store records when the transaction's commit failed, want 1", n)
		}
		results.waitN(t, 1, 30*time.Second)
		dlq.waitN(t, 1, 30*time.Second)
		run.stop(t)
		if n := len(dlq.records()); n != 1 {
			t.Errorf("%d committed DLQ records, want 1", n)
		}
		if n := storeCount(st); n != 1 {
			t.Errorf("%d store records after the redelivery, want 1", n)
		}
	})
}

func ids(recs []*store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// demoValue is a demo model request whose first feature is first.
func demoValue(id string, first float32) []byte {
	x := make([]float32, 16)
	x[0] = first
	for i := 1; i < len(x); i++ {
		x[i] = 0.5
	}
	return []byte(fmt.Sprintf(`{"request_id":%q,"features":%s}`, id, featuresJSON(x)))
}

// TestStuckRequestDeadLettered (issue 9, row 11): one request that always
// times out at the model server (and one that always exhausts its resources)
// among good ones is dead-lettered with class timeout (resource_exhausted)
// after pipeline.max_attempts calls, its batch-mates get their results, and
// its partition's offsets move on; the circuit stays closed. When every call
// times out, nothing is dead-lettered: the circuit opens, and when the model
// server answers again every request gets its result.
func TestStuckRequestDeadLettered(t *testing.T) {
	for _, mode := range []string{pipeline.AtLeastOnce, pipeline.ExactlyOnce} {
		t.Run(mode, func(t *testing.T) {
			addrs := newCluster(t)
			pred := newTestPredictor(t)
			st := openStore(t)
			var opts []kgo.Opt
			cfg := testConfig()
			cfg.Delivery = mode
			if mode == pipeline.ExactlyOnce {
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
				cfg.TransactionalID = "row11"
			}
			results := collect(t, addrs, resTopic, opts...)
			dlq := collect(t, addrs, dlqTopic, opts...)
			cfg.PredictTimeout = 300 * time.Millisecond
			cfg.MaxAttempts = 3
			cfg.MaxBatchWait = 20 * time.Millisecond // so the stuck request shares batches
			run := startPipeline(t, cfg, addrs, pred, st)

			prod := testutil.Client(t, addrs)
			const n = 120
			var recs []*kgo.Record
			for i := range n {
				recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i % 7)), Value: demoValue(fmt.Sprintf("g-%d", i), float32(i%10)/10)})
				switch i {
				case 10:
					recs = append(recs, &kgo.Record{Key: []byte("stuck"), Value: demoValue("stuck", stuckMarker)})
				case 20:
					recs = append(recs, &kgo.Record{Key: []byte("oom"), Value: demoValue("oom", exhaustMarker)})
				}
			}
			produce(t, prod, recs...)
			sent := map[string]time.Time{}
			for _, r := range recs {
				sent[string(r.Key)] = r.Timestamp
			}
			results.waitN(t, n, 60*time.Second)
			dl := dlq.waitN(t, 2, 60*time.Second)
			for _, r := range dl {
				class, _ := header(r, pipeline.HeaderErrorClass)
				attempts, _ := header(r, pipeline.HeaderAttempts)
				msg, _ := header(r, pipeline.HeaderErrorMessage)
				want := map[string]string{"stuck": pipeline.ClassTimeout, "oom": pipeline.ClassExhausted}[string(r.Key)]
				if class != want {
					t.Errorf("%s: class %q, want %q (%s)", r.Key, class, want, msg)
				}
				if a, _ := strconv.Atoi(attempts); a < cfg.MaxAttempts {
					t.Errorf("%s: dead-lettered after %s attempts, want >= %d", r.Key, attempts, cfg.MaxAttempts)
				}
				if !strings.Contains(msg, "pipeline.max_attempts") {
					t.Errorf("%s: message %q does not name pipeline.max_attempts", r.Key, msg)
				}
				failedAt, _ := header(r, pipeline.HeaderFailedAt)
				if at, err := time.Parse(time.RFC3339Nano, failedAt); err == nil {
					t.Logf("%s: dead-lettered %s after it was produced, after %s calls (predict_timeout %s, max_attempts %d)",
						r.Key, at.Sub(sent[string(r.Key)]).Round(10*time.Millisecond), attempts, cfg.PredictTimeout, cfg.MaxAttempts)
				}
			}
			testutil.Eventually(t, 30*time.Second, func() error {
				got := committed(t, addrs, cfg.Group)
				total := int64(0)
				for _, o := range got {
					total += o
				}
				if total != n+2 {
					return fmt.Errorf("committed %v (%d of %d)", got, total, n+2)
				}
				return nil
			})
			if s := run.p.Status(); s.Circuit != "closed" || s.DLQ[pipeline.ClassTimeout] != 1 || s.DLQ[pipeline.ClassExhausted] != 1 {
				t.Errorf("status: circuit %s, DLQ %v", s.Circuit, s.DLQ)
			}

			// Everything times out: the circuit opens, nothing is dead-lettered.
			pred.hung.Store(true)
			recs = recs[:0]
			for i := range 20 {
				recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i % 7)), Value: demoValue(fmt.Sprintf("h-%d", i), 0.3)})
			}
			produce(t, prod, recs...)
			testutil.Eventually(t, 30*time.Second, func() error {
				if s := run.p.Status(); s.State != pipeline.StateCircuitOpen {
					return fmt.Errorf("state %s circuit %s", s.State, s.Circuit)
				}
				return nil
			})
			if run.p.Ready() {
				t.Error("ready while every model call times out")
			}
			pred.hung.Store(false)
			results.waitN(t, n+20, 60*time.Second)
			run.stop(t)
			if got := len(dlq.records()); got != 2 {
				t.Errorf("%d DLQ records, want the 2 poisoned requests only", got)
			}
		})
	}
}

// TestOversizedOutputsDoNotStopThePipeline (issue 9, row 1): the broker
// takes at most 64 KiB per batch. A request just under that which fails
// decoding has a DLQ copy over it (the original plus the DLQ headers); one
// with 60 KB of headers cannot fit even without its value; a model answers
// one request with a result of ~80 KB. Before, the first stopped the
// pipeline (at-least-once: exit and crash-loop) or aborted every transaction
// forever (exactly-once). Now each is cut down to fit, with headers saying
// so and the source offset kept, the store keeps the whole record, and good
// requests around them get their results.
func TestOversizedOutputsDoNotStopThePipeline(t *testing.T) {
	const limit = 64 << 10
	for _, mode := range []string{pipeline.AtLeastOnce, pipeline.ExactlyOnce} {
		t.Run(mode, func(t *testing.T) {
			_, addrs := newFaultCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(limit)}))
			pred := newTestPredictor(t)
			st := openStore(t)
			var opts []kgo.Opt
			cfg := testConfig()
			cfg.Delivery = mode
			if mode == pipeline.ExactlyOnce {
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
				cfg.TransactionalID = "row1"
			}
			results := collect(t, addrs, resTopic, opts...)
			dlq := collect(t, addrs, dlqTopic, opts...)
			run := startPipeline(t, cfg, addrs, pred, st)

			// Random bytes: compression must not make them fit.
			rng := rand.New(rand.NewPCG(1, 2))
			random := func(n int) []byte {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				return b
			}
			bigValue := random(limit - 200)
			bigHeader := []kgo.RecordHeader{{Key: "blob", Value: random(limit - 300)}}
			recs := good(0, 50)
			recs = append(recs,
				&kgo.Record{Key: []byte("big"), Value: bigValue},
				&kgo.Record{Key: []byte("headers"), Value: []byte("not json either"), Headers: bigHeader},
				&kgo.Record{Key: []byte("wide"), Value: []byte(`{"request_id":"wide","model":"wide","features":[1,2,3,4]}`)})
			recs = append(recs, good(50, 100)...)
			prod := testutil.Client(t, addrs)
			for _, r := range recs {
				produce(t, prod, r) // one by one: batches of the big ones would exceed the limit
			}

			results.waitN(t, 100, 60*time.Second)
			dl := dlq.waitN(t, 3, 60*time.Second)
			for _, r := range dl {
				if n := len(r.Key) + len(r.Value) + headerBytes(r); n > limit {
					t.Errorf("%s: DLQ record of %d bytes over the limit", r.Key, n)
				}
				off, _ := header(r, pipeline.HeaderSourceOffset)
				if _, err := strconv.Atoi(off); err != nil {
					t.Errorf("DLQ record without its source offset: %v", r.Headers)
				}
				class, _ := header(r, pipeline.HeaderErrorClass)
				trunc, _ := header(r, pipeline.HeaderTruncated)
				size, _ := header(r, pipeline.HeaderOriginalSize)
				msg, _ := header(r, pipeline.HeaderErrorMessage)
				switch {
				case string(r.Key) == "big":
					if class != pipeline.ClassDecode || trunc != "value" || size != fmt.Sprint(len(bigValue)) ||
						len(r.Value) == 0 || !strings.HasPrefix(string(bigValue), string(r.Value)) {
						t.Errorf("big: class %q truncated %q size %q, value %d bytes", class, trunc, size, len(r.Value))
					}
				case string(r.Key) == "wide":
					if class != pipeline.ClassResultTooLarge || !strings.Contains(msg, "max.message.bytes") || trunc != "" {
						t.Errorf("wide: class %q truncated %q message %q", class, trunc, msg)
					}
				default: // the one with big headers: key and original headers dropped
					if _, ok := header(r, "blob"); ok || class != pipeline.ClassDecode || trunc != "value,headers,key" {
						t.Errorf("big headers: class %q truncated %q, headers %d bytes", class, trunc, headerBytes(r))
					}
				}
			}
			testutil.Eventually(t, 10*time.Second, func() error {
				if n := storeCount(st); n != 3 {
					return fmt.Errorf("%d store records", n)
				}
				return nil
			})
			stored, _, err := st.List(store.Filter{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range stored {
				if string(s.Key) == "big" && string(s.Value) != string(bigValue) {
					t.Errorf("the store lost the big value: %d bytes", len(s.Value))
				}
			}
			testutil.Eventually(t, 30*time.Second, func() error {
				total := int64(0)
				for _, o := range committed(t, addrs, cfg.Group) {
					total += o
				}
				if total != 103 {
					return fmt.Errorf("committed %d of 103", total)
				}
				return nil
			})
			if s := run.p.Status(); s.State != pipeline.StateRunning || !run.p.Ready() {
				t.Errorf("state %s ready %v, last error %s", s.State, run.p.Ready(), s.LastError)
			}
			run.stop(t)
			if n := len(dlq.records()); n != 3 {
				t.Errorf("%d DLQ records, want 3", n)
			}
		})
	}
}

func headerBytes(r *kgo.Record) int {
	n := 0
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// TestClassifyProduceError: every produce error the pipeline can meet is
// retriable (produce again, not ready meanwhile), the record's (cut it
// down) or fatal (stop).
func TestClassifyProduceError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{kerr.MessageTooLarge, "record"},
		{fmt.Errorf("%w (uncompressed_bytes=70000)", kerr.MessageTooLarge), "record"},
		{kerr.RecordListTooLarge, "record"},
		{kerr.InvalidRecord, "record"},
		{kerr.CorruptMessage, "record"},
		{kerr.InvalidTimestamp, "record"},
		{kerr.TopicAuthorizationFailed, "fatal"},
		{kerr.ClusterAuthorizationFailed, "fatal"},
		{kerr.TransactionalIDAuthorizationFailed, "fatal"},
		{kerr.ProducerFenced, "fatal"},
		{kerr.InvalidTxnState, "fatal"},
		{kerr.UnsupportedCompressionType, "fatal"},
		{kerr.UnsupportedVersion, "fatal"},
		{kgo.ErrClientClosed, "fatal"},
		{kerr.UnknownTopicOrPartition, "retriable"},
		{kerr.KafkaStorageError, "retriable"},
		{kerr.NotEnoughReplicas, "retriable"},
		{kerr.RequestTimedOut, "retriable"},
		{kerr.UnknownServerError, "retriable"},
		{kgo.ErrRecordTimeout, "retriable"},
		{kgo.ErrRecordRetries, "retriable"},
		{context.DeadlineExceeded, "retriable"},
		{fmt.Errorf("something new"), "retriable"},
	} {
		if got := pipeline.ClassifyProduceError(c.err); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, got, c.want)
		}
	}
}

// TestProduceErrorClasses injects each class of produce error with the
// broker's own fault injection: a record error (INVALID_RECORD on a DLQ
// record, in both delivery modes) costs that record one more produce, cut
// down, and nothing else; a retriable one (UNKNOWN_TOPIC_OR_PARTITION on the
// results topic, until removed) makes the pipeline not ready and stalled
// until the broker takes records again, then every result arrives; a fatal
// one (TOPIC_AUTHORIZATION_FAILED) stops Run with an error naming the topic,
// committing nothing past the failed request.
func TestProduceErrorClasses(t *testing.T) {
	for _, mode := range []string{pipeline.AtLeastOnce, pipeline.ExactlyOnce} {
		t.Run("record/"+mode, func(t *testing.T) {
			c, addrs := newFaultCluster(t)
			var opts []kgo.Opt
			cfg := testConfig()
			cfg.Delivery = mode
			if mode == pipeline.ExactlyOnce {
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
				cfg.TransactionalID = "record-class"
			}
			results := collect(t, addrs, resTopic, opts...)
			dlq := collect(t, addrs, dlqTopic, opts...)
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: dlqTopic, Err: kerr.InvalidRecord})
			run := startPipeline(t, cfg, addrs, newTestPredictor(t), openStore(t))
			produce(t, testutil.Client(t, addrs),
				&kgo.Record{Key: []byte("k"), Value: []byte(`not json`)},
				&kgo.Record{Key: []byte("k"), Value: []byte(`{"request_id":"ok","model":"poison","features":[1,1,1,1]}`)})
			results.waitN(t, 1, 30*time.Second)
			dlq.waitN(t, 1, 30*time.Second)
			if h.Hits() != 1 {
				t.Errorf("fault hit %d times", h.Hits())
			}
			if s := run.p.Status(); s.State != pipeline.StateRunning || !strings.Contains(s.LastError, "INVALID_RECORD") {
				t.Errorf("state %s, last error %q", s.State, s.LastError)
			}
			run.stop(t)
		})
	}

	for _, mode := range []string{pipeline.AtLeastOnce, pipeline.ExactlyOnce} {
		// The DLQ topic refuses every record: after the cut-down tries the
		// record is kept in the store only, and the partition moves on.
		t.Run("record-always/"+mode, func(t *testing.T) {
			c, addrs := newFaultCluster(t)
			var opts []kgo.Opt
			cfg := testConfig()
			cfg.Delivery = mode
			if mode == pipeline.ExactlyOnce {
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
				cfg.TransactionalID = "record-always"
			}
			results := collect(t, addrs, resTopic, opts...)
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: dlqTopic, Err: kerr.CorruptMessage, Count: -1})
			st := openStore(t)
			run := startPipeline(t, cfg, addrs, newTestPredictor(t), st)
			recs := append([]*kgo.Record{{Key: []byte("0"), Value: []byte(`not json`)}}, good(0, 10)...)
			produce(t, testutil.Client(t, addrs), recs...)
			results.waitN(t, 10, 30*time.Second)
			testutil.Eventually(t, 30*time.Second, func() error {
				total := int64(0)
				for _, o := range committed(t, addrs, cfg.Group) {
					total += o
				}
				if total != 11 {
					return fmt.Errorf("committed %d of 11", total)
				}
				return nil
			})
			if n := storeCount(st); n != 1 {
				t.Errorf("%d store records, want the refused DLQ record", n)
			}
			if h.Hits() < 3 {
				t.Errorf("the DLQ topic refused %d produces, want the 3 tries before store-only", h.Hits())
			}
			run.stop(t)
		})
	}

	t.Run("retriable", func(t *testing.T) {
		c, addrs := newFaultCluster(t)
		results := collect(t, addrs, resTopic)
		h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: resTopic, Err: kerr.UnknownTopicOrPartition, Count: -1})
		// Metadata refreshed quickly, so kgo gives up on the "missing" topic soon.
		run := startPipeline(t, testConfig(), addrs, newTestPredictor(t), openStore(t), kgo.MetadataMinAge(50*time.Millisecond))
		produce(t, testutil.Client(t, addrs), good(0, 20)...)
		testutil.Eventually(t, 30*time.Second, func() error {
			if s := run.p.Status(); s.State != pipeline.StateStalled || run.p.Ready() {
				return fmt.Errorf("state %s ready %v", s.State, run.p.Ready())
			}
			return nil
		})
		h.Remove()
		results.waitN(t, 20, 30*time.Second)
		testutil.Eventually(t, 30*time.Second, func() error {
			if s := run.p.Status(); s.State != pipeline.StateRunning || !run.p.Ready() {
				return fmt.Errorf("state %s ready %v", s.State, run.p.Ready())
			}
			return nil
		})
		run.stop(t)
	})

	for _, mode := range []string{pipeline.AtLeastOnce, pipeline.ExactlyOnce} {
		// kgo retries KAFKA_STORAGE_ERROR (a broker's full disk) without end
		// and without telling the promise: the watchdog reports the stall.
		t.Run("silent/"+mode, func(t *testing.T) {
			defer pipeline.SetProduceStallAfter(300 * time.Millisecond)()
			c, addrs := newFaultCluster(t)
			var opts []kgo.Opt
			cfg := testConfig()
			cfg.Delivery = mode
			if mode == pipeline.ExactlyOnce {
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
				cfg.TransactionalID = "silent"
			}
			results := collect(t, addrs, resTopic, opts...)
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: resTopic, Err: kerr.KafkaStorageError, Count: -1})
			run := startPipeline(t, cfg, addrs, newTestPredictor(t), openStore(t),
				kgo.MetadataMinAge(50*time.Millisecond)) // kgo refreshes metadata before retrying
			produce(t, testutil.Client(t, addrs), good(0, 10)...)
			testutil.Eventually(t, 30*time.Second, func() error {
				if s := run.p.Status(); s.State != pipeline.StateStalled || run.p.Ready() {
					return fmt.Errorf("state %s ready %v", s.State, run.p.Ready())
				}
				return nil
			})
			h.Remove()
			results.waitN(t, 10, 30*time.Second)
			testutil.Eventually(t, 30*time.Second, func() error {
				if s := run.p.Status(); s.State != pipeline.StateRunning || !run.p.Ready() {
					return fmt.Errorf("state %s ready %v", s.State, run.p.Ready())
				}
				return nil
			})
			run.stop(t)
		})
	}

	t.Run("fatal", func(t *testing.T) {
		c, addrs := newFaultCluster(t)
		c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: resTopic, Err: kerr.TopicAuthorizationFailed, Count: -1})
		run := startPipeline(t, testConfig(), addrs, newTestPredictor(t), openStore(t))
		produce(t, testutil.Client(t, addrs), good(0, 5)...)
		select {
		case <-run.done:
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not stop on a fatal produce error")
		}
		if run.err == nil || !strings.Contains(run.err.Error(), resTopic) || !strings.Contains(run.err.Error(), "TOPIC_AUTHORIZATION_FAILED") {
			t.Errorf("Run: %v", run.err)
		}
		for p, o := range committed(t, addrs, "infergate") {
			if o > 0 {
				t.Errorf("partition %d committed to %d past requests whose results were refused", p, o)
			}
		}
	})
}

// good is n requests to the poison model that all succeed.
func good(from, to int) (recs []*kgo.Record) {
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i % 5)),
			Value: []byte(fmt.Sprintf(`{"request_id":"g-%d","model":"poison","features":[%d,1,1,1]}`, i, i))})
	}
	return recs
}

// TestCutDownAgainFromTheWholeRecord: a DLQ copy already cut to fit and then
// refused (INVALID_RECORD) is cut again from the whole record, to half the
// limit: one dlq.original.size header with the original size, not the size
// of the first cut.
func TestCutDownAgainFromTheWholeRecord(t *testing.T) {
	const limit = 64 << 10
	c, addrs := newFaultCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(limit)}))
	dlq := collect(t, addrs, dlqTopic)
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: dlqTopic, Err: kerr.InvalidRecord})
	run := startPipeline(t, testConfig(), addrs, newTestPredictor(t), openStore(t))
	big := make([]byte, limit-200)
	for i := range big {
		big[i] = byte(i*7 + i/251) // not JSON, not UTF-8 throughout
	}
	produce(t, testutil.Client(t, addrs), &kgo.Record{Key: []byte("big"), Value: big})
	r := dlq.waitN(t, 1, 30*time.Second)[0]
	if h.Hits() != 1 {
		t.Fatalf("fault hit %d times", h.Hits())
	}
	var sizes, truncs []string
	for _, hd := range r.Headers {
		switch hd.Key {
		case pipeline.HeaderOriginalSize:
			sizes = append(sizes, string(hd.Value))
		case pipeline.HeaderTruncated:
			truncs = append(truncs, string(hd.Value))
		}
	}
	if len(sizes) != 1 || sizes[0] != fmt.Sprint(len(big)) || len(truncs) != 1 || truncs[0] != "value" {
		t.Errorf("headers: %s %v, %s %v", pipeline.HeaderOriginalSize, sizes, pipeline.HeaderTruncated, truncs)
	}
	if len(r.Value) == 0 || len(r.Value) > limit/2 || string(r.Value) != string(big[:len(r.Value)]) {
		t.Errorf("value of %d bytes, want a prefix of the original within half the limit", len(r.Value))
	}
	run.stop(t)
}

// TestAbortedTransactionsCounted: in exactly-once mode every ended
// transaction is counted by outcome. One record error on a DLQ record
// (INVALID_RECORD, once) aborts exactly one transaction; the requests are
// consumed again and committed. At-least-once exports no such series.
func TestAbortedTransactionsCounted(t *testing.T) {
	c, addrs := newFaultCluster(t)
	cfg := testConfig()
	cfg.Delivery = pipeline.ExactlyOnce
	cfg.TransactionalID = "aborts-counted"
	results := collect(t, addrs, resTopic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	dlq := collect(t, addrs, dlqTopic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	reg := prometheus.NewRegistry()
	if got := transactions(t, reg); len(got) != 0 {
		t.Fatalf("series before the pipeline: %v", got)
	}
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: dlqTopic, Err: kerr.InvalidRecord})
	run := startPipelineReg(t, cfg, addrs, newTestPredictor(t), openStore(t), reg)
	if got := transactions(t, reg); got["aborted"] != 0 || got["committed"] != 0 || len(got) != 2 {
		t.Fatalf("at start: %v, want both outcomes at 0", got)
	}
	produce(t, testutil.Client(t, addrs),
		&kgo.Record{Key: []byte("k"), Value: []byte(`not json`)},
		&kgo.Record{Key: []byte("k"), Value: []byte(`{"request_id":"ok","model":"poison","features":[1,1,1,1]}`)})
	results.waitN(t, 1, 30*time.Second)
	dlq.waitN(t, 1, 30*time.Second)
	if h.Hits() != 1 {
		t.Fatalf("fault hit %d times", h.Hits())
	}
	got := transactions(t, reg)
	if got["aborted"] != 1 || got["committed"] < 1 {
		t.Errorf("infergate_transactions_total %v, want 1 aborted and at least 1 committed", got)
	}
	run.stop(t)

	// At-least-once has no transactions and no series.
	reg = prometheus.NewRegistry()
	alo := testConfig()
	startPipelineReg(t, alo, addrs, newTestPredictor(t), openStore(t), reg).stop(t)
	if got := transactions(t, reg); len(got) != 0 {
		t.Errorf("at-least-once: %v, want no series", got)
	}
}

// transactions reads infergate_transactions_total by outcome.
func transactions(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "infergate_transactions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
