package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSelfContainedRunWithModel serves a model file instead of the demo
// model (the 2-D CNN, and an XGBoost JSON tree ensemble) and sends random
// rows fitting its signature: every request must get a result, none a DLQ
// record (the demo model would refuse these shapes). No timing is asserted.
func TestSelfContainedRunWithModel(t *testing.T) {
	testdata := filepath.Join("..", "inference", "onnxrt", "testdata")
	for _, file := range []string{
		filepath.Join(testdata, "cnn2d_opset17.onnx"),
		filepath.Join(testdata, "trees", "xgb_reg.model.json"),
	} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			args := []string{"--rate", "20", "--duration", "1s", "--warmup", "200ms", "--partitions", "2",
				"--payloads", "8", "--durability", "os", "--json", "--quiet", "--model", file}
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := Main(ctx, args, &stdout, &stderr); err != nil {
				t.Fatalf("bench: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
			}
			var rep Report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("%v\n%s", err, stdout.String())
			}
			if rep.ModelFile != file {
				t.Errorf("model_file %q, want %q", rep.ModelFile, file)
			}
			if rep.Sent != 24 || rep.Results != rep.Sent || rep.DLQ != 0 || rep.Lost != 0 {
				t.Errorf("sent %d, results %d, dlq %d, lost %d: want 24 results, no DLQ record, none lost",
					rep.Sent, rep.Results, rep.DLQ, rep.Lost)
			}
		})
	}
}

func TestModelFlagRefused(t *testing.T) {
	cnn := filepath.Join("..", "inference", "onnxrt", "testdata", "cnn2d_opset17.onnx")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", cnn, "--brokers", "127.0.0.1:1"}, "--model: serves the file in a self-contained appliance"},
		{[]string{"--model", cnn, "--mode", "baseline"}, "--model: the baseline"},
		{[]string{"--model", cnn, "--model-path", "grpc"}, "--model: the loopback gRPC"},
		{[]string{"--model", cnn, "--compare"}, "--model: --compare"},
	} {
		var stdout, stderr bytes.Buffer
		err := Main(context.Background(), c.args, &stdout, &stderr)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want a usage error containing %q", c.args, err, c.want)
		}
	}
	// A file that is not a model is named when the run starts.
	if _, err := modelRow(filepath.Join("..", "go.mod")); err == nil || !strings.Contains(err.Error(), "--model") {
		t.Errorf("go.mod as --model: %v", err)
	}
}
