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
			var pids []int
			for j := range n {
				m := newMember(t, brokers, j)
				m.start(t)
				pids = append(pids, m.p.cmd.Process.Pid)
			}
			load := loadAvg()
			// CPU time of the instances and of this process (the kfake
			// cluster, and the test's own little work) over the bench.
			instBefore, selfBefore := cpuSeconds(pids...), cpuSeconds(os.Getpid())
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
			instCPU, selfCPU := cpuSeconds(pids...)-instBefore, cpuSeconds(os.Getpid())-selfBefore
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatalf("bench output: %v\n%s", err, stdout)
			}
			// CPU per request: what one instance would do with a core of its
			// own is about 1 / (its CPU seconds per request).
			perReq := func(cpu float64) float64 { return cpu / float64(max(r.Sent, 1)) * 1e6 }
			t.Logf("MEASURE instances=%d throughput_rps=%.0f p50_ms=%.1f p99_ms=%.1f sent=%d lost=%d other_cores=%.2f load_before=%s at=%s "+
				"instances_cpu_s=%.1f (%.1f µs/request) brokers_cpu_s=%.1f (%.1f µs/request)",
				n, r.ThroughputRPS, r.P50, r.P99, r.Sent, r.Lost, r.OtherCores, load, time.Now().UTC().Format("15:04"),
				instCPU, perReq(instCPU), selfCPU, perReq(selfCPU))
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

// cpuSeconds is the user and system CPU time of the processes, from
// /proc/<pid>/stat (clock ticks of 1/100 s, Linux's USER_HZ).
func cpuSeconds(pids ...int) float64 {
	var ticks float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		var u, s float64
		fmt.Sscan(f[11], &u) // utime: field 14 of stat, 12th after the command name
		fmt.Sscan(f[12], &s)
		ticks += u + s
	}
	return ticks / 100
}
