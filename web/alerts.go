package web

import (
	"fmt"
	"time"
)

// The dashboard's alert banner: the conditions of the shipped alert rules
// (deploy/prometheus-alerts.yml), computed in-process from the same metrics the snapshots
// come from, so an operator without Prometheus sees what would page. The banner shows a
// condition as soon as it holds, with the time it started holding; the rules' "for" waits
// (Prometheus fires after that long) are left to Prometheus.
//
// Windows follow the rules where the sampler's history reaches: rates over the history
// (up to 5 minutes, the rules' rate windows); "growing" lag over the history too (the rule
// looks back 10 minutes, the history holds 5).

// Alert rule thresholds, as in deploy/prometheus-alerts.yml.
const (
	alertLagMin       = 1000 // InfergateConsumerLagGrowing: lag above this and growing
	alertDLQRateMin   = 0.1  // InfergateDLQRateHigh: dead-lettered per second above this …
	alertDLQShareMin  = 0.05 // … and above this share of the requests
	alertDiskFloorMul = 2    // InfergateDiskNearlyFull: free below twice min_free_bytes
)

// Alert is one rule whose condition holds. The dashboard words it from Name and Value in
// the reader's language; Summary is the English, for API clients.
type Alert struct {
	Name     string    `json:"name"` // the rule's name in deploy/prometheus-alerts.yml
	Severity string    `json:"severity"`
	Summary  string    `json:"summary"`
	Value    float64   `json:"value"`
	Since    time.Time `json:"since"`
}

// alertInputs is what the conditions read: the snapshot being built, the history before it
// and the latest sample.
type alertInputs struct {
	snap      *Snapshot
	history   []Point
	cur       sample
	modelsErr error // the last model lookup failed
}

// evalAlerts returns the rules whose conditions hold, in the rules file's order, with since
// from the previous evaluation where the condition already held.
func evalAlerts(in alertInputs, since map[string]time.Time, now time.Time) []Alert {
	var out []Alert
	add := func(name, severity string, value float64, summary string) {
		if _, ok := since[name]; !ok {
			since[name] = now.UTC()
		}
		out = append(out, Alert{Name: name, Severity: severity, Value: value, Summary: summary, Since: since[name]})
	}
	s := in.snap
	if len(in.history) > 0 && s.LagTotal > alertLagMin && s.LagTotal > in.history[0].LagTotal {
		add("InfergateConsumerLagGrowing", "warning", float64(s.LagTotal),
			fmt.Sprintf("consumer lag is %d and growing", s.LagTotal))
	}
	var in5, dlq5 float64
	for _, p := range in.history {
		in5 += p.RequestsPerSec
		dlq5 += p.DLQPerSec
	}
	if n := float64(len(in.history)); n > 0 {
		in5, dlq5 = in5/n, dlq5/n
		if dlq5 > alertDLQRateMin && dlq5/max(in5, 1e-9) > alertDLQShareMin {
			add("InfergateDLQRateHigh", "warning", dlq5/max(in5, 1e-9),
				fmt.Sprintf("%.0f%% of requests are dead-lettered (%.2f/s over %s)", 100*dlq5/max(in5, 1e-9), dlq5, in.history[len(in.history)-1].Time.Sub(in.history[0].Time).Round(time.Second)))
		}
	}
	if s.Circuit == "open" {
		add("InfergateModelServerUnreachable", "critical", 1, "the circuit is open: the model server is not answering, requests wait")
	} else if in.modelsErr != nil {
		add("InfergateModelServerUnreachable", "critical", 0, "the model server cannot be asked for its models: "+in.modelsErr.Error())
	}
	if c := in.cur; c.hasDisk {
		switch {
		case c.diskFull:
			add("InfergateDiskFull", "critical", c.diskFree, "disk full: consumption paused")
		case c.diskMin > 0 && c.diskFree < alertDiskFloorMul*c.diskMin:
			add("InfergateDiskNearlyFull", "warning", c.diskFree, fmt.Sprintf("%s free in the data dir, under twice min_free_bytes (%s)",
				humanBytes(int64(c.diskFree)), humanBytes(int64(c.diskMin))))
		}
	}
	held := map[string]bool{}
	for _, a := range out {
		held[a.Name] = true
	}
	for name := range since {
		if !held[name] {
			delete(since, name)
		}
	}
	return out
}
