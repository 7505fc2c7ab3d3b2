package group_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/group"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

const (
	dlqTopic     = "dlq"
	controlTopic = "control"
)

// dlqRecord is a DLQ record as the pipeline of another instance produces it.
func dlqRecord(id string, offset int) *kgo.Record {
	return &kgo.Record{Topic: dlqTopic, Key: []byte("k"), Value: []byte(fmt.Sprintf("bad-%d", offset)), Headers: []kgo.RecordHeader{
		{Key: pipeline.HeaderErrorClass, Value: []byte("decode")},
		{Key: pipeline.HeaderErrorMessage, Value: []byte("not JSON")},
		{Key: pipeline.HeaderSourceTopic, Value: []byte("requests")},
		{Key: pipeline.HeaderSourcePartition, Value: []byte("0")},
		{Key: pipeline.HeaderSourceOffset, Value: []byte(strconv.Itoa(offset))},
		{Key: pipeline.HeaderAttempts, Value: []byte("0")},
		{Key: pipeline.HeaderFailedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		{Key: pipeline.HeaderDLQModel, Value: []byte("demo")},
		{Key: pipeline.HeaderDLQID, Value: []byte(id)},
	}}
}

// runSharer runs a Sharer over st until the returned stop is called.
func runSharer(t *testing.T, addrs []string, st *store.Store, paused bool) (s *group.Sharer, stop func()) {
	t.Helper()
	cfg := group.DefaultConfig()
	cfg.Group, cfg.DLQTopic, cfg.ControlTopic = "g", dlqTopic, controlTopic
	s, err := group.New(cfg, testutil.Logger(t), []kgo.Opt{kgo.SeedBrokers(addrs...)}, st, func() group.MemberState {
		return group.MemberState{InstanceID: "other", State: "ok", Paused: paused}
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return s, stop
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(store.DefaultConfig(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestFollowerResumesAndAnnounces: a Sharer stores the DLQ topic's records under their ids
// (records without one are skipped), sees another Sharer's state, and, restarted, goes on
// from where it stopped: a record deleted locally while it was stopped does not come back.
// A delete made while both run reaches the other store.
func TestFollowerResumesAndAnnounces(t *testing.T) {
	cluster := testutil.Cluster(t, 2, []string{dlqTopic, controlTopic})
	addrs := cluster.ListenAddrs()
	prod := testutil.Client(t, addrs, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	ctx := context.Background()
	ids := []string{"01JAAAAAAAAAAAAAAAAAAAAAA1", "01JAAAAAAAAAAAAAAAAAAAAAA2", "01JAAAAAAAAAAAAAAAAAAAAAA3"}
	noID := dlqRecord("", 9)
	noID.Headers = noID.Headers[:len(noID.Headers)-1]
	recs := []*kgo.Record{noID}
	for i, id := range ids {
		recs = append(recs, dlqRecord(id, i))
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	a, b := openStore(t), openStore(t)
	sa, stopA := runSharer(t, addrs, a, false)
	sb, _ := runSharer(t, addrs, b, true)
	for name, st := range map[string]*store.Store{"a": a, "b": b} {
		testutil.Eventually(t, 30*time.Second, func() error {
			if n := st.Stats().Records; n != int64(len(ids)) {
				return fmt.Errorf("store %s holds %d records, want %d", name, n, len(ids))
			}
			return nil
		})
	}
	if r, err := a.Get(ids[0]); err != nil || r.Model != "demo" || r.Class != "decode" {
		t.Fatalf("a.Get(%s) = %+v, %v", ids[0], r, err)
	}
	if f := sa.Following(); f.Stored < int64(len(ids)) || f.Skipped < 1 {
		t.Errorf("a's follower: %+v, want %d stored and the record without id skipped", f, len(ids))
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, m := range sa.Members() {
			if m.Origin == sb.Origin() && m.Paused {
				return nil
			}
		}
		return fmt.Errorf("a does not see b paused: %+v", sa.Members())
	})

	// Deleted on b while both run: gone from a too.
	if _, err := b.Delete(ids[1]); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, err := a.Get(ids[1]); err == nil {
			return fmt.Errorf("a still holds %s", ids[1])
		}
		return nil
	})

	// a stopped, a record removed by its own retention meanwhile (no tombstone), one more
	// produced: restarted, a reads on from where it stopped.
	stopA()
	if _, err := a.Delete(ids[2]); err != nil {
		t.Fatal(err)
	}
	const later = "01JAAAAAAAAAAAAAAAAAAAAAA4"
	if err := prod.ProduceSync(ctx, dlqRecord(later, 7)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	runSharer(t, addrs, a, false)
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, err := a.Get(later); err != nil {
			return err
		}
		return nil
	})
	for _, id := range ids[1:] {
		if _, err := a.Get(id); err == nil {
			t.Errorf("a holds %s again after the restart", id)
		}
	}
}
