package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"
)

// TestShadowRun: --shadow runs the self-contained pipeline with version 2 of
// the demo model shadowing every request. It checks that the run completes
// with every request answered and that the shadow compared requests; the
// cost in latency is for a quiet machine to measure (docs/models.md), not
// for a test to assert.
func TestShadowRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an appliance")
	}
	args := []string{"--rate", "100", "--duration", "1500ms", "--warmup", "300ms", "--partitions", "2",
		"--payloads", "50", "--durability", "os", "--json", "--shadow"}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Main(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("bench --shadow: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not one JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Lost != 0 || rep.Sent == 0 || rep.Sent != rep.Results+rep.DLQ {
		t.Errorf("sent %d, results %d, dlq %d, lost %d", rep.Sent, rep.Results, rep.DLQ, rep.Lost)
	}
	s := rep.Shadow
	if s == nil || s.Error != "" || s.Model != "demo" {
		t.Fatalf("shadow figures %+v", s)
	}
	if s.Compared == 0 || int64(s.Compared)+s.Dropped > rep.Sent {
		t.Errorf("the shadow compared %d and skipped %d of %d requests", s.Compared, s.Dropped, rep.Sent)
	}
	if s.Compared > 0 && s.Agreement != 1 {
		t.Errorf("version 2 is a copy of version 1, yet agreement is %v", s.Agreement)
	}
}

func TestShadowUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--shadow", "--mode", "baseline"},
		{"--shadow", "--model-path", "grpc"},
		{"--shadow", "--brokers", "127.0.0.1:1"},
		{"--shadow", "--compare"},
	} {
		err := Main(context.Background(), args, io.Discard, io.Discard)
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}
