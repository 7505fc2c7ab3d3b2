package broker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

// Issue 9 row 10: the broker truncating a corrupt segment at start was only a WARN. It is now
// an ERROR, and Health names the topic, partition, file and the offsets that were lost.
func TestCorruptSegmentIsReported(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir, DurabilityFsync)
	if err := EnsureTopics(testCtx(t), newAdmin(t, e.Addr()), TopicSpec{Name: "req", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, e.Addr(), kgo.ProducerLinger(0))
	for i := 0; i < 100; i += 10 { // ten batches of ten records: offsets 0-99
		produceValues(t, cl, "req", i, i+10)
	}
	cl.Close()
	if h := e.Health(); len(h.Corrupt) != 0 {
		t.Fatalf("fresh broker reports corruption: %+v", h.Corrupt)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	seg := filepath.Join(dir, "partitions", "req-0", "0.dat")
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Flip 64 bytes in the middle: inside the fifth or sixth batch, whose CRC then fails.
	for i := len(raw) / 2; i < len(raw)/2+64; i++ {
		raw[i] ^= 0xff
	}
	if err := os.WriteFile(seg, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	e2 := startEmbedded(t, dir, DurabilityFsync)
	h := e2.Health()
	if len(h.Corrupt) != 1 {
		t.Fatalf("Health after damaging %s: %+v", seg, h.Corrupt)
	}
	c := h.Corrupt[0]
	if c.Topic != "req" || c.Partition != 0 || c.File != filepath.Join("partitions", "req-0", "0.dat") || c.Bytes <= 0 {
		t.Errorf("corruption: %+v", c)
	}
	// Whole batches of ten survive before the damage; everything from the damaged batch on is lost.
	if c.FirstLostOffset < 10 || c.FirstLostOffset > 90 || c.FirstLostOffset%10 != 0 || c.LastLostOffset != -1 {
		t.Errorf("lost offsets %d to %d, want a batch boundary and the end of the log", c.FirstLostOffset, c.LastLostOffset)
	}
	if s := c.String(); !strings.Contains(s, "req") || !strings.Contains(s, "lost") {
		t.Errorf("message: %s", s)
	}
	// The records before the damage are all there.
	cons := newClient(t, e2.Addr(), kgo.ConsumeTopics("req"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := pollUntil(t, cons, int(c.FirstLostOffset))
	for i, r := range got[:c.FirstLostOffset] {
		if r.Offset != int64(i) {
			t.Fatalf("record %d has offset %d", i, r.Offset)
		}
	}
}

// Issue 9 row 7, the broker's half: below the free-space floor the broker refuses produce
// requests with KAFKA_STORAGE_ERROR (retriable: clients keep the records and retry) instead of
// accepting a batch it cannot write, and takes them again by itself when space returns.
func TestDiskFullRefusesProduce(t *testing.T) {
	dir := mountTmpfs(t, 64<<20)
	e, err := NewEmbedded(EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", Durability: DurabilityOS, MinFreeBytes: 16 << 20}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := EnsureTopics(testCtx(t), newAdmin(t, e.Addr()), TopicSpec{Name: "req", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, e.Addr(), kgo.ProducerLinger(0), kgo.RecordRetries(0), kgo.RecordDeliveryTimeout(time.Second))
	produceValues(t, cl, "req", 0, 10)

	filler := fillTmpfs(t, dir, 8<<20)
	testutil.WaitFor(t, 10*time.Second, "the broker to see the disk full", func() bool { return e.Health().DiskFull })
	err = cl.ProduceSync(testCtx(t), &kgo.Record{Topic: "req", Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("produce on a full disk: %v, want KAFKA_STORAGE_ERROR", err)
	}
	// A producer that retries (the default) gets its record in once space returns.
	retrying := newClient(t, e.Addr(), kgo.ProducerLinger(0))
	done := make(chan error, 1)
	go func() {
		done <- retrying.ProduceSync(testCtx(t), &kgo.Record{Topic: "req", Value: []byte("later")}).FirstErr()
	}()
	os.Remove(filler)
	if err := <-done; err != nil {
		t.Fatalf("retried produce after space returned: %v", err)
	}
	if e.Health().DiskFull {
		t.Fatal("still disk full")
	}
	cons := newClient(t, e.Addr(), kgo.ConsumeTopics("req"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := pollUntil(t, cons, 11)
	if string(got[10].Value) != "later" {
		t.Fatalf("record 10 is %q", got[10].Value)
	}
}
