package modelserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// syncBuffer collects what a process writes while the test reads it.
type syncBuffer = testutil.Buffer

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// mainHarness runs ModelServerMain with args until the test ends and returns
// the gRPC and REST addresses it announced.
type mainHarness struct {
	grpcAddr, restAddr string
	stderr             *syncBuffer
	stop               func() error
}

var (
	grpcLine = regexp.MustCompile(`Running gRPC ModelServer at (\S+) \.\.\.`)
	restLine = regexp.MustCompile(`Exporting HTTP/REST API at:(\S+) \.\.\.`)
)

func runMain(t *testing.T, args ...string) *mainHarness {
	t.Helper()
	h := &mainHarness{stderr: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ModelServerMain(ctx, args, &bytes.Buffer{}, h.stderr) }()
	var once sync.Once
	var runErr error
	h.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { h.stop() })
	testutil.WaitFor(t, 20*time.Second, "the gRPC announcement", func() bool {
		select {
		case err := <-done:
			t.Fatalf("ModelServerMain returned early: %v\n%s", err, h.stderr)
		default:
		}
		return grpcLine.MatchString(h.stderr.String())
	})
	_, port, _ := net.SplitHostPort(grpcLine.FindStringSubmatch(h.stderr.String())[1])
	h.grpcAddr = "127.0.0.1:" + port
	if m := restLine.FindStringSubmatch(h.stderr.String()); m != nil {
		_, port, _ := net.SplitHostPort(m[1])
		h.restAddr = "127.0.0.1:" + port
	}
	return h
}

func TestModelServerMainWithConfigFile(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	addBase := filepath.Join(dir, "add")
	writeVersion(t, addBase, 1, addModel(t, 1))
	writeVersion(t, addBase, 2, addModel(t, 2))
	config := writeFile(t, filepath.Join(dir, "models.config"), fmt.Sprintf(`
# TF's text format, single-quoted strings and all.
model_config_list {
  config {
    name: 'demo'  base_path: '%s'  model_platform: 'tensorflow'
  }
  config {
    name: "add"
    base_path: "%s"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: 'stable' value: 1 }
    version_labels { key: 'canary' value: 2 }
  }
}
`, filepath.Join(dir, "demo"), addBase))
	batching := writeFile(t, filepath.Join(dir, "batching.config"), `
max_batch_size { value: 64 } batch_timeout_micros { value: 500 } max_enqueued_batches { value: 100 }
num_batch_threads { value: 2 } allowed_batch_sizes: 8 allowed_batch_sizes: 64`)
	monitoring := writeFile(t, filepath.Join(dir, "monitoring.config"), `prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }`)
	restPort := freePort(t)

	h := runMain(t, "--port=0", fmt.Sprintf("--rest_api_port=%d", restPort), "--model_config_file="+config,
		"--model_config_file_poll_wait_seconds=1", "--file_system_poll_wait_seconds=1",
		"--enable_batching", "--batching_parameters_file="+batching, "--monitoring_config_file="+monitoring,
		"--rest_api_timeout_in_ms=5000", "--enable_model_warmup=false", "--num_load_threads=4", "--tensorflow_intra_op_parallelism=2")
	for _, w := range []string{"--enable_model_warmup has no effect", "--num_load_threads has no effect", "--tensorflow_intra_op_parallelism has no effect"} {
		if !strings.Contains(h.stderr.String(), w) {
			t.Errorf("no warning %q in:\n%s", w, h.stderr)
		}
	}
	c := dial(t, h.grpcAddr)
	ctx := context.Background()

	// Models are AVAILABLE before the port opens.
	for _, name := range []string{"demo", "add"} {
		st, err := c.models.GetModelStatus(ctx, &servingpb.GetModelStatusRequest{ModelSpec: specFor(name)})
		if err != nil || st.ModelVersionStatus[0].State != servingpb.ModelVersionStatus_AVAILABLE {
			t.Fatalf("%s: %v %v", name, st, err)
		}
	}
	for label, want := range map[string]int64{"stable": 1, "canary": 2} {
		resp, err := c.pred.Predict(ctx, &servingpb.PredictRequest{ModelSpec: labelSpec("add", label),
			Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{2, 4}, make([]float32, 8), false)}})
		if err != nil || resp.ModelSpec.GetVersion().GetValue() != want || resp.Outputs["y"].FloatVal[0] != float32(want) {
			t.Fatalf("label %s: %v %v", label, resp, err)
		}
	}
	// Batching on: a demo request through the batcher gives the reference answer.
	ref := loadDemoCase(t)
	resp, err := c.pred.Predict(ctx, &servingpb.PredictRequest{ModelSpec: specFor("demo"),
		Inputs: map[string]*tfpb.TensorProto{"input": floatProto([]int64{ref.Rows, 16}, ref.Input, true)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := near(resp.Outputs["output"].FloatVal, ref.Output, 1e-5); err != nil {
		t.Fatal(err)
	}
	// A task above max_batch_size is refused, as TF does.
	_, err = c.pred.Predict(ctx, &servingpb.PredictRequest{ModelSpec: specFor("demo"),
		Inputs: map[string]*tfpb.TensorProto{"input": floatProto([]int64{65, 16}, make([]float32, 65*16), false)}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "larger than maximum input batch size 64") {
		t.Fatalf("oversized task: %v", err)
	}

	// REST and the metrics on the REST port.
	if h.restAddr == "" {
		t.Fatalf("no REST announcement:\n%s", h.stderr)
	}
	code, body, _ := httpDo(t, "GET", "http://"+h.restAddr+"/v1/models/add/labels/canary", "")
	if code != 200 || !strings.Contains(string(body), `"version":"2"`) {
		t.Fatalf("REST status by label: %d %s", code, body)
	}
	code, body, _ = httpDo(t, "GET", "http://"+h.restAddr+"/monitoring/prometheus/metrics", "")
	if code != 200 || !strings.Contains(string(body), `:tensorflow:serving:request_count{model_name="add",status="OK"} 2`) {
		t.Fatalf("metrics: %d %s", code, body)
	}

	// The config file is polled: drop "add", and it goes.
	writeFile(t, config, fmt.Sprintf(`model_config_list { config { name: 'demo' base_path: '%s' } }`, filepath.Join(dir, "demo")))
	testutil.WaitFor(t, 20*time.Second, "add to be removed", func() bool {
		_, err := c.pred.Predict(ctx, &servingpb.PredictRequest{ModelSpec: specFor("add"),
			Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{1, 4}, make([]float32, 4), false)}})
		return status.Code(err) == codes.NotFound
	})

	if err := h.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestModelServerMainSingleModel(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 3, addModel(t, 3))
	// infergate's own size flags take units, as every size of infergate does.
	h := runMain(t, "--port=0", "--model_name=adder", "--model_base_path="+base,
		"--max_inflight_request_bytes=64MiB", "--max_folded_constant_bytes=1.5GiB")
	if h.restAddr != "" {
		t.Fatal("REST must be off by default (--rest_api_port=0)")
	}
	c := dial(t, h.grpcAddr)
	resp, err := c.pred.Predict(context.Background(), &servingpb.PredictRequest{ModelSpec: specFor("adder"),
		Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{1, 4}, make([]float32, 4), false)}})
	if err != nil || resp.ModelSpec.GetVersion().GetValue() != 3 {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestModelServerMainErrors(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	broken := t.TempDir()
	writeVersion(t, broken, 1, []byte("not onnx"))
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--bogus=1", "--model_base_path=" + base}, "flag provided but not defined: -bogus"},
		{[]string{"--port=9000", "--rest_api_port=9000", "--model_base_path=" + base}, "--rest_api_port=9000 must differ from --port"},
		{[]string{"--batching_parameters_file=x", "--model_base_path=" + base}, "--batching_parameters_file requires --enable_batching"},
		{[]string{"--port=0"}, "set --model_base_path"},
		{[]string{"--port=0", "--model_config_file=/nonexistent/models.config"}, "ModelConfigFile"},
		{[]string{"--port=0", "--model_config_file=" + writeFile(t, filepath.Join(base, "bad.config"), "model_config_list { nonsense: 1 }")}, "nonsense"},
		{[]string{"--port=0", "--model_base_path=" + base, "--enable_batching", "--batching_parameters_file=" + writeFile(t, filepath.Join(base, "b.config"), "max_batch_size { value: 8 } allowed_batch_sizes: 4")}, "AllowedBatchSizes"},
		{[]string{"--port=0", "--model_base_path=" + broken}, "version 1 failed to load"},
		{[]string{"--port=0", "--model_base_path=" + base, "extra"}, `unexpected argument "extra"`},
		{[]string{"--port=0", "--model_base_path=" + base, "--max_inflight_request_bytes=lots"}, `invalid value "lots" for flag -max_inflight_request_bytes`},
		{[]string{"--port=0", "--model_base_path=" + base, "--max_folded_constant_bytes=-1KiB"}, `-1KiB is negative`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr syncBuffer
			err := ModelServerMain(ctx, tc.args, &bytes.Buffer{}, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
	var out bytes.Buffer
	if err := ModelServerMain(ctx, []string{"--version"}, &out, &bytes.Buffer{}); err != nil || !strings.HasPrefix(out.String(), "TensorFlow ModelServer: infergate-") {
		t.Fatalf("--version: %v %q", err, out.String())
	}
}
