package sidecar_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/sidecar"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/proto/servingpb"
)

var _ pipeline.Predictor = (*sidecar.Predictor)(nil)

// modelsDir makes a model repository with the demo model as version 1.
func modelsDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// addVersion copies the demo model in as another version (written aside
// and renamed, as TF Serving needs); corrupt writes a model that fails to
// load instead.
func addVersion(t testing.TB, base string, v int, corrupt bool) {
	t.Helper()
	data := demo.ONNX
	if corrupt {
		data = []byte("not an onnx model")
	}
	tmp, err := os.MkdirTemp(base, ".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(base, strconv.Itoa(v))); err != nil {
		t.Fatal(err)
	}
}

// baseConfig is a supervisor config with test-sized timings.
func baseConfig(t testing.TB, binary, models string) sidecar.Config {
	cfg := sidecar.DefaultConfig()
	cfg.Binary = binary
	cfg.DataDir = t.TempDir()
	cfg.Models = []tfserving.ModelConfig{{Name: demo.Name, BasePath: filepath.Join(models, demo.Name)}}
	cfg.ReadyPoll = 50 * time.Millisecond
	cfg.HealthInterval = 200 * time.Millisecond
	cfg.ReadyTimeout = time.Minute
	cfg.GracePeriod = 5 * time.Second
	cfg.Backoff = sidecar.Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	return cfg
}

// start runs a supervisor until the test ends; the cleanup checks that Run
// returned without error and left no process behind.
func start(t testing.TB, cfg sidecar.Config) *sidecar.Supervisor {
	t.Helper()
	s, err := sidecar.New(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		pid := s.Status().PID
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return 30s after cancel")
		}
		if pid != 0 && alive(pid) {
			t.Errorf("pid %d still alive after Run returned", pid)
		}
		if st := s.Status(); st.State != sidecar.StateStopped || st.PID != 0 {
			t.Errorf("after Run: %+v", st)
		}
	})
	return s
}

func waitReady(t testing.TB, s *sidecar.Supervisor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatalf("%v\nlog tail:\n%s", err, strings.Join(s.LogTail(30), "\n"))
	}
}

// alive reports whether pid is a live process (a zombie counts as dead: it
// only waits for its reaper).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) STATE ...; comm may contain spaces, so cut at the last ')'.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func demoInput(seed int64, rows int) map[string]*tensor.Tensor {
	g := demo.NewGenerator(seed)
	data := make([]float32, 0, rows*demo.Channels)
	for range rows {
		r, _ := g.Reading()
		data = append(data, r...)
	}
	return map[string]*tensor.Tensor{demo.InputName: {DType: tensor.Float, Shape: []int64{int64(rows), demo.Channels}, Data: data}}
}

func TestConfigValidate(t *testing.T) {
	good := sidecar.DefaultConfig()
	good.DataDir, good.Models = "/tmp/x", []tfserving.ModelConfig{{Name: "m", BasePath: "/m"}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		want string
		mod  func(*sidecar.Config)
	}{
		{"DataDir", func(c *sidecar.Config) { c.DataDir = "" }},
		{"Models is empty", func(c *sidecar.Config) { c.Models = nil }},
		{"Name is empty", func(c *sidecar.Config) { c.Models[0].Name = "" }},
		{"twice", func(c *sidecar.Config) { c.Models = append(c.Models, c.Models[0]) }},
		{"BasePath", func(c *sidecar.Config) { c.Models[0].BasePath = "" }},
		{"only one of", func(c *sidecar.Config) { c.Models[0].Policy = tfserving.VersionPolicy{Latest: 2, All: true} }},
		{"positive", func(c *sidecar.Config) { c.Models[0].Policy.Specific = []int64{0} }},
		{"GRPCPort", func(c *sidecar.Config) { c.GRPCPort = 70000 }},
		{"RESTPort", func(c *sidecar.Config) { c.RESTPort = -2 }},
		{"must differ", func(c *sidecar.Config) { c.GRPCPort, c.RESTPort = 9000, 9000 }},
		{"use GRPCPort", func(c *sidecar.Config) { c.ExtraFlags = []string{"--port=1"} }},
		{"use Models", func(c *sidecar.Config) { c.ExtraFlags = []string{"--model_config_file=/x"} }},
		{"not a flag", func(c *sidecar.Config) { c.ExtraFlags = []string{"enable_model_warmup"} }},
		{"Backoff", func(c *sidecar.Config) { c.Backoff = sidecar.Backoff{Initial: time.Minute, Max: time.Second} }},
		{"CrashLoop", func(c *sidecar.Config) { c.CrashLoop.Restarts = -1 }},
		{"must be positive", func(c *sidecar.Config) { c.ReadyTimeout = 0 }},
		{"FileSystemPollSeconds", func(c *sidecar.Config) { c.FileSystemPollSeconds = 0 }},
		{"LogMaxBytes", func(c *sidecar.Config) { c.LogMaxBytes = 10 }},
		{"MonitoringPath", func(c *sidecar.Config) { c.MonitoringPath = "metrics" }},
		{"RESTPort is -1", func(c *sidecar.Config) { c.MonitoringPath, c.RESTPort = "/m", -1 }},
		{"AllowedBatchSizes", func(c *sidecar.Config) {
			c.Batching = &tfserving.BatchingConfig{MaxBatchSize: 64, AllowedBatchSizes: []int64{32, 16, 64}}
		}},
		{"maximum batch size (64)", func(c *sidecar.Config) {
			c.Batching = &tfserving.BatchingConfig{MaxBatchSize: 64, AllowedBatchSizes: []int64{16, 32}}
		}},
	} {
		c := good
		c.Models = slices.Clone(good.Models)
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %q, got %v", tc.want, err)
		}
	}
}

func TestBinaryNotFound(t *testing.T) {
	cfg := sidecar.DefaultConfig()
	cfg.DataDir, cfg.Models = t.TempDir(), []tfserving.ModelConfig{{Name: "m", BasePath: "/m"}}
	t.Setenv("PATH", t.TempDir())
	_, err := sidecar.New(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "--tfserving-bin") || !strings.Contains(err.Error(), "not found on PATH") {
		t.Fatalf("want a not-found error naming --tfserving-bin, got %v", err)
	}
	cfg.Binary = "/nonexistent/tensorflow_model_server"
	if _, err := sidecar.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "--tfserving-bin") {
		t.Fatalf("want an error naming --tfserving-bin, got %v", err)
	}
	// Found on PATH when Binary is empty.
	t.Setenv("PATH", filepath.Dir(standIn))
	s, err := sidecar.New(cfg, nil)
	if err == nil {
		t.Fatalf("explicit Binary must win over PATH, got %s", s.Binary())
	}
	cfg.Binary = ""
	s, err = sidecar.New(cfg, nil)
	if err != nil || s.Binary() != standIn {
		t.Fatalf("PATH lookup: %v %v", s, err)
	}
}

// TestReadyPredictFiles starts the stand-in, checks readiness, a
// prediction, the files and flags TF gets, the REST port and the log tail.
func TestReadyPredictFiles(t *testing.T) {
	models := modelsDir(t)
	cfg := baseConfig(t, standIn, models)
	cfg.Batching = &tfserving.BatchingConfig{MaxBatchSize: 32, BatchTimeout: time.Millisecond, AllowedBatchSizes: []int64{8, 32}}
	cfg.MonitoringPath = "/monitoring/prometheus/metrics"
	cfg.ExtraFlags = []string{"--enable_model_warmup=false"}
	s := start(t, cfg)
	waitReady(t, s)

	st := s.Status()
	if st.State != sidecar.StateReady || st.PID == 0 || st.Restarts != 0 || !slices.Equal(st.ReadyModels, []string{demo.Name}) {
		t.Fatalf("status: %+v", st)
	}
	if st.GRPCAddr == "" || st.RESTAddr == "" || st.Models[0].Expected != 1 {
		t.Fatalf("status: %+v", st)
	}
	for _, want := range []string{"--port=", "--rest_api_port=", "--model_config_file=" + filepath.Join(cfg.DataDir, sidecar.ModelsFile),
		"--model_config_file_poll_wait_seconds=0", "--file_system_poll_wait_seconds=1", "--enable_batching=true",
		"--batching_parameters_file=", "--monitoring_config_file=", "--enable_model_warmup=false"} {
		if !slices.ContainsFunc(st.Args, func(a string) bool { return strings.HasPrefix(a, want) }) {
			t.Errorf("args %v lack %s", st.Args, want)
		}
	}
	// The files are TF's text format and say what was configured.
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, sidecar.ModelsFile))
	if err != nil {
		t.Fatal(err)
	}
	var msc servingpb.ModelServerConfig
	if err := prototext.Unmarshal(data, &msc); err != nil {
		t.Fatalf("models.config: %v\n%s", err, data)
	}
	if !proto.Equal(&msc, sidecar.ModelServerConfig(s.Models())) {
		t.Fatalf("models.config:\n%s", data)
	}
	mc := msc.GetModelConfigList().GetConfig()[0]
	if mc.GetModelPlatform() != "tensorflow" || mc.GetModelVersionPolicy().GetLatest().GetNumVersions() != 1 || !filepath.IsAbs(mc.GetBasePath()) {
		t.Fatalf("model config: %v", mc)
	}
	data, _ = os.ReadFile(filepath.Join(cfg.DataDir, sidecar.BatchingFile))
	var bp servingpb.BatchingParameters
	if err := prototext.Unmarshal(data, &bp); err != nil || bp.GetMaxBatchSize().GetValue() != 32 || bp.GetBatchTimeoutMicros().GetValue() != 1000 {
		t.Fatalf("batching.config: %v %s", err, data)
	}

	p := s.Predictor()
	ctx := context.Background()
	res, err := p.Predict(ctx, model.Spec{Name: demo.Name}, demoInput(1, 4))
	if err != nil {
		t.Fatal(err)
	}
	if out := res.Outputs[demo.OutputName]; out == nil || len(out.Data.([]float32)) != 4 || res.Version != 1 {
		t.Fatalf("result: %+v", res)
	}
	md, err := p.Metadata(ctx, model.Spec{Name: demo.Name})
	if err != nil || md.Signatures[model.DefaultSignature] == nil {
		t.Fatalf("metadata: %v %v", md, err)
	}
	if st := s.Status(); st.Models[0].Served != 1 || st.Models[0].Warning != "" {
		t.Fatalf("served: %+v", st.Models[0])
	}
	// Prometheus on the REST port, per monitoring.config.
	resp, err := httpGet("http://" + st.RESTAddr + cfg.MonitoringPath)
	if err != nil || !strings.Contains(resp, ":tensorflow:serving:request_count") {
		t.Fatalf("metrics: %v %.300s", err, resp)
	}
	if !slices.ContainsFunc(s.LogTail(0), func(l string) bool { return strings.Contains(l, "Running gRPC ModelServer") }) {
		t.Fatalf("log tail: %v", s.LogTail(0))
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, sidecar.LogsDir, "stderr.log")); err != nil || fi.Size() == 0 {
		t.Fatalf("stderr.log: %v", err)
	}
}

// TestKillMidStream kills the child while requests flow through the
// Predictor: callers see UNAVAILABLE while it is down and nothing else, and
// succeed again once the supervisor has restarted it.
func TestKillMidStream(t *testing.T) {
	s := start(t, baseConfig(t, standIn, modelsDir(t)))
	waitReady(t, s)
	p := s.Predictor()

	var ok, unavailable, other atomic.Int64
	var otherErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := demoInput(int64(w), 8)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := p.Predict(context.Background(), model.Spec{Name: demo.Name}, in)
				switch status.Code(err) {
				case codes.OK:
					ok.Add(1)
				case codes.Unavailable:
					unavailable.Add(1)
					time.Sleep(5 * time.Millisecond) // as the pipeline backs off
				default:
					other.Add(1)
					otherErr.Store(err)
				}
			}
		}()
	}
	testutil.WaitFor(t, 30*time.Second, "first predictions", func() bool { return ok.Load() > 50 })
	pid := s.Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "restart", func() bool {
		st := s.Status()
		return st.Restarts == 1 && st.State == sidecar.StateReady && st.PID != pid
	})
	before := ok.Load()
	testutil.WaitFor(t, 30*time.Second, "predictions after the restart", func() bool { return ok.Load() > before+50 })
	close(stop)
	wg.Wait()
	st := s.Status()
	if st.LastExit == nil || st.LastExit.Signal != "killed" || !strings.Contains(st.LastExit.Reason, "killed") {
		t.Fatalf("last exit: %+v", st.LastExit)
	}
	if n := other.Load(); n != 0 {
		t.Fatalf("%d calls failed with something other than UNAVAILABLE, e.g. %v", n, otherErr.Load())
	}
	t.Logf("ok %d, unavailable %d while down", ok.Load(), unavailable.Load())
}

// TestNeverReady: a process that answers but never loads its models gives a
// clear status, WaitReady's error says why, calls get UNAVAILABLE, and
// after ReadyTimeout the process is restarted.
func TestNeverReady(t *testing.T) {
	cfg := baseConfig(t, fakeScript(t.TempDir(), "never-ready"), modelsDir(t))
	cfg.ReadyTimeout = 2 * time.Second
	s := start(t, cfg)
	testutil.WaitFor(t, 30*time.Second, "state loading", func() bool { return s.Status().State == sidecar.StateLoading })
	st := s.Status()
	if !strings.Contains(st.Reason, "demo: version 1 LOADING") || st.Ready {
		t.Fatalf("status: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.WaitReady(ctx); err == nil || !strings.Contains(err.Error(), "LOADING") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady: %v", err)
	}
	_, err := s.Predictor().Predict(context.Background(), model.Spec{Name: demo.Name}, demoInput(1, 1))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "loading") {
		t.Fatalf("Predict while loading: %v", err)
	}
	if _, err := s.Predictor().Metadata(context.Background(), model.Spec{Name: demo.Name}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Metadata while loading: %v", err)
	}
	testutil.WaitFor(t, 30*time.Second, "restart after ReadyTimeout", func() bool {
		st := s.Status()
		return st.Restarts >= 1 && st.LastExit != nil
	})
	if st := s.Status(); !strings.Contains(st.LastExit.Reason, "not ready within 2s") || !strings.Contains(st.LastExit.Reason, "LOADING") {
		t.Fatalf("last exit: %+v", st.LastExit)
	}
}

// TestHangAtStartup: a process that never opens its port and ignores
// SIGTERM shows as starting and is SIGKILLed after the grace period on stop.
func TestHangAtStartup(t *testing.T) {
	cfg := baseConfig(t, fakeScript(t.TempDir(), "hang"), modelsDir(t))
	cfg.GracePeriod = 300 * time.Millisecond
	s, err := sidecar.New(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	testutil.WaitFor(t, 30*time.Second, "hang message", func() bool {
		return slices.ContainsFunc(s.LogTail(0), func(l string) bool { return strings.Contains(l, "loading forever") })
	})
	st := s.Status()
	if st.State != sidecar.StateStarting || !strings.Contains(st.Reason, "waiting for tensorflow_model_server to answer on "+st.GRPCAddr) {
		t.Fatalf("status: %+v", st)
	}
	_, err = s.Predictor().Predict(context.Background(), model.Spec{Name: demo.Name}, demoInput(1, 1))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Predict while starting: %v", err)
	}
	pid := st.PID
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d survived", pid)
	}
	st = s.Status()
	if st.State != sidecar.StateStopped || st.LastExit == nil || st.LastExit.Signal != "killed" {
		t.Fatalf("after stop: %+v %+v", st, st.LastExit)
	}
	if err := s.WaitReady(context.Background()); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("WaitReady after Run: %v", err)
	}
}

// TestGracefulStop: a well-behaved child stops on SIGTERM.
func TestGracefulStop(t *testing.T) {
	s, err := sidecar.New(baseConfig(t, standIn, modelsDir(t)), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitReady(t, s)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.LastExit == nil || st.LastExit.Code != 0 || st.State != sidecar.StateStopped {
		t.Fatalf("after stop: %+v %+v", st, st.LastExit)
	}
}

// TestCrashLoop: a child that exits at once is restarted with a doubling
// backoff until the crash-loop threshold, then at the maximum backoff.
func TestCrashLoop(t *testing.T) {
	cfg := baseConfig(t, fakeScript(t.TempDir(), "exit:3"), modelsDir(t))
	cfg.Backoff = sidecar.Backoff{Initial: 100 * time.Millisecond, Max: 800 * time.Millisecond}
	cfg.CrashLoop = sidecar.CrashLoop{Restarts: 5, Window: time.Minute}
	s := start(t, cfg)
	backoffs := map[int]time.Duration{} // restarts so far → pending backoff
	var crash sidecar.Status
	testutil.WaitFor(t, 60*time.Second, "crash-loop", func() bool {
		st := s.Status()
		if st.State == sidecar.StateRestarting || st.State == sidecar.StateCrashLoop {
			backoffs[st.Restarts] = st.Backoff
			if st.NextRestartIn > st.Backoff {
				t.Errorf("NextRestartIn %v > Backoff %v", st.NextRestartIn, st.Backoff)
			}
		}
		if st.State == sidecar.StateCrashLoop && st.Restarts >= 5 {
			crash = st
			return true
		}
		return false
	})
	want := []time.Duration{100, 200, 400, 800}
	for i, w := range want {
		if b, seen := backoffs[i]; seen && b != w*time.Millisecond {
			t.Errorf("backoff after %d restarts: %v, want %v", i, b, w*time.Millisecond)
		}
	}
	if len(backoffs) < 3 {
		t.Errorf("saw too few backoffs: %v", backoffs)
	}
	if crash.Backoff != cfg.Backoff.Max || crash.LastExit == nil || crash.LastExit.Code != 3 ||
		!strings.Contains(crash.Reason, "exits within") || !strings.Contains(crash.Reason, "exited with code 3") {
		t.Fatalf("crash-loop status: %+v %+v", crash, crash.LastExit)
	}
	if !slices.ContainsFunc(s.LogTail(0), func(l string) bool { return strings.Contains(l, "failing on purpose") }) {
		t.Fatalf("log tail: %v", s.LogTail(0))
	}
	// Still retrying: the restart count keeps growing.
	n := crash.Restarts
	testutil.WaitFor(t, 30*time.Second, "another restart", func() bool { return s.Status().Restarts > n })
}

// TestCrashAfterServing: a child that dies on its own after serving is
// restarted and serves again.
func TestCrashAfterServing(t *testing.T) {
	s := start(t, baseConfig(t, fakeScript(t.TempDir(), "crash-after:1500ms"), modelsDir(t)))
	waitReady(t, s)
	testutil.WaitFor(t, 60*time.Second, "a crash and a restart", func() bool {
		st := s.Status()
		return st.Restarts >= 1 && st.LastExit != nil && st.LastExit.Code == 3
	})
	waitReady(t, s)
	if _, err := s.Predictor().Predict(context.Background(), model.Spec{Name: demo.Name}, demoInput(2, 2)); err != nil {
		// It may have crashed again right away; UNAVAILABLE is the only
		// acceptable failure.
		if status.Code(err) != codes.Unavailable {
			t.Fatal(err)
		}
	}
}

// TestReload adds a version, a label and a model without a restart, and
// refuses a label on a version that does not exist while keeping the old
// configuration (file included).
func TestReload(t *testing.T) {
	models := modelsDir(t)
	base := filepath.Join(models, demo.Name)
	cfg := baseConfig(t, standIn, models)
	cfg.Models[0].Policy = tfserving.VersionPolicy{Specific: []int64{1}}
	s := start(t, cfg)
	waitReady(t, s)
	pid := s.Status().PID
	ctx := context.Background()
	p := s.Predictor()

	addVersion(t, base, 2, false)
	m := s.Models()
	m[0].Policy.Specific = []int64{1, 2}
	if err := s.Reload(ctx, m); err != nil {
		t.Fatal(err)
	}
	res, err := p.Predict(ctx, model.Spec{Name: demo.Name}, demoInput(1, 1))
	if err != nil || res.Version != 2 {
		t.Fatalf("after adding version 2: %v %v", res, err)
	}
	m[0].Labels = map[string]int64{"stable": 1, "canary": 2}
	if err := s.Reload(ctx, m); err != nil {
		t.Fatal(err)
	}
	res, err = p.Predict(ctx, model.Spec{Name: demo.Name, Label: "stable"}, demoInput(1, 1))
	if err != nil || res.Version != 1 {
		t.Fatalf("label stable: %v %v", res, err)
	}
	// Another model next to it.
	second := filepath.Join(models, "second")
	if err := os.Mkdir(second, 0o755); err != nil {
		t.Fatal(err)
	}
	addVersion(t, second, 7, false)
	m = append(m, tfserving.ModelConfig{Name: "second", BasePath: second})
	if err := s.Reload(ctx, m); err != nil {
		t.Fatal(err)
	}
	res, err = p.Predict(ctx, model.Spec{Name: "second"}, demoInput(1, 1))
	if err != nil || res.Version != 7 {
		t.Fatalf("added model: %v %v", res, err)
	}
	testutil.WaitFor(t, 10*time.Second, "both models ready", func() bool {
		return slices.Equal(s.Status().ReadyModels, []string{demo.Name, "second"})
	})

	// A label on a version that is not loaded is refused; nothing changes.
	before, _ := os.ReadFile(filepath.Join(cfg.DataDir, sidecar.ModelsFile))
	bad := s.Models()
	bad[0].Labels = map[string]int64{"stable": 9}
	if err := s.Reload(ctx, bad); err == nil {
		t.Fatal("reload with a label on a missing version succeeded")
	} else {
		t.Logf("refused as expected: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(cfg.DataDir, sidecar.ModelsFile))
	if string(before) != string(after) {
		t.Fatalf("models.config changed by a refused reload:\n%s", after)
	}
	if got := s.Models(); got[0].Labels["stable"] != 1 {
		t.Fatalf("models after a refused reload: %+v", got)
	}
	st := s.Status()
	if st.PID != pid || st.Restarts != 0 || st.State != sidecar.StateReady {
		t.Fatalf("reload restarted the process: pid %d→%d, %+v", pid, st.PID, st)
	}
}

// TestVersionMismatch: a configured version that fails to load leaves the
// old one serving; Reload says so, and so do Status and the Predictor's
// check of the answering version.
func TestVersionMismatch(t *testing.T) {
	models := modelsDir(t)
	base := filepath.Join(models, demo.Name)
	cfg := baseConfig(t, standIn, models)
	cfg.Models[0].Policy = tfserving.VersionPolicy{Specific: []int64{1}}
	s := start(t, cfg)
	waitReady(t, s)

	addVersion(t, base, 2, true)
	m := s.Models()
	m[0].Policy.Specific = []int64{1, 2}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Reload(ctx, m)
	if err == nil || !strings.Contains(err.Error(), "version 2 failed to load") {
		t.Fatalf("reload with a broken version: %v", err)
	}
	res, err := s.Predictor().Predict(context.Background(), model.Spec{Name: demo.Name}, demoInput(1, 1))
	if err != nil || res.Version != 1 {
		t.Fatalf("predict: %v %v", res, err)
	}
	testutil.WaitFor(t, 10*time.Second, "warning in status", func() bool {
		if _, err := s.Predictor().Predict(context.Background(), model.Spec{Name: demo.Name}, demoInput(1, 1)); err != nil {
			t.Fatal(err)
		}
		st := s.Status()
		w := st.Models[0].Warning
		return st.Models[0].Expected == 2 && st.Models[0].Served == 1 &&
			strings.Contains(w, "expected version 2, served 1: load of 2 failed? see log tail") &&
			strings.Contains(w, "version 2 failed to load") && len(st.Warnings) == 1
	})
	if st := s.Status(); st.State != sidecar.StateReady {
		t.Fatalf("a model still serving must stay ready: %+v", st)
	}
}

// TestNoOrphan: SIGKILL of the supervising process takes its
// tensorflow_model_server with it.
func TestNoOrphan(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(superviseConfig{Binary: standIn, DataDir: t.TempDir(), ModelsDir: modelsDir(t)})
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envSupervise+"="+string(raw))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testutil.Writer(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pidc := make(chan int, 1)
	go func() {
		var pid int
		if _, err := fmt.Fscanf(out, "PID %d\n", &pid); err == nil {
			pidc <- pid
		}
		close(pidc)
	}()
	var child int
	select {
	case child = <-pidc:
	case <-time.After(60 * time.Second):
		t.Fatal("the supervisor process did not report a ready child")
	}
	if child == 0 || !alive(child) {
		t.Fatalf("child pid %d not alive", child)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testutil.WaitFor(t, 10*time.Second, "the orphan to die", func() bool { return !alive(child) })
}

func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// TestPortInUse: a configured port someone else holds is named in the log
// tail, and the failing process is restarted rather than given up on.
func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	cfg := baseConfig(t, standIn, modelsDir(t))
	cfg.GRPCPort = port
	s := start(t, cfg)
	testutil.WaitFor(t, 30*time.Second, "a failed start", func() bool {
		st := s.Status()
		return st.LastExit != nil && st.LastExit.Code != 0 && (st.State == sidecar.StateRestarting || st.State == sidecar.StateCrashLoop || st.Restarts > 0)
	})
	want := "port " + strconv.Itoa(port) + " is in use"
	if !slices.ContainsFunc(s.LogTail(0), func(l string) bool { return strings.Contains(l, want) }) {
		t.Fatalf("log tail lacks %q: %q", want, s.LogTail(0))
	}
}
