package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMeasureGroupScaling measures `infergate bench --brokers … --rate max`
// against 1, 2 and 3 instances attached to a three-broker kfake cluster (in
// this test process, with a data dir), in interleaved rounds (1, 2, 3, 3, 2,
// 1, …), each on a fresh cluster, with the machine's load average before
// each run. Numbers go to docs/scaling.md. A measurement, not a check:
//
//	INFERGATE_MEASURE=1 go test ./cmd/infergate -run TestMeasureGroupScaling -v -timeout 30m
//
// INFERGATE_MEASURE_ROUNDS (default 2) and INFERGATE_MEASURE_DURATION
// (default 20s) change the rounds and each bench's duration.
func TestMeasureGroupScaling(t *testing.T) {
	if os.Getenv("INFERGATE_MEASURE") == "" {
		t.Skip("measurement; set INFERGATE_MEASURE=1")
	}
	rounds := 2
	if v := os.Getenv("INFERGATE_MEASURE_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	duration := "20s"
	if v := os.Getenv("INFERGATE_MEASURE_DURATION"); v != "" {
		duration = v
	}
	var order []int
	for r := range rounds {
		if r%2 == 0 {
			order = append(order, 1, 2, 3)
		} else {
			order = append(order, 3, 2, 1)
		}
	}
	for i, n := range order {
		t.Run(fmt.Sprintf("run%d-%dinstances", i, n), func(t *testing.T) {
			brokers := groupCluster(t)
			for j := range n {
				newMember(t, brokers, j).start(t)
			}
			load := loadAvg()
			stdout, stderr, code := infergate(t, "", "bench", "--brokers", strings.Join(brokers, ","),
				"--rate", "max", "--duration", duration, "--json")
			if code != 0 {
				t.Fatalf("bench: exit %d\n%s", code, stderr)
			}
			var r struct {
				Sent          int64   `json:"sent"`
				Lost          int64   `json:"lost"`
				ThroughputRPS float64 `json:"throughput_rps"`
				P50           float64 `json:"p50_ms"`
				P99           float64 `json:"p99_ms"`
				OtherCores    float64 `json:"other_cores"`
			}
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatalf("bench output: %v\n%s", err, stdout)
			}
			t.Logf("MEASURE instances=%d throughput_rps=%.0f p50_ms=%.1f p99_ms=%.1f sent=%d lost=%d other_cores=%.2f load_before=%s at=%s",
				n, r.ThroughputRPS, r.P50, r.P99, r.Sent, r.Lost, r.OtherCores, load, time.Now().UTC().Format("15:04"))
		})
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
