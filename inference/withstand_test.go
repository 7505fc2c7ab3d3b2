package inference_test

// Tests of issue 9's rows owned by the pipeline: hostile records and faults
// that must not stop the pipeline (docs/operations.md, "What it withstands").

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/infergate/infergate/inference"
	"github.com/infergate/infergate/store"
)

// newFaultCluster is newCluster with the cluster itself, for faults and
// broker configs.
func newFaultCluster(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(nParts, reqTopic, resTopic, dlqTopic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
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
		produce(t, newClient(t, addrs),
			&kgo.Record{Key: []byte("bad"), Value: []byte(`not json`)},
			&kgo.Record{Value: []byte(`{"request_id":"ok","model":"poison","features":[1,1,1,1]}`)})

		cfg := testConfig()
		run := startPipeline(t, cfg, addrs, pred, st)
		dlq.waitN(t, 1, 30*time.Second)
		checkFor(t, 10*time.Second, func() error {
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
		produce(t, newClient(t, addrs),
			&kgo.Record{Key: []byte("bad"), Value: []byte(`not json`)},
			&kgo.Record{Key: []byte("bad"), Value: []byte(`{"request_id":"ok","model":"poison","features":[1,1,1,1]}`)})
		h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.UnknownServerError})

		cfg := testConfig()
		cfg.Delivery = inference.ExactlyOnce
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
