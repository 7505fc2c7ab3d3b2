package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSelfContainedRun runs the bench end to end against a self-contained
// appliance at a low rate, with some undecodable requests, and checks the
// accounting: every acknowledged request has exactly one result or DLQ
// record. No timing is asserted.
func TestSelfContainedRun(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{
		{"pipeline", []string{"--mode", "pipeline"}},
		{"pipeline-grpc", []string{"--mode", "pipeline", "--model-path", "grpc"}},
		{"baseline", []string{"--mode", "baseline"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			plot := filepath.Join(t.TempDir(), "latency.svg")
			args := append([]string{"--rate", "100", "--duration", "1500ms", "--warmup", "300ms",
				"--partitions", "2", "--bad-every", "10", "--payloads", "50", "--durability", "os",
				"--json", "--plot", plot}, c.args...)
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := Main(ctx, args, &stdout, &stderr)
			if err != nil {
				t.Fatalf("bench: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
			}
			var raw map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &raw); err != nil {
				t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
			}
			for _, k := range []string{"throughput_rps", "sent", "results", "dlq", "lost", "p50_ms", "p90_ms", "p99_ms",
				"p999_ms", "max_ms", "rss_mb", "cpu_seconds", "mode", "rate", "duration_s"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("JSON lacks %q", k)
				}
			}
			var rep Report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			// 100/s for 1.8 s is 180 slots; every 10th of 50 distinct payloads
			// is undecodable: 5 of every 50.
			if rep.Sent != 180 {
				t.Errorf("sent %d, want 180", rep.Sent)
			}
			if rep.Lost != 0 || rep.Sent != rep.Results+rep.DLQ {
				t.Errorf("sent %d != results %d + dlq %d (lost %d)", rep.Sent, rep.Results, rep.DLQ, rep.Lost)
			}
			if rep.DLQ != 18 {
				t.Errorf("dlq %d, want 18", rep.DLQ)
			}
			if rep.Mode != c.args[1] || len(rep.Errors) > 0 {
				t.Errorf("mode %q errors %v", rep.Mode, rep.Errors)
			}
			if rep.Count == 0 || rep.P99 <= 0 || rep.RSSMB <= 0 || rep.ReadyMS <= 0 {
				t.Errorf("missing measurements: %+v", rep)
			}
			svg, err := os.ReadFile(plot)
			if err != nil || !bytes.HasPrefix(svg, []byte("<svg")) {
				t.Errorf("plot: %v %.40q", err, svg)
			}
			if !strings.Contains(stderr.String(), "sent") {
				t.Errorf("no progress on stderr: %q", stderr.String())
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--rate", "fast"},
		{"--rate", "-5"},
		{"--mode", "turbo"},
		{"--model-path", "carrier-pigeon"},
		{"--brokers", "127.0.0.1:1", "--model-path", "grpc"},
		{"--brokers", "127.0.0.1:1", "--mode", "baseline"},
		{"--pid", "1"},
		{"--no-such-flag"},
		{"extra"},
	} {
		err := Main(context.Background(), args, io.Discard, io.Discard)
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if err := Main(context.Background(), []string{"--help"}, io.Discard, io.Discard); err != nil {
		t.Errorf("--help: %v", err)
	}
}
