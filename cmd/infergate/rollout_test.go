package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/internal/testmodels"
)

// writeFeatureVersions writes demo v1 answering feature 0 and v2 its ReLU
// into the data dir's model repository: they differ exactly when feature 0
// is negative.
func writeFeatureVersions(t *testing.T, dir string) {
	t.Helper()
	for v, relu := range map[int]bool{1: false, 2: true} {
		d := filepath.Join(dir, "models", "demo", fmt.Sprint(v))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "model.onnx"), testmodels.Feature(0, relu), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRolloutCLI drives versions and a rollout of a running appliance with
// the CLI alone (it finds the admin API and token in the data dir).
func TestRolloutCLI(t *testing.T) {
	dir := t.TempDir()
	writeFeatureVersions(t, dir)
	startAppliance(t, dir, freePort(t))
	run := func(wantCode int, args ...string) string {
		t.Helper()
		out, errOut, code := infergate(t, "", append(args, "--data-dir", dir)...)
		if code != wantCode {
			t.Fatalf("infergate %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		return out + errOut
	}
	if out := run(0, "model", "rollback", "demo"); !strings.Contains(out, "serving version 1") {
		t.Fatalf("rollback: %s", out)
	}
	if out := run(0, "rollout", "start", "demo", "--candidate", "2", "--shadow", "--sample", "0.5"); !strings.Contains(out, "shadow") || !strings.Contains(out, "running") {
		t.Fatalf("start: %s", out)
	}
	// Each error names its problem once: the status, then the API's message
	// (not "409 Conflict: conflict: conflict: ...").
	if out := run(1, "rollout", "start", "demo", "--candidate", "2"); !regexp.MustCompile(
		`^infergate rollout: admin API POST /api/v1/rollouts: 409 Conflict: rollout demo-[0-9]+ of model demo is running\n$`).MatchString(out) {
		t.Fatalf("a second rollout of demo: %q", out)
	}
	if out := run(0, "rollout", "status"); !strings.Contains(out, "demo") || !strings.Contains(out, "running") {
		t.Fatalf("status: %s", out)
	}
	if out := run(0, "rollout", "percent", "demo", "50%"); !strings.Contains(out, "split") || !strings.Contains(out, "50%") {
		t.Fatalf("percent: %s", out)
	}
	var rep rollout.Report
	if err := json.Unmarshal([]byte(run(0, "rollout", "report", "demo", "--json")), &rep); err != nil || rep.Rollout.Candidate != 2 || rep.Stable.Version != 1 {
		t.Fatalf("report: %+v %v", rep, err)
	}
	if out := run(0, "rollout", "report", "demo"); !strings.Contains(out, "compared 0 requests") {
		t.Fatalf("report table: %s", out)
	}
	if out := run(0, "rollout", "promote", "demo"); !strings.Contains(out, "promoted") {
		t.Fatalf("promote: %s", out)
	}
	if out := run(1, "rollout", "abort", "demo"); !strings.Contains(out, "404") {
		t.Fatalf("abort after promote: %s", out)
	}
	if out, want := run(1, "rollout", "start", "demo", "--stable", "1", "--candidate", "1"),
		"infergate rollout: admin API POST /api/v1/rollouts: 400 Bad Request: invalid argument: stable and candidate are both version 1\n"; out != want {
		t.Fatalf("a rollout from a version to itself:\n got %q\nwant %q", out, want)
	}
	run(0, "rollout", "start", "demo", "--stable", "2", "--candidate", "1", "--steps", "10%:1h,100%:1h", "--max-disagreement", "0.1")
	if out := run(0, "rollout", "abort", "demo", "--reason", "not today"); !strings.Contains(out, "aborted") || !strings.Contains(out, "not today") {
		t.Fatalf("abort: %s", out)
	}
	if out := run(1, "model", "delete-version", "demo", "2"); !strings.Contains(out, "409") {
		t.Fatalf("deleting the serving version: %s", out)
	}
	if out := run(0, "model", "delete-version", "demo", "1"); !strings.Contains(out, "deleted") {
		t.Fatalf("delete-version: %s", out)
	}
	if out := run(0, "model", "label", "demo", "stable", "2"); !strings.Contains(out, "label stable -> version 2") {
		t.Fatalf("label: %s", out)
	}
	if out := run(0, "model", "serve", "demo", "0"); !strings.Contains(out, "serving version 0") {
		t.Fatalf("serve: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "models", "demo", "1")); !os.IsNotExist(err) {
		t.Fatalf("version 1 still on disk: %v", err)
	}
}

// TestDatasetCLI captures the requests sent so far as a dataset, replays it
// against two versions and deletes it, with the CLI alone.
func TestDatasetCLI(t *testing.T) {
	dir := t.TempDir()
	writeFeatureVersions(t, dir)
	startAppliance(t, dir, freePort(t))
	run := func(wantCode int, stdin string, args ...string) string {
		t.Helper()
		out, errOut, code := infergate(t, stdin, append(args, "--data-dir", dir)...)
		if code != wantCode {
			t.Fatalf("infergate %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		return out + errOut
	}
	// 8 requests, 2 with a negative feature 0: v1 and v2 differ on those.
	var lines strings.Builder
	for i := range 8 {
		f := make([]float64, 16)
		f[0] = 0.5
		if i%4 == 0 {
			f[0] = -2
		}
		b, _ := json.Marshal(map[string]any{"request_id": fmt.Sprintf("c-%d", i), "features": f})
		lines.Write(b)
		lines.WriteByte('\n')
	}
	run(0, lines.String(), "produce", "--key-field", "request_id")
	if out := run(0, "", "rollout", "capture", "before-v2", "--last", "8", "--model", "demo"); !strings.Contains(out, "before-v2") || !strings.Contains(out, "requests") {
		t.Fatalf("capture: %s", out)
	}
	if out := run(0, "", "rollout", "datasets"); !strings.Contains(out, "before-v2") || !strings.Contains(out, "last 8, model demo") {
		t.Fatalf("datasets: %s", out)
	}
	out := run(0, "", "rollout", "replay", "before-v2", "--stable", "1", "--candidate", "2")
	if !strings.Contains(out, "compared 8 requests") || !strings.Contains(out, "agreement 75.00%") || !strings.Contains(out, "8 scored") {
		t.Fatalf("replay: %s", out)
	}
	var rep rollout.Report
	if err := json.Unmarshal([]byte(run(0, "", "rollout", "replay", "before-v2", "--json")), &rep); err != nil || rep.Compared != 8 || rep.Rollout.Replay == nil {
		t.Fatalf("replay --json: %+v %v", rep, err)
	}
	if out := run(2, "", "rollout", "capture", "x", "--class", "decode"); !strings.Contains(out, "--dlq") {
		t.Fatalf("--class without --dlq: %s", out)
	}
	if out := run(0, "", "rollout", "delete-dataset", "before-v2"); !strings.Contains(out, "deleted") {
		t.Fatalf("delete-dataset: %s", out)
	}
	if out := run(1, "", "rollout", "replay", "before-v2"); !strings.Contains(out, "404") {
		t.Fatalf("replay of a deleted dataset: %s", out)
	}
}
