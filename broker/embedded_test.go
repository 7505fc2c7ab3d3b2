package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
)

func TestEmbeddedProduceConsume(t *testing.T) {
	e := startEmbedded(t, t.TempDir(), DurabilityOS)
	adm := newAdmin(t, e.Addr())
	if err := EnsureTopics(testCtx(t), adm, DefaultTopics("req", "res", "dlq", 3)...); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	produceValues(t, newClient(t, e.Addr()), "req", 0, n)

	cons := newClient(t, e.Addr(), kgo.ConsumeTopics("req"), kgo.ConsumerGroup("g"))
	got := pollUntil(t, cons, n)
	seen := make(map[string]bool)
	for _, r := range got {
		seen[string(r.Value)] = true
	}
	for i := range n {
		if !seen[fmt.Sprintf("v%d", i)] {
			t.Fatalf("record v%d not consumed", i)
		}
	}
}

func TestEmbeddedRestartKeepsTopicsRecordsAndOffsets(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir, DurabilityOS)
	adm := newAdmin(t, e.Addr())
	if err := EnsureTopics(testCtx(t), adm, DefaultTopics("req", "res", "dlq", 4)...); err != nil {
		t.Fatal(err)
	}
	const n = 500
	produceValues(t, newClient(t, e.Addr()), "req", 0, n)

	// Commit offset 100 on every partition, as a consumer that processed
	// the first 100 records of each would.
	offsets := make(kadm.Offsets)
	for p := range int32(4) {
		offsets.Add(kadm.Offset{Topic: "req", Partition: p, At: 100, LeaderEpoch: -1})
	}
	if resp, err := adm.CommitOffsets(testCtx(t), "g", offsets); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v %+v", err, resp.Error(), resp)
	}
	_, endsBefore := endOffsets(t, adm, "req")
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(); err != nil { // idempotent
		t.Fatalf("second Close: %v", err)
	}

	e2 := startEmbedded(t, dir, DurabilityOS)
	adm2 := newAdmin(t, e2.Addr())
	topics, err := adm2.ListTopics(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := topics.Names(); strings.Join(got, ",") != "dlq,req,res" {
		t.Fatalf("topics after restart: %v", got)
	}
	if p := len(topics["req"].Partitions); p != 4 {
		t.Fatalf("req has %d partitions after restart, want 4", p)
	}
	sum, endsAfter := endOffsets(t, adm2, "req")
	if sum != n || fmt.Sprint(endsAfter) != fmt.Sprint(endsBefore) {
		t.Fatalf("end offsets after restart %v (sum %d), before %v", endsAfter, sum, endsBefore)
	}
	fetched, err := adm2.FetchOffsets(testCtx(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(4) {
		o, ok := fetched.Lookup("req", p)
		if !ok || o.At != 100 {
			t.Fatalf("committed offset of req/%d after restart: %+v (found %v), want 100", p, o, ok)
		}
	}
	// Retention configs survive, and EnsureTopics on restart is a no-op.
	if err := EnsureTopics(testCtx(t), adm2, DefaultTopics("req", "res", "dlq", 4)...); err != nil {
		t.Fatal(err)
	}
	assertTopicConfig(t, adm2, "req", "retention.bytes", fmt.Sprint(DefaultRequestsTopicBytes/4))

	// The group resumes at its commit: it sees exactly the records after 100.
	cons := newClient(t, e2.Addr(), kgo.ConsumeTopics("req"), kgo.ConsumerGroup("g"))
	want := n - 4*100
	got := pollUntil(t, cons, want)
	if len(got) != want {
		t.Fatalf("resumed group got %d records, want %d", len(got), want)
	}
	for _, r := range got {
		if r.Offset < 100 {
			t.Fatalf("resumed group got %s/%d@%d, below its commit", r.Topic, r.Partition, r.Offset)
		}
	}
}

func TestEmbeddedRunStopsOnCancel(t *testing.T) {
	e, err := NewEmbedded(EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Closed: the port is free again and a second Close is a no-op.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", e.ListenAddr())
	if err != nil {
		t.Fatalf("port still taken after Run returned: %v", err)
	}
	ln.Close()
}

func TestEmbeddedPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = NewEmbedded(EmbeddedConfig{DataDir: t.TempDir(), Listen: addr}, testutil.Logger(t))
	if err == nil {
		t.Fatal("NewEmbedded on a busy port succeeded")
	}
	for _, want := range []string{"broker.listen", "--broker-listen", addr, "already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v does not wrap EADDRINUSE", err)
	}
}

func TestEmbeddedDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	startEmbedded(t, dir, DurabilityOS)
	_, err := NewEmbedded(EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0"}, testutil.Logger(t))
	if !errors.Is(err, ErrDataDirLocked) || !strings.Contains(err.Error(), "broker.data_dir") {
		t.Fatalf("second broker on the same data dir: %v", err)
	}
}

func TestEmbeddedDataDirNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes anywhere")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	_, err := NewEmbedded(EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0"}, testutil.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "broker.data_dir") {
		t.Fatalf("unwritable data dir: %v", err)
	}
}

func TestEmbeddedConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  EmbeddedConfig
		want string // substring of the error, "" for valid
	}{
		{"defaults", EmbeddedConfig{DataDir: "d"}, ""},
		{"no data dir", EmbeddedConfig{}, "broker.data_dir"},
		{"bad listen", EmbeddedConfig{DataDir: "d", Listen: "localhost"}, "broker.listen"},
		{"bad port", EmbeddedConfig{DataDir: "d", Listen: "127.0.0.1:99999"}, "broker.listen"},
		{"all interfaces needs advertise", EmbeddedConfig{DataDir: "d", Listen: "0.0.0.0:9092"}, "broker.advertise"},
		{"empty host needs advertise", EmbeddedConfig{DataDir: "d", Listen: ":9092"}, "broker.advertise"},
		{"all interfaces with advertise", EmbeddedConfig{DataDir: "d", Listen: "0.0.0.0:9092", Advertise: "10.0.0.5:9092"}, ""},
		{"advertise bare host", EmbeddedConfig{DataDir: "d", Listen: "[::]:0", Advertise: "gateway.local"}, ""},
		{"advertise no host", EmbeddedConfig{DataDir: "d", Advertise: ":9092"}, "broker.advertise"},
		{"durability", EmbeddedConfig{DataDir: "d", Durability: "always"}, "broker.durability"},
		{"durability memory", EmbeddedConfig{DataDir: "d", Durability: DurabilityMemory}, ""},
		{"log level", EmbeddedConfig{DataDir: "d", LogLevel: "loud"}, "broker.log_level"},
		{"retention interval", EmbeddedConfig{DataDir: "d", RetentionCheckInterval: time.Millisecond}, "broker.retention_check_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	c := EmbeddedConfig{DataDir: "d"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.Durability != DefaultDurability || c.RetentionCheckInterval != DefaultRetentionCheckInterval {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

// TestEmbeddedAdvertise binds all interfaces and advertises a name: clients
// bootstrap through it and metadata hands it back.
func TestEmbeddedAdvertise(t *testing.T) {
	e, err := NewEmbedded(EmbeddedConfig{DataDir: t.TempDir(), Listen: "0.0.0.0:0", Advertise: "localhost"}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	_, port, _ := net.SplitHostPort(e.ListenAddr())
	if want := "localhost:" + port; e.Addr() != want {
		t.Fatalf("Addr() = %q, want %q", e.Addr(), want)
	}
	adm := newAdmin(t, e.Addr())
	brokers, err := adm.ListBrokers(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(brokers) != 1 || brokers[0].Host != "localhost" || fmt.Sprint(brokers[0].Port) != port {
		t.Fatalf("metadata brokers %+v, want localhost:%s", brokers, port)
	}
	if err := EnsureTopics(testCtx(t), adm, TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produceValues(t, newClient(t, e.Addr()), "t", 0, 10)
}

// TestRetentionRunsAfterRestart: kfake arms its cleaner only when topic
// configs change while it runs; our own timer must delete expired records of
// topics loaded from the data dir.
func TestRetentionRunsAfterRestart(t *testing.T) {
	dir := t.TempDir()
	e, err := NewEmbedded(EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", RetentionCheckInterval: time.Hour}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	adm := newAdmin(t, e.Addr())
	spec := TopicSpec{Name: "old", Partitions: 1, RetentionMs: time.Hour.Milliseconds()}
	if err := EnsureTopics(testCtx(t), adm, spec); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, e.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	old := time.Now().Add(-48 * time.Hour)
	for i := range 3 {
		r := &kgo.Record{Topic: "old", Value: []byte(fmt.Sprint(i)), Timestamp: old}
		if err := cl.ProduceSync(testCtx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e2, err := NewEmbedded(EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", RetentionCheckInterval: time.Second}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e2.Close() })
	adm2 := newAdmin(t, e2.Addr())
	testutil.WaitFor(t, 20*time.Second, "retention to delete the expired records", func() bool {
		starts, err := adm2.ListStartOffsets(testCtx(t), "old")
		if err != nil {
			return false
		}
		s, ok := starts.Lookup("old", 0)
		return ok && s.Offset == 3
	})
	testutil.WaitFor(t, 5*time.Second, "the segment file to be deleted", func() bool {
		segs, _ := filepath.Glob(filepath.Join(dir, "partitions", "old-0", "*.dat"))
		return len(segs) == 0
	})
}

func assertTopicConfig(t *testing.T, adm *kadm.Client, topic, key, want string) {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(testCtx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe %s: %v %v", topic, err, rc.Err)
	}
	var keys []string
	for _, c := range rc.Configs {
		if c.Key == key {
			if c.MaybeValue() != want {
				t.Fatalf("%s %s = %q, want %q", topic, key, c.MaybeValue(), want)
			}
			return
		}
		keys = append(keys, c.Key)
	}
	sort.Strings(keys)
	t.Fatalf("%s has no config %s (has %v)", topic, key, keys)
}

// With durability memory the broker serves as usual and writes nothing but
// its lock file to the data dir, so a restart starts empty. This is what
// runs on Windows (DefaultDurabilityFor), tested here on Linux.
func TestEmbeddedMemoryWritesNothing(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir, DurabilityMemory)
	adm := newAdmin(t, e.Addr())
	if err := EnsureTopics(testCtx(t), adm, DefaultTopics("req", "res", "dlq", 2)...); err != nil {
		t.Fatal(err)
	}
	const n = 200
	produceValues(t, newClient(t, e.Addr()), "req", 0, n)
	if got := pollUntil(t, newClient(t, e.Addr(), kgo.ConsumeTopics("req"), kgo.ConsumerGroup("g")), n); len(got) < n {
		t.Fatalf("consumed %d of %d", len(got), n)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		if de.Name() != lockFileName {
			t.Errorf("durability memory wrote %s to the data dir", de.Name())
		}
	}
	e2 := startEmbedded(t, dir, DurabilityMemory)
	topics, err := newAdmin(t, e2.Addr()).ListTopics(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 0 {
		t.Errorf("topics after a restart in memory: %v, want none", topics.Names())
	}
}

// On Windows the embedded broker cannot persist (SupportedOn says why), so
// memory is the default there and the others are refused with the reason;
// elsewhere nothing changes.
func TestDurabilityOnWindows(t *testing.T) {
	if d := DefaultDurabilityFor("windows"); d != DurabilityMemory {
		t.Errorf("default on windows %q, want %q", d, DurabilityMemory)
	}
	for _, goos := range []string{"linux", "darwin"} {
		if d := DefaultDurabilityFor(goos); d != DefaultDurability {
			t.Errorf("default on %s %q, want %q", goos, d, DefaultDurability)
		}
	}
	for _, d := range []Durability{DurabilityFsync, DurabilityOS} {
		err := d.SupportedOn("windows")
		if err == nil || !strings.Contains(err.Error(), "cannot work on Windows") || !strings.Contains(err.Error(), `"memory"`) || !strings.Contains(err.Error(), "broker.mode: external") {
			t.Errorf("%s on windows: %v, want the reason and both ways out", d, err)
		}
		if err := d.SupportedOn("linux"); err != nil {
			t.Errorf("%s on linux: %v", d, err)
		}
	}
	if err := DurabilityMemory.SupportedOn("windows"); err != nil {
		t.Errorf("memory on windows: %v", err)
	}
}
