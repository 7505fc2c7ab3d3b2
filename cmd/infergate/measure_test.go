package main

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMeasureRestart measures how long the whole appliance takes to be ready
// again with about 1 GiB retained in its broker, after a clean stop and after
// SIGKILL, and the process's peak memory (VmHWM). Numbers go to
// docs/operations.md. It is a measurement, not a check: run it with
//
//	INFERGATE_MEASURE=1 go test ./cmd/infergate -run TestMeasureRestart -v -timeout 30m
//
// (INFERGATE_MEASURE_BYTES changes the amount, INFERGATE_MEASURE_DIR the disk).
func TestMeasureRestart(t *testing.T) {
	if os.Getenv("INFERGATE_MEASURE") == "" {
		t.Skip("measurement; set INFERGATE_MEASURE=1")
	}
	total := int64(1 << 30)
	if v := os.Getenv("INFERGATE_MEASURE_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		total = n
	}
	base := t.TempDir()
	if d := os.Getenv("INFERGATE_MEASURE_DIR"); d != "" {
		var err error
		if base, err = os.MkdirTemp(d, "measure-"); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(base)
	}
	dataDir := filepath.Join(base, "data")
	port := freePort(t)
	a := startAppliance(t, dataDir, port)

	// The retained data is a topic of its own, so the pipeline has nothing
	// to do with it: what is measured is the broker's replay at start-up,
	// plus the rest of the appliance.
	cl := client(t, a.broker, kgo.DefaultProduceTopic("bulk"), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(20000))
	adm := kadm.NewClient(cl)
	// Segments sized as the appliance sizes its own topics' (broker's
	// rule: an eighth of a partition's budget, 1 to 64 MiB): after a clean
	// stop the broker holds one segment per partition at a time.
	segment := strconv.FormatInt(min(max(total/6/8, 1<<20), 64<<20), 10)
	configs := map[string]*string{"retention.ms": ptr("-1"), "retention.bytes": ptr("-1"), "segment.bytes": &segment}
	if _, err := adm.CreateTopic(context.Background(), 6, -1, configs, "bulk"); err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 1024)
	rand.Read(value)
	start := time.Now()
	n := total / int64(len(value))
	for i := int64(0); i < n; i++ {
		cl.Produce(context.Background(), &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %d MiB in %s (segments of %s bytes)", total>>20, time.Since(start).Round(time.Millisecond), segment)
	cl.Close()

	restart := func(how string) {
		if how == "SIGKILL" {
			a.kill()
		} else {
			a.stop()
		}
		dropCache(t, dataDir)
		began := time.Now()
		a = startAppliance(t, dataDir, port)
		ready := time.Since(began)
		t.Logf("after %s: ready in %s (cold page cache), peak RSS %s, broker data %d MiB", how, ready.Round(time.Millisecond), peakRSS(t, a), duMiB(filepath.Join(dataDir, "broker")))
	}
	// A crash right after the writes (no snapshot), a clean stop (snapshot),
	// and a crash after a few more writes (the snapshot is stale).
	restart("SIGKILL")
	restart("clean stop")
	more := client(t, a.broker, kgo.DefaultProduceTopic("bulk"))
	for range 1000 {
		if err := more.ProduceSync(context.Background(), &kgo.Record{Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	more.Close()
	restart("SIGKILL")
	a.stop()
}

func ptr(s string) *string { return &s }

// peakRSS is the process's VmHWM from /proc.
func peakRSS(t *testing.T, a *proc) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(a.cmd.Process.Pid) + "/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// dropCache evicts the data dir's files from the page cache, as a reboot
// would, where the kernel allows it (posix_fadvise DONTNEED via dd).
func dropCache(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		_ = f.Sync() // dirty pages are not dropped
		fadviseDontNeed(f)
		return nil
	})
}

// duMiB is the size of the files under dir.
func duMiB(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n >> 20
}
