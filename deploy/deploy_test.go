// Package deploy_test checks the monitoring files shipped in deploy/: the Prometheus alert
// rules (promtool check rules and promtool test rules) and the Grafana dashboard (valid JSON,
// every query valid PromQL, only metrics infergate exports).
package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exported lists the metric families infergate serves on /metrics (docs/dashboard.md "Metrics" and docs/pipeline.md "Metrics", plus the
// web package's own) and the Go/process families the panels use.
var exported = []string{
	"infergate_requests_total", "infergate_results_total", "infergate_dlq_records_total",
	"infergate_end_to_end_latency_seconds", "infergate_predict_latency_seconds", "infergate_batch_size",
	"infergate_inflight_batches", "infergate_circuit_state", "infergate_consumer_lag", "infergate_model_status",
	"infergate_sidecar_restarts_total", "infergate_store_bytes", "infergate_store_dlq_records",
	"infergate_backend_lookup_ok",
	"infergate_disk_full", "infergate_disk_free_bytes", "infergate_disk_min_free_bytes", "infergate_data_corruption",
	"infergate_store_lost_records", "infergate_transactions_total",
	"infergate_rollout_rollbacks_total", "infergate_rollout_candidate_percent", "infergate_shadow_dropped_total",
	"infergate_shadow_compared_total", "infergate_shadow_queue",
	"process_cpu_seconds_total", "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_goroutines",
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found; CI needs Debian's prometheus package")
		}
		t.Skip("promtool not found (apt-get install prometheus)")
	}
	return p
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	run(t, ".", pt, "check", "rules", "prometheus-alerts.yml")
	run(t, ".", pt, "test", "rules", "testdata/alerts_test.yml")

	b, err := os.ReadFile("prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, "prometheus-alerts.yml", string(b))
	for _, alert := range []string{"InfergateConsumerLagGrowing", "InfergateP99LatencyHigh", "InfergateDLQRateHigh",
		"InfergateModelUnavailable", "InfergateSidecarCrashLoop", "InfergateDiskFull", "InfergateDiskNearlyFull",
		"InfergateDataCorruption", "InfergateTransactionsAborting", "InfergateRolloutRolledBack"} {
		if !strings.Contains(string(b), "alert: "+alert+"\n") {
			t.Errorf("alert %s missing", alert)
		}
	}
}

var metricRE = regexp.MustCompile(`\b((?:infergate|go|process)_[a-z0-9_]+)`)

// checkMetrics fails for metric names the appliance does not export (a typo makes a panel
// or an alert silently empty).
func checkMetrics(t *testing.T, where, text string) {
	t.Helper()
	for _, m := range metricRE.FindAllString(text, -1) {
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && slices.Contains(exported, b) {
				base = b
			}
		}
		if !slices.Contains(exported, base) {
			t.Errorf("%s: %s is not a metric infergate exports", where, m)
		}
	}
}

type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
}

func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string  `json:"uid"`
		Title  string  `json:"title"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels")
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	ids := map[int]bool{}
	n := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, p.GridPos)
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkMetrics(t, "panel "+p.Title, tg.Expr)
			// Grafana's variables become what Prometheus itself accepts, so promtool can
			// check the PromQL.
			expr := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*").Replace(tg.Expr)
			n++
			fmt.Fprintf(&rules, "      - record: dashboard:panel_%d\n        expr: %s\n", n, jsonString(expr))
		}
	}
	pt := promtool(t)
	f := filepath.Join(t.TempDir(), "panels.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, ".", pt, "check", "rules", f)
}

// jsonString quotes s for YAML (a JSON string is a valid YAML scalar).
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
