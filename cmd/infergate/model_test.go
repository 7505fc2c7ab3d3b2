package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runModelBench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), append([]string{"model", "bench"}, args...),
		stdio{in: strings.NewReader(""), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

// `infergate model bench` loads a real model (file, version directory, model
// directory), runs it at each batch size asked with random inputs or with a
// TF Serving REST request file, and reports per batch.
func TestModelBench(t *testing.T) {
	src := filepath.Join("..", "..", "inference", "onnxrt", "testdata", "cnn1d_opset13.onnx")
	onnx, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	for _, v := range []string{"1", "7"} {
		if err := os.MkdirAll(filepath.Join(repo, "vib", v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, "vib", v, "model.onnx"), onnx, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{src, filepath.Join(repo, "vib", "1"), filepath.Join(repo, "vib")} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			code, out, errs := runModelBench(t, path, "--batch", "1,3", "--threads", "1", "--duration", "20ms", "--json")
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var rep benchReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("%v in %s", err, out)
			}
			if rep.Format != "ONNX" || rep.Threads != 1 || len(rep.Results) != 2 {
				t.Fatalf("report %+v", rep)
			}
			if want := filepath.Join(repo, "vib", "7", "model.onnx"); path == filepath.Join(repo, "vib") && rep.Model != want {
				t.Errorf("model directory: loaded %s, want the highest version %s", rep.Model, want)
			}
			for i, r := range rep.Results {
				if r.Batch != []int{1, 3}[i] || r.Calls < 5 || !(r.MicrosPerCall > 0) || !(r.PredictionsPerSec > 0) {
					t.Errorf("result %d: %+v", i, r)
				}
			}
		})
	}

	t.Run("input file", func(t *testing.T) {
		row := make([]string, 256)
		for i := range row {
			row[i] = fmt.Sprint(float32(i%7) / 7)
		}
		img := "[[" + strings.Join(row, ",") + "],[" + strings.Join(row, ",") + "],[" + strings.Join(row, ",") + "]]"
		req := filepath.Join(t.TempDir(), "req.json")
		if err := os.WriteFile(req, []byte(`{"inputs": {"input": [`+img+`,`+img+`]}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errs := runModelBench(t, src, "--input", req, "--duration", "20ms")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errs)
		}
		// The table: a header line naming the model, then one row for batch 2.
		if !strings.Contains(out, "cnn1d_opset13.onnx (ONNX)") || !strings.Contains(out, "predictions/s") {
			t.Fatalf("output:\n%s", out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if f := strings.Fields(lines[len(lines)-1]); len(f) != 6 || f[0] != "2" {
			t.Fatalf("last row %q, want batch 2", lines[len(lines)-1])
		}
	})

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "missing the model"},
		{[]string{src, "--batch", "0"}, exitUsage, "--batch"},
		{[]string{src, "--threads", "-1"}, exitUsage, "--threads"},
		{[]string{filepath.Join(repo, "nothing")}, exitFailure, "no such file"},
		{[]string{t.TempDir()}, exitFailure, "no model file"},
		{[]string{src, "--input", filepath.Join(repo, "missing.json")}, exitUsage, "--input"},
	} {
		code, _, errs := runModelBench(t, tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.want) {
			t.Errorf("model bench %q: exit %d, stderr %q; want exit %d mentioning %q", tt.args, code, errs, tt.code, tt.want)
		}
	}
}
