package broker

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEnsureTopicsIdempotentWithRetention(t *testing.T) {
	e := startEmbedded(t, t.TempDir(), DurabilityOS)
	adm := newAdmin(t, e.Addr())
	specs := DefaultTopics("inference_requests", "inference_results", "inference_dlq", 6)
	for range 2 {
		if err := EnsureTopics(testCtx(t), adm, specs...); err != nil {
			t.Fatal(err)
		}
	}
	topics, err := adm.ListTopics(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if n := len(topics[s.Name].Partitions); n != 6 {
			t.Fatalf("%s has %d partitions, want 6", s.Name, n)
		}
		assertTopicConfig(t, adm, s.Name, "retention.ms", fmt.Sprint(s.RetentionMs))
		assertTopicConfig(t, adm, s.Name, "retention.bytes", fmt.Sprint(s.RetentionBytes))
		assertTopicConfig(t, adm, s.Name, "segment.bytes", *s.Configs["segment.bytes"])
		assertTopicConfig(t, adm, s.Name, "segment.ms", "3600000")
	}
	// Byte budgets are per topic, split over the partitions.
	assertTopicConfig(t, adm, "inference_requests", "retention.bytes", fmt.Sprint(DefaultRequestsTopicBytes/6))
	assertTopicConfig(t, adm, "inference_dlq", "retention.bytes", fmt.Sprint(DefaultDLQTopicBytes/6))
	assertTopicConfig(t, adm, "inference_requests", "retention.ms", "86400000")
	assertTopicConfig(t, adm, "inference_dlq", "retention.ms", "604800000")

	// A changed setting is applied to the existing topic on the next start.
	changed := specs[0]
	changed.RetentionMs = 3_600_000
	changed.RetentionBytes = -1
	if err := EnsureTopics(testCtx(t), adm, changed); err != nil {
		t.Fatal(err)
	}
	assertTopicConfig(t, adm, changed.Name, "retention.ms", "3600000")
	assertTopicConfig(t, adm, changed.Name, "retention.bytes", "-1")
}

func TestPartitionBytes(t *testing.T) {
	for _, tc := range []struct {
		topic       int64
		parts       int32
		perPart, sg int64
	}{
		{512 << 20, 6, (512 << 20) / 6, (512 << 20) / 6 / 8},
		{512 << 20, 1, 512 << 20, 64 << 20},
		{128 << 20, 64, 2 << 20, 1 << 20},
		{1 << 20, 100, 1 << 20, 1 << 20},
	} {
		p, s := PartitionBytes(tc.topic, tc.parts)
		if p != tc.perPart || s != tc.sg {
			t.Errorf("PartitionBytes(%d, %d) = %d, %d; want %d, %d", tc.topic, tc.parts, p, s, tc.perPart, tc.sg)
		}
	}
}

func TestEnsureTopicsReportsFewerPartitions(t *testing.T) {
	e := startEmbedded(t, t.TempDir(), DurabilityOS)
	adm := newAdmin(t, e.Addr())
	if err := EnsureTopics(testCtx(t), adm, TopicSpec{Name: "small", Partitions: 2}, TopicSpec{Name: "big", Partitions: 8}); err != nil {
		t.Fatal(err)
	}
	err := EnsureTopics(testCtx(t), adm,
		TopicSpec{Name: "small", Partitions: 4, RetentionMs: 1000},
		TopicSpec{Name: "big", Partitions: 4}, // more than asked for is fine
		TopicSpec{Name: "new", Partitions: 3},
	)
	if !errors.Is(err, ErrFewerPartitions) {
		t.Fatalf("want ErrFewerPartitions, got %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"small" has 2 partitions, configured 4`) || strings.Contains(msg, `"big"`) {
		t.Fatalf("error does not say which topic: %v", err)
	}
	// Everything else was still done.
	topics, err := adm.ListTopics(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(topics["new"].Partitions) != 3 || len(topics["small"].Partitions) != 2 {
		t.Fatalf("topics after EnsureTopics: %v", topics)
	}
	assertTopicConfig(t, adm, "small", "retention.ms", "1000")
}

func TestEnsureTopicsInvalidSpec(t *testing.T) {
	e := startEmbedded(t, t.TempDir(), DurabilityOS)
	adm := newAdmin(t, e.Addr())
	for _, s := range []TopicSpec{{Name: "", Partitions: 1}, {Name: "x", Partitions: 0}, {Name: "x", Partitions: 1, RetentionMs: -5}} {
		if err := EnsureTopics(testCtx(t), adm, s); err == nil {
			t.Errorf("spec %+v accepted", s)
		}
	}
}

func TestLag(t *testing.T) {
	e := startEmbedded(t, t.TempDir(), DurabilityOS)
	adm := newAdmin(t, e.Addr())
	if err := EnsureTopics(testCtx(t), adm, TopicSpec{Name: "req", Partitions: 2}, TopicSpec{Name: "other", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, e.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range 10 {
		r := &kgo.Record{Topic: "req", Partition: int32(i % 2), Value: []byte("x")}
		if err := cl.ProduceSync(testCtx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	offs := make(kadm.Offsets)
	offs.Add(kadm.Offset{Topic: "req", Partition: 0, At: 4, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(testCtx(t), "g", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}

	lags, err := Lag(testCtx(t), adm, "g", "req", "other")
	if err != nil {
		t.Fatal(err)
	}
	want := []PartitionLag{
		{Topic: "other", Partition: 0, Committed: -1, Start: 0, End: 0, Lag: 0},
		{Topic: "req", Partition: 0, Committed: 4, Start: 0, End: 5, Lag: 1},
		{Topic: "req", Partition: 1, Committed: -1, Start: 0, End: 5, Lag: 5},
	}
	if fmt.Sprint(lags) != fmt.Sprint(want) {
		t.Fatalf("Lag:\n got %+v\nwant %+v", lags, want)
	}

	// Without topics: the topics the group committed to.
	lags, err = Lag(testCtx(t), adm, "g")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(lags) != fmt.Sprint(want[1:]) {
		t.Fatalf("Lag without topics: %+v", lags)
	}
	// A group that does not exist has no lag of its own.
	if lags, err := Lag(testCtx(t), adm, "nobody"); err != nil || len(lags) != 0 {
		t.Fatalf("Lag of unknown group: %+v %v", lags, err)
	}
}
