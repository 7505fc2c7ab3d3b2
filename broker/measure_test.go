package broker

// Measurements behind docs/broker.md. They take minutes and write about 1 GiB,
// so they run only with INFERGATE_BROKER_MEASURE=1:
//
//	INFERGATE_BROKER_MEASURE=1 go test -run 'TestMeasure' -v -timeout 30m ./broker/
//
// Timing assertions have no place in tests; these only report numbers.

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sys/unix"
)

const measureEnv = "INFERGATE_BROKER_MEASURE"

func skipUnlessMeasure(t *testing.T) {
	if os.Getenv(measureEnv) != "1" {
		t.Skipf("measurement: set %s=1 to run", measureEnv)
	}
}

// requestValue is a request record as the pipeline sees it: 16 features.
func requestValue(r *rand.Rand, i int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"request_id":"r-%d","features":[`, i)
	for j := range 16 {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(r.Float64(), 'f', 6, 64))
	}
	b.WriteString("]}")
	return []byte(b.String())
}

type latencies []time.Duration

func (l latencies) q(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func (l latencies) String() string {
	return fmt.Sprintf("p50 %s p99 %s max %s", l.q(0.5).Round(10*time.Microsecond), l.q(0.99).Round(10*time.Microsecond), l.q(1).Round(10*time.Microsecond))
}

func measureBroker(t *testing.T, d Durability, compression string) (*kgo.Client, func()) {
	t.Helper()
	dir, err := os.MkdirTemp(measureDir(t), "produce-")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEmbedded(EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", Durability: d}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cc := ClientConfig{Brokers: []string{e.Addr()}, Compression: compression}
	opts, err := cc.Opts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(context.Background(), kadm.NewClient(cl), DefaultTopics("req", "res", "dlq", 6)...); err != nil {
		t.Fatal(err)
	}
	return cl, func() { cl.Close(); e.Close(); os.RemoveAll(dir) }
}

// measureDir is where data dirs go: INFERGATE_BROKER_MEASURE_DIR, so the
// disk under test can be chosen, or the test's temp dir.
func measureDir(t *testing.T) string {
	if d := os.Getenv(measureEnv + "_DIR"); d != "" {
		return d
	}
	return t.TempDir()
}

func TestMeasureProduce(t *testing.T) {
	skipUnlessMeasure(t)
	t.Logf("GOMAXPROCS %d, record ~%d bytes", runtime.GOMAXPROCS(0), len(requestValue(rand.New(rand.NewPCG(1, 1)), 1)))

	const reps = 3 // this VM's disk has latency spikes; report every run

	// Throughput: produce as fast as the client can, async, default linger.
	for rep := range reps {
		for _, d := range []Durability{DurabilityOS, DurabilityFsync} {
			for _, comp := range []string{CompressionGzip, CompressionLz4, CompressionNone} {
				measureThroughput(t, rep, d, comp)
			}
		}
	}

	// Latency: open-loop at a fixed rate, each record timed from Produce
	// to its acknowledgement.
	for rep := range reps {
		for _, rate := range []int{1_000, 5_000} {
			for _, d := range []Durability{DurabilityOS, DurabilityFsync} {
				cl, done := measureBroker(t, d, DefaultCompression)
				lat := openLoop(t, cl, rate, 10*time.Second)
				t.Logf("RATE rep=%d %5d rec/s durability=%-5s compression=%s: %s (%d records)", rep, rate, d, DefaultCompression, lat, len(lat))
				done()
			}
		}
	}

	// One record at a time, waiting for each ack: the cost of one fsync.
	for rep := range reps {
		for _, d := range []Durability{DurabilityOS, DurabilityFsync} {
			cl, done := measureBroker(t, d, DefaultCompression)
			r := rand.New(rand.NewPCG(3, 3))
			var lat latencies
			for i := range 3000 {
				s := time.Now()
				if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "req", Value: requestValue(r, i)}).FirstErr(); err != nil {
					t.Fatal(err)
				}
				lat = append(lat, time.Since(s))
			}
			t.Logf("SYNC rep=%d durability=%-5s one record per round trip: %s", rep, d, lat)
			done()
		}
	}
}

func measureThroughput(t *testing.T, rep int, d Durability, comp string) {
	cl, done := measureBroker(t, d, comp)
	defer done()
	const n = 1_000_000
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([][]byte, n)
	var bytes int64
	for i := range vals {
		vals[i] = requestValue(r, i)
		bytes += int64(len(vals[i]))
	}
	lat := make(latencies, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var cpu0, cpu1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &cpu0)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		sent := time.Now()
		cl.Produce(context.Background(), &kgo.Record{Topic: "req", Key: []byte(strconv.Itoa(i)), Value: vals[i]}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
			}
			lat[i] = time.Since(sent)
			wg.Done()
		})
	}
	wg.Wait()
	el := time.Since(start)
	unix.Getrusage(unix.RUSAGE_SELF, &cpu1)
	cpu := time.Duration(cpu1.Utime.Nano() + cpu1.Stime.Nano() - cpu0.Utime.Nano() - cpu0.Stime.Nano())
	disk := dirSize(t, cl)
	t.Logf("THROUGHPUT rep=%d durability=%-5s compression=%-4s %7.0f rec/s %5.1f MB/s (uncompressed), on disk %5.1f MB for %.1f MB, process CPU %.2f cores, latency at saturation %s, failed %d",
		rep, d, comp, float64(n)/el.Seconds(), float64(bytes)/el.Seconds()/1e6, float64(disk)/1e6, float64(bytes)/1e6, cpu.Seconds()/el.Seconds(), lat, failed.Load())
}

func openLoop(t *testing.T, cl *kgo.Client, rate int, dur time.Duration) latencies {
	r := rand.New(rand.NewPCG(4, 4))
	n := rate * int(dur.Seconds())
	lat := make(latencies, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		// Send each record at its scheduled time, whatever the broker does.
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		sent := time.Now()
		cl.Produce(context.Background(), &kgo.Record{Topic: "req", Key: []byte(strconv.Itoa(i)), Value: requestValue(r, i)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
			lat[i] = time.Since(sent)
			wg.Done()
		})
	}
	wg.Wait()
	return lat
}

func dirSize(t *testing.T, cl *kgo.Client) int64 {
	// The broker's data dir is the only one under measureDir in use; sum
	// segment bytes through the admin API instead of guessing paths.
	adm := kadm.NewClient(cl)
	ld, err := adm.DescribeAllLogDirs(context.Background(), nil)
	if err != nil {
		t.Fatalf("DescribeAllLogDirs: %v", err)
	}
	var size int64
	ld.Each(func(d kadm.DescribedLogDir) {
		d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
			if p.Topic == "req" {
				size += p.Size
			}
		})
	})
	return size
}

// TestMeasureRestart fills a data dir with ~1 GiB, then measures how long a
// broker process takes to open it and its peak RSS: after a clean close and
// after SIGKILL, with the files in the page cache (warm) and evicted from it
// (cold, as after a reboot).
func TestMeasureRestart(t *testing.T) {
	skipUnlessMeasure(t)
	size := int64(1 << 30)
	if s := os.Getenv(measureEnv + "_BYTES"); s != "" {
		size, _ = strconv.ParseInt(s, 10, 64)
	}
	for _, end := range []string{"close", "kill"} {
		dir, err := os.MkdirTemp(measureDir(t), "restart-")
		if err != nil {
			t.Fatal(err)
		}
		fill := runMeasureChild(t, "measure-fill", dir, end, size)
		t.Logf("FILL end=%s: %s, data dir %.0f MiB", end, fill, float64(duSize(t, dir))/(1<<20))
		// A restart that closes cleanly writes a snapshot, which would
		// hide the crash case; "noclose" exits without closing.
		warm := runMeasureChild(t, "measure-open", dir, "noclose", 0)
		evict(t, dir)
		cold := runMeasureChild(t, "measure-open", dir, "noclose", 0)
		t.Logf("OPEN after %-5s warm: %s", end, warm)
		t.Logf("OPEN after %-5s cold: %s", end, cold)
		closed := runMeasureChild(t, "measure-open", dir, "close", 0)
		t.Logf("OPEN after %-5s then close: %s", end, closed)
		os.RemoveAll(dir)
	}
}

// evict drops the data dir's files from the page cache (what a reboot does)
// without needing root's drop_caches.
func evict(t *testing.T, dir string) {
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		unix.Fdatasync(int(f.Fd()))
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func duSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if fi, err := de.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// runMeasureChild runs a measuring child and returns its "RESULT" line; with
// end "kill" it SIGKILLs the child once it reports.
func runMeasureChild(t *testing.T, mode, dir, end string, size int64) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childEnv+"_DIR="+dir, childEnv+"_END="+end, childEnv+"_BYTES="+strconv.FormatInt(size, 10))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var result string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if r, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			result = r
			if end == "kill" {
				cmd.Process.Kill()
			}
			break
		}
	}
	go func() { _, _ = bufio.NewReader(out).WriteTo(discard{}) }()
	cmd.Wait()
	if result == "" {
		t.Fatalf("child %s gave no result", mode)
	}
	return result
}

func peakRSS() string { return procStatus("VmHWM:") }

// procStatus returns a memory line of /proc/self/status in MiB.
func procStatus(key string) string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return fmt.Sprintf("%d MiB", kb/1024)
		}
	}
	return "?"
}

func childMeasure(mode string) error {
	dir, end := os.Getenv(childEnv+"_DIR"), os.Getenv(childEnv+"_END")
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := time.Now()
	e, err := NewEmbedded(EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", Durability: DurabilityOS}, logger)
	if err != nil {
		return err
	}
	opened := time.Since(start)

	if mode == "measure-open" {
		// Ready means a client can read the newest record back.
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()))
		if err != nil {
			return err
		}
		ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "req")
		if err != nil {
			return err
		}
		var total int64
		ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
		cl.Close()
		ready := time.Since(start)
		peak := peakRSS()
		runtime.GC()
		debug.FreeOSMemory()
		res := fmt.Sprintf("open %s, first admin answer %s, %d records, peak RSS %s, RSS after GC %s",
			opened.Round(time.Millisecond), ready.Round(time.Millisecond), total, peak, procStatus("VmRSS:"))
		if end == "close" {
			s := time.Now()
			if err := e.Close(); err != nil {
				return err
			}
			res += fmt.Sprintf(", clean close %s", time.Since(s).Round(time.Millisecond))
		}
		fmt.Println("RESULT " + res)
		if end == "noclose" {
			os.Exit(0) // as a crash would: no snapshot
		}
		return nil
	}

	// measure-fill: ~size bytes of 1 KiB incompressible values.
	size, _ := strconv.ParseInt(os.Getenv(childEnv+"_BYTES"), 10, 64)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return err
	}
	ctx := context.Background()
	// The default topic layout, without the byte limit, so all the data stays.
	spec := DefaultTopics("req", "res", "dlq", 6)[0]
	spec.RetentionBytes = -1
	if seg := os.Getenv(childEnv + "_SEGMENT"); seg != "" {
		spec.Configs["segment.bytes"] = &seg
	}
	if err := EnsureTopics(ctx, kadm.NewClient(cl), spec); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(5, 5))
	val := make([]byte, 1024)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	n := 0
	for written := int64(0); written < size; written += int64(len(val)) {
		v := make([]byte, len(val))
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: "req", Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
			wg.Done()
		})
		n++
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	took := time.Since(start)
	cl.Close()
	res := fmt.Sprintf("%d records of 1 KiB in %s, peak RSS %s", n, took.Round(time.Millisecond), peakRSS())
	if end == "close" {
		s := time.Now()
		if err := e.Close(); err != nil {
			return err
		}
		res += fmt.Sprintf(", clean close %s", time.Since(s).Round(time.Millisecond))
		fmt.Println("RESULT " + res)
		return nil
	}
	fmt.Println("RESULT " + res)
	select {} // wait for SIGKILL
}
