package sidecar_test

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

// TestPipelineSurvivesSidecarKill runs the real pipeline over the sidecar's
// Predictor and SIGKILLs tensorflow_model_server while requests stream in:
// every request gets its result, none is dead-lettered.
func TestPipelineSurvivesSidecarKill(t *testing.T) {
	const n = 600
	addrs := testutil.Cluster(t, 3, []string{"inference_requests", "inference_results", "inference_dlq"}).ListenAddrs()

	s := start(t, baseConfig(t, standIn, modelsDir(t)))
	waitReady(t, s)

	st, err := store.Open(store.DefaultConfig(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := pipeline.DefaultConfig()
	cfg.RetryBackoff, cfg.RetryBackoffMax, cfg.RetryAttempts = 5*time.Millisecond, 50*time.Millisecond, 3
	cfg.ProbeInterval = 50 * time.Millisecond
	cfg.ShutdownTimeout = 20 * time.Second
	p, err := pipeline.New(cfg, nil, []kgo.Opt{kgo.SeedBrokers(addrs...)}, s.Predictor(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-pdone:
		case <-time.After(60 * time.Second):
			t.Error("pipeline did not stop")
		}
	})

	results := consume(t, addrs, "inference_results")
	dlq := consume(t, addrs, "inference_dlq")
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	var sent atomic.Int64
	go func() {
		g := demo.NewGenerator(7)
		for i := range n {
			r, _ := g.Reading()
			body, _ := json.Marshal(map[string]any{"request_id": "r-" + strconv.Itoa(i), "features": r})
			if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: "inference_requests", Key: []byte(strconv.Itoa(i % 7)), Value: body}).FirstErr(); err != nil {
				t.Error(err)
				return
			}
			sent.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	testutil.WaitFor(t, 60*time.Second, "first results", func() bool { return results.count() >= 150 })
	pid := s.Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed tensorflow_model_server (pid %d) after %d results, %d sent", pid, results.count(), sent.Load())
	testutil.WaitFor(t, 120*time.Second, "every result", func() bool { return results.count() >= n })
	ids := map[string]bool{}
	for _, v := range results.values() {
		var res struct {
			RequestID    string `json:"request_id"`
			ModelVersion int64  `json:"model_version"`
		}
		if err := json.Unmarshal(v, &res); err != nil {
			t.Fatal(err)
		}
		ids[res.RequestID] = true
	}
	for i := range n {
		if !ids["r-"+strconv.Itoa(i)] {
			t.Errorf("no result for r-%d", i)
		}
	}
	if d := dlq.count(); d != 0 {
		t.Fatalf("%d requests dead-lettered: %s", d, dlq.values()[0])
	}
	if st := s.Status(); st.Restarts < 1 {
		t.Fatalf("sidecar was not restarted: %+v", st)
	}
}

type topicReader struct {
	mu   sync.Mutex
	vals [][]byte
}

func (r *topicReader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.vals)
}

func (r *topicReader) values() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.vals...)
}

func consume(t testing.TB, addrs []string, topic string) *topicReader {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	r := &topicReader{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			r.mu.Lock()
			for _, rec := range fs.Records() {
				r.vals = append(r.vals, rec.Value)
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cl.Close()
	})
	return r
}

// TestFleetOverProcesses: two tensorflow_model_server stand-ins behind a
// Fleet; one is SIGKILLed while calls flow, and no call fails.
func TestFleetOverProcesses(t *testing.T) {
	models := modelsDir(t)
	var addrs []string
	var cmds []*exec.Cmd
	for range 2 {
		port := freePort(t)
		cmd := exec.Command(standIn, "--port="+strconv.Itoa(port), "--model_name="+demo.Name, "--model_base_path="+filepath.Join(models, demo.Name))
		cmd.Stderr = testutil.Writer(t)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		cmds = append(cmds, cmd)
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	fc := tfserving.DefaultFleetConfig(addrs)
	fc.HealthInterval, fc.HealthModel = 100*time.Millisecond, demo.Name
	f, err := tfserving.NewFleet(fc, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	testutil.WaitFor(t, 60*time.Second, "both endpoints serving", func() bool {
		eps := f.Endpoints()
		for _, ep := range eps {
			if !ep.Healthy || !ep.CheckedAt.After(ep.LastErrorAt) {
				return false
			}
		}
		return true
	})

	var ok, failed atomic.Int64
	var failure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := demoInput(int64(w), 4)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.Predict(context.Background(), model.Spec{Name: demo.Name}, in); err != nil {
					failed.Add(1)
					failure.Store(err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	testutil.WaitFor(t, 30*time.Second, "traffic on both", func() bool {
		eps := f.Endpoints()
		return eps[0].Requests > 50 && eps[1].Requests > 50
	})
	if err := cmds[0].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	before := ok.Load()
	testutil.WaitFor(t, 30*time.Second, "traffic after the kill", func() bool { return ok.Load() > before+300 })
	close(stop)
	wg.Wait()
	eps := f.Endpoints()
	if eps[0].Healthy || !eps[1].Healthy || eps[0].LastError == "" {
		t.Fatalf("endpoints after the kill: %+v", eps)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed, e.g. %v", n, n+ok.Load(), failure.Load())
	}
	t.Logf("%d calls, none failed; endpoints %+v", ok.Load(), eps)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
