package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/sidecar"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/web"
)

// TestSidecarSettings: model_server.sidecar.* from the file, the
// environment and flags reach the supervisor's Config, which accepts it.
func TestSidecarSettings(t *testing.T) {
	c, err := loadFile(t, "testdata/sidecar.good.yml",
		[]string{"INFERGATE_MODEL_SERVER_SIDECAR_EXTRA_FLAGS=--num_load_threads=2, --enable_model_warmup=false"},
		"--sidecar-allowed-batch-sizes", "8,64", "--sidecar-grace-period=3s")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	a := &Appliance{cfg: *c, paths: DataPaths(t.TempDir())}
	models := []tfserving.ModelConfig{{Name: "demo", BasePath: "/models/demo"}}
	got := a.sidecarConfig(models, 8500, 8501)
	// What the settings do not set keeps the supervisor's defaults.
	want := sidecar.DefaultConfig()
	want.Binary = "/usr/bin/tensorflow_model_server"
	want.ExtraFlags = []string{"--num_load_threads=2", "--enable_model_warmup=false"}
	want.DataDir = filepath.Join(a.paths.Root, sidecarDir)
	want.Models = models
	want.GRPCPort, want.RESTPort = 8500, 8501
	want.CallTimeout = c.Pipeline.PredictTimeout
	want.Batching = &tfserving.BatchingConfig{MaxBatchSize: 64, BatchTimeout: 2 * time.Millisecond, MaxEnqueuedBatches: 100, NumBatchThreads: 4, AllowedBatchSizes: []int64{8, 64}}
	want.ReadyTimeout = 20 * time.Minute
	want.Backoff = sidecar.Backoff{Initial: 2 * time.Second, Max: 5 * time.Minute}
	want.CrashLoop = sidecar.CrashLoop{Restarts: 3, Window: 30 * time.Minute}
	want.GracePeriod = 3 * time.Second
	want.LogMaxBytes = 1 << 20 // monitoring: false leaves MonitoringPath empty
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sidecar config:\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("the supervisor refuses what the appliance validated: %v", err)
	}

	// The defaults leave batching off and monitoring on.
	d := Default()
	d.ModelServer.Mode = ModelServerSidecar
	a = &Appliance{cfg: d, paths: DataPaths(t.TempDir())}
	if got := a.sidecarConfig(models, 0, 0); got.Batching != nil || got.MonitoringPath != tfMonitoringPath || got.Validate() != nil {
		t.Fatalf("default sidecar config: %+v", got)
	}

	t.Chdir(t.TempDir()) // no ./infergate.yaml
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sidecar-batching"}, "model_server.sidecar.enable_batching (--sidecar-batching, INFERGATE_MODEL_SERVER_SIDECAR_ENABLE_BATCHING): is only used with model_server.mode sidecar"},
		{[]string{"--model-server=sidecar", "--sidecar-flags", "model_name=x"}, `model_server.sidecar.extra_flags (--sidecar-flags, INFERGATE_MODEL_SERVER_SIDECAR_EXTRA_FLAGS): "model_name=x" is not a flag`},
		{[]string{"--model-server=sidecar", "--sidecar-flags", "--model_config_file=/x"}, "--model_config_file is set by infergate itself"},
		{[]string{"--model-server=sidecar", "--sidecar-batching", "--sidecar-allowed-batch-sizes", "8,4,16", "--sidecar-max-batch-size=16"}, "[8 4 16]: sizes must be positive and increasing"},
		{[]string{"--model-server=sidecar", "--sidecar-allowed-batch-sizes", "eight"}, `model_server.sidecar.allowed_batch_sizes: flag --sidecar-allowed-batch-sizes: "eight" is not a whole number`},
		{[]string{"--model-server=sidecar", "--sidecar-restart-backoff-max=100ms"}, "model_server.sidecar.restart_backoff_max (--sidecar-restart-backoff-max, INFERGATE_MODEL_SERVER_SIDECAR_RESTART_BACKOFF_MAX): 100ms is below model_server.sidecar.restart_backoff (1s)"},
		{[]string{"--model-server=sidecar", "--sidecar-ready-timeout=0"}, "model_server.sidecar.ready_timeout (--sidecar-ready-timeout, INFERGATE_MODEL_SERVER_SIDECAR_READY_TIMEOUT): 0s: must be a positive duration"},
		{[]string{"--model-server=sidecar", "--sidecar-log-max-bytes=10"}, "model_server.sidecar.log_max_bytes (--sidecar-log-max-bytes, INFERGATE_MODEL_SERVER_SIDECAR_LOG_MAX_BYTES): 10: must be at least 1024"},
	} {
		c, err := Load(tc.args, nil, nil)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v\nwant %q", tc.args, err, tc.want)
		}
	}
}

// TestSidecarRestartAndBatching runs the appliance in sidecar mode with
// `infergate model-server` as tensorflow_model_server and batching on:
// batching.config holds the configured values and the child got the flags
// to read it; killing the child mid-stream shows as
// infergate_sidecar_restarts_total 1 on /metrics, and every request sent
// gets its result, none dead-lettered.
func TestSidecarRestartAndBatching(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/infergate")
	}
	c := sidecarTestConfig(t)
	sc := &c.ModelServer.Sidecar
	sc.EnableBatching = true
	sc.Batching = tfserving.BatchingConfig{MaxBatchSize: 32, BatchTimeout: time.Millisecond, MaxEnqueuedBatches: 50, NumBatchThreads: 2, AllowedBatchSizes: []int64{8, 16, 32}}
	sc.ExtraFlags = []string{"--enable_model_warmup=false"}
	sc.RestartBackoff = 100 * time.Millisecond
	if err := demo.Install(filepath.Join(c.DataDir, ModelsDir)); err != nil {
		t.Fatal(err)
	}
	a := start(t, c)
	// The supervised process as the admin API shows it: the seam an
	// operator has, not the appliance's fields.
	api := newAPIClient(t, a)
	sidecarNow := func() web.SidecarStatus {
		t.Helper()
		var sc struct {
			Enabled bool
			web.SidecarStatus
		}
		api.json("GET", "/api/v1/sidecar", nil, 200, &sc)
		if !sc.Enabled {
			t.Fatalf("GET /api/v1/sidecar: not enabled in sidecar mode")
		}
		return sc.SidecarStatus
	}
	st := sidecarNow()
	if st.PID == 0 {
		t.Fatalf("sidecar: %+v", st)
	}

	// The file TF reads, in TF's text format, with the configured values.
	path := filepath.Join(c.DataDir, sidecarDir, sidecar.BatchingFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var bp servingpb.BatchingParameters
	if err := prototext.Unmarshal(data, &bp); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	if bp.GetMaxBatchSize().GetValue() != 32 || bp.GetBatchTimeoutMicros().GetValue() != 1000 || bp.GetMaxEnqueuedBatches().GetValue() != 50 ||
		bp.GetNumBatchThreads().GetValue() != 2 || !slices.Equal(bp.GetAllowedBatchSizes(), []int64{8, 16, 32}) {
		t.Fatalf("%s:\n%s", path, data)
	}
	// What the child was started with, as the kernel has it (the stand-in
	// script execs, so the PID is the model server's).
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PID))
	if err != nil {
		t.Fatalf("the child's arguments: %v", err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for _, want := range []string{"--enable_batching=true", "--batching_parameters_file=" + path,
		"--monitoring_config_file=" + filepath.Join(c.DataDir, sidecarDir, sidecar.MonitoringFile), "--enable_model_warmup=false"} {
		if !slices.Contains(args, want) {
			t.Errorf("child's arguments %q lack %s", args, want)
		}
	}
	if body, err := getBody("http://" + c.ModelServer.RESTListen + tfMonitoringPath); err != nil || !strings.Contains(body, ":tensorflow:serving:") {
		t.Errorf("TF's metrics (model_server.sidecar.monitoring): %v %.200s", err, body)
	}

	url := a.WebURL()
	before, _ := scrape(t, url)
	if v, ok := before["infergate_sidecar_restarts_total"]; !ok || v != 0 {
		t.Fatalf("infergate_sidecar_restarts_total before the kill: %v (present %v)", v, ok)
	}

	// Requests flow for the whole test; each is produced synchronously so
	// the test knows exactly which ones must come back.
	cl := producer(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent []string
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			id := fmt.Sprintf("sc-%d", i)
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: requestValue(id, features(16, 0.1))}).FirstErr(); err != nil {
				return
			}
			mu.Lock()
			sent = append(sent, id)
			mu.Unlock()
		}
	})
	stopTraffic := sync.OnceFunc(func() { cancel(); wg.Wait() })
	defer stopTraffic()

	results := func() float64 { s, _ := scrape(t, url); return s["infergate_results_total"] }
	testutil.Eventually(t, time.Minute, func() error {
		if n := results(); n < 20 {
			return fmt.Errorf("%v results before the kill", n)
		}
		return nil
	})
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, func() error {
		s, _ := scrape(t, url)
		if s["infergate_sidecar_restarts_total"] != 1 {
			return fmt.Errorf("infergate_sidecar_restarts_total %v", s["infergate_sidecar_restarts_total"])
		}
		if now := sidecarNow(); !strings.HasPrefix(now.State, "ready") || now.PID == st.PID {
			return fmt.Errorf("sidecar after the kill: %s (pid %d)", now.State, now.PID)
		}
		return nil
	})
	afterRestart := results()
	testutil.Eventually(t, time.Minute, func() error {
		if n := results(); n < afterRestart+20 {
			return fmt.Errorf("%v results, %v at the restart: the pipeline did not continue", n, afterRestart)
		}
		return nil
	})
	stopTraffic()

	// Every request sent has its result.
	mu.Lock()
	want := slices.Clone(sent)
	mu.Unlock()
	missing := map[string]bool{}
	for _, id := range want {
		missing[id] = true
	}
	rc, err := kgo.NewClient(kgo.SeedBrokers(a.BrokerAddr()), kgo.ConsumeTopics(c.Pipeline.ResultsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for len(missing) > 0 && time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		fetches := rc.PollFetches(pctx)
		pcancel()
		fetches.EachRecord(func(r *kgo.Record) {
			var res struct {
				RequestID string `json:"request_id"`
			}
			if json.Unmarshal(r.Value, &res) == nil {
				delete(missing, res.RequestID)
			}
		})
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d requests have no result", len(missing), len(want))
	}
	end, _ := scrape(t, url)
	if n := end["infergate_dlq_records_total"]; n != 0 {
		t.Fatalf("%v requests dead-lettered across the restart", n)
	}
	t.Logf("%d requests, all answered, across one sidecar restart", len(want))
}

func getBody(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}
