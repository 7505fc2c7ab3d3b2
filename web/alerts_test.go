package web

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/web/webtest"
)

func alertNames(as []Alert) string {
	var out []string
	for _, a := range as {
		out = append(out, a.Name)
	}
	return fmt.Sprint(out)
}

// TestAlertConditions evaluates each rule's condition as deploy/prometheus-alerts.yml
// states it, on both sides of its threshold.
func TestAlertConditions(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	hist := func(lag0 int64, in, dlq float64) []Point {
		var ps []Point
		for i := range 300 {
			ps = append(ps, Point{Time: t0.Add(time.Duration(i) * time.Second), LagTotal: lag0, RequestsPerSec: in, DLQPerSec: dlq})
		}
		return ps
	}
	for _, tc := range []struct {
		name string
		in   alertInputs
		want string
	}{
		{"quiet", alertInputs{snap: &Snapshot{LagTotal: 5, Circuit: "closed"}, history: hist(5, 40, 0)}, "[]"},
		{"lag large and growing", alertInputs{snap: &Snapshot{LagTotal: 1500}, history: hist(1200, 40, 0)}, "[InfergateConsumerLagGrowing]"},
		{"lag large but shrinking", alertInputs{snap: &Snapshot{LagTotal: 1500}, history: hist(4000, 40, 0)}, "[]"},
		{"lag growing but small", alertInputs{snap: &Snapshot{LagTotal: 900}, history: hist(10, 40, 0)}, "[]"},
		{"no history yet", alertInputs{snap: &Snapshot{LagTotal: 5000}}, "[]"},
		{"dlq 10% of 40/s", alertInputs{snap: &Snapshot{}, history: hist(0, 40, 4)}, "[InfergateDLQRateHigh]"},
		{"dlq 4% of 40/s", alertInputs{snap: &Snapshot{}, history: hist(0, 40, 1.6)}, "[]"},
		{"dlq 50% of 0.1/s", alertInputs{snap: &Snapshot{}, history: hist(0, 0.1, 0.05)}, "[]"},
		{"circuit open", alertInputs{snap: &Snapshot{Circuit: "open"}}, "[InfergateModelServerUnreachable]"},
		{"circuit half-open", alertInputs{snap: &Snapshot{Circuit: "half-open"}}, "[]"},
		{"model lookup failing", alertInputs{snap: &Snapshot{}, modelsErr: errors.New("connection refused")}, "[InfergateModelServerUnreachable]"},
		{"disk full", alertInputs{snap: &Snapshot{}, cur: sample{hasDisk: true, diskFull: true, diskFree: 10, diskMin: 100}}, "[InfergateDiskFull]"},
		{"disk nearly full", alertInputs{snap: &Snapshot{}, cur: sample{hasDisk: true, diskFree: 150 << 20, diskMin: 100 << 20}}, "[InfergateDiskNearlyFull]"},
		{"disk fine", alertInputs{snap: &Snapshot{}, cur: sample{hasDisk: true, diskFree: 250 << 20, diskMin: 100 << 20}}, "[]"},
	} {
		if got := alertNames(evalAlerts(tc.in, map[string]time.Time{}, t0)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}

	// Since is when the condition started holding, and is forgotten when it stops.
	since := map[string]time.Time{}
	open := alertInputs{snap: &Snapshot{Circuit: "open"}}
	evalAlerts(open, since, t0)
	if a := evalAlerts(open, since, t0.Add(time.Minute)); len(a) != 1 || !a[0].Since.Equal(t0) {
		t.Fatalf("still open a minute later: %+v", a)
	}
	evalAlerts(alertInputs{snap: &Snapshot{Circuit: "closed"}}, since, t0.Add(2*time.Minute))
	if a := evalAlerts(open, since, t0.Add(3*time.Minute)); len(a) != 1 || !a[0].Since.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("open again: %+v", a)
	}
}

// TestBrowserAlertBanner: an open circuit and a nearly full disk, in the metrics the
// appliance exports, show as a banner on every view; a closed circuit takes its alert away.
func TestBrowserAlertBanner(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	env := newEnv(t, func(c *Config) { c.EventsInterval = 100 * time.Millisecond })
	free := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "infergate_disk_free_bytes", Help: "free"}, []string{"component"})
	env.backend.reg.MustRegister(free,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "infergate_disk_min_free_bytes", Help: "floor"}, func() float64 { return 100 << 20 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "infergate_disk_full", Help: "full"}, func() float64 { return 0 }))
	free.WithLabelValues("store").Set(150 << 20)
	free.WithLabelValues("broker").Set(900 << 20)
	env.backend.circuit.Set(1)

	ctx := webtest.NewBrowser(t)
	webtest.Login(t, ctx, env.base, testToken)
	webtest.WaitJS(t, ctx, "two alerts", `document.querySelectorAll('#alerts [data-alert]').length === 2`)
	text := webtest.Text(t, ctx, "#alerts")
	for _, want := range []string{"circuit is open", "150 MiB free", "InfergateDiskNearlyFull", "critical"} {
		if !strings.Contains(text, want) {
			t.Errorf("banner %q lacks %q", text, want)
		}
	}
	webtest.Go(t, ctx, env.base, "dlq")
	if !webtest.Eval[bool](t, ctx, `!document.querySelector('#alerts').hidden`) {
		t.Error("the banner is not shown on the DLQ view")
	}
	env.backend.circuit.Set(0)
	webtest.WaitJS(t, ctx, "the circuit's alert gone", `[...document.querySelectorAll('#alerts [data-alert]')].map(a => a.dataset.alert).join() === 'InfergateDiskNearlyFull'`)
	free.WithLabelValues("store").Set(500 << 20)
	webtest.WaitJS(t, ctx, "no alerts", `document.querySelector('#alerts').hidden`)
}
