package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
)

// flow feeds traffic into the backend until the test ends.
func flow(t *testing.T, b *memBackend, perTick int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				b.traffic(perTick)
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

type sseEvent struct {
	name string
	data string
}

// readEvents streams server-sent events from path into a channel.
func (e *testEnv) readEvents(ctx context.Context, path string) <-chan sseEvent {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		e.t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 16)
	go func() {
		defer close(ch)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
				ev = sseEvent{}
			}
		}
	}()
	return ch
}

func TestEventsStreamMoves(t *testing.T) {
	env := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := env.readEvents(ctx, "/api/v1/events")
	first := <-events
	if first.name != "history" {
		t.Fatalf("first event %q, want history", first.name)
	}
	var hist []Point
	if err := json.Unmarshal([]byte(first.data), &hist); err != nil {
		t.Fatalf("history: %v", err)
	}
	flow(t, env.backend, 5)
	putRecords(t, env.store, seedRecord("decode"))
	env.backend.dlq.WithLabelValues("decode", "demo").Add(3)

	var last Snapshot
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.name != "snapshot" {
				continue
			}
			if err := json.Unmarshal([]byte(ev.data), &last); err != nil {
				t.Fatalf("snapshot %s: %v", ev.data, err)
			}
		case <-deadline:
			t.Fatalf("snapshot never showed traffic; last %+v", last)
		}
		if last.RequestsPerSec > 0 && last.ResultsPerSec > 0 && last.LatencyP50 != nil && last.LatencyP99 != nil &&
			last.PredictP99 != nil && len(last.Lag) == 3 && len(last.Models) == 1 && last.StoreRecords == 1 &&
			last.ErrorsTotal["decode"] == 3 && last.Pipeline == StateOK && last.BatchSizeAvg != nil {
			break
		}
	}
	// Observations are 4..24 ms; bucket interpolation can place them anywhere in the
	// buckets that hold them, 4..32 ms.
	if *last.LatencyP50 < 4 || *last.LatencyP99 > 32 || *last.LatencyP50 > *last.LatencyP99 {
		t.Fatalf("latency p50 %v p99 %v ms outside the buckets of the observed 4..24 ms", *last.LatencyP50, *last.LatencyP99)
	}
	if env.srv.sampler.subscribers() != 1 {
		t.Fatalf("%d subscribers", env.srv.sampler.subscribers())
	}
	cancel()
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := env.srv.sampler.subscribers(); n != 0 {
			return fmt.Errorf("%d subscribers after the client left", n)
		}
		return nil
	})
}

func seedRecord(class string) *store.Record {
	return &store.Record{Class: class, Value: []byte("not json"), Message: "request is not JSON"}
}

func TestQuantile(t *testing.T) {
	b := buckets{0.01: 50, 0.1: 90, 1: 100, math.Inf(1): 100}
	for _, tc := range []struct{ q, want float64 }{{0.5, 0.01}, {0.25, 0.005}, {0.7, 0.055}, {0.99, 0.91}} {
		got, ok := b.quantile(tc.q)
		if !ok || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if _, ok := (buckets{math.Inf(1): 0}).quantile(0.5); ok {
		t.Error("quantile of an empty histogram")
	}
	// Beyond the last finite bucket, the answer is that bucket's bound.
	if got, _ := (buckets{0.1: 1, math.Inf(1): 10}).quantile(0.99); got != 0.1 {
		t.Errorf("overflow quantile %v", got)
	}
	d := (buckets{0.1: 5, math.Inf(1): 8}).minus(buckets{0.1: 2, math.Inf(1): 2})
	if d[0.1] != 3 || d[math.Inf(1)] != 6 {
		t.Errorf("minus %v", d)
	}
	// A reset histogram is taken as is.
	if d := (buckets{0.1: 1, math.Inf(1): 1}).minus(buckets{0.1: 5, math.Inf(1): 5}); d[0.1] != 1 {
		t.Errorf("minus after reset %v", d)
	}
	if r := rate(3, 10, 1); r != 3 {
		t.Errorf("rate after counter reset %v", r)
	}
}

// scrape fetches /metrics and parses it.
func (e *testEnv) scrape(auth string) map[string]*dto.MetricFamily {
	e.t.Helper()
	r := e.call("GET", "/metrics", auth, nil)
	expectCode(e.t, r, 200)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(r.body)))
	if err != nil {
		e.t.Fatalf("parsing /metrics: %v\n%s", err, r.body)
	}
	return fams
}

func sumFamily(f *dto.MetricFamily) float64 {
	if f == nil {
		return 0
	}
	var s float64
	for _, m := range f.GetMetric() {
		switch {
		case m.GetHistogram() != nil:
			s += float64(m.GetHistogram().GetSampleCount())
		default:
			s += value(m)
		}
	}
	return s
}

func TestMetricsWhileTrafficFlows(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.EventsInterval = time.Second })
	putRecords(t, env.store, seedRecord("decode"), seedRecord("decode"), seedRecord("model"))
	env.backend.traffic(3)
	flow(t, env.backend, 3)

	fams := env.scrape("")
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "infergate_store_bytes",
		"infergate_store_dlq_records", "infergate_consumer_lag", "infergate_requests_total"} {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if got := sumFamily(fams["infergate_store_dlq_records"]); got != 3 {
		t.Errorf("infergate_store_dlq_records sums to %v, want 3", got)
	}
	if n := len(fams["infergate_consumer_lag"].GetMetric()); n != 3 {
		t.Errorf("%d lag series, want 3 partitions", n)
	}
	if ms := fams["infergate_model_status"].GetMetric(); len(ms) != 1 || label(ms[0], "model") != "demo" ||
		label(ms[0], "version") != "1" || label(ms[0], "state") != ModelAvailable {
		t.Errorf("infergate_model_status %v", ms)
	}
	if got := sumFamily(fams["infergate_backend_lookup_ok"]); got != 2 {
		t.Errorf("infergate_backend_lookup_ok sums to %v, want 2 (topics, models)", got)
	}
	if fams["infergate_sidecar_restarts_total"] != nil {
		t.Errorf("sidecar restarts exported without a sidecar")
	}
	env.backend.mu.Lock()
	env.backend.sidecar = &SidecarStatus{Mode: "sidecar", State: "running", Restarts: 4}
	env.backend.mu.Unlock()
	if got := sumFamily(env.scrape("")["infergate_sidecar_restarts_total"]); got != 4 {
		t.Errorf("infergate_sidecar_restarts_total %v, want 4", got)
	}
	// Lag and latency series move while requests flow: end offsets grow, so the lag series
	// see new values, and the latency histogram counts grow.
	lat0 := sumFamily(fams["infergate_end_to_end_latency_seconds"])
	offs0 := env.backend.offsetsSum()
	testutil.Eventually(t, 20*time.Second, func() error {
		f := env.scrape("")
		if lat := sumFamily(f["infergate_end_to_end_latency_seconds"]); lat <= lat0 {
			return fmt.Errorf("latency count %v did not grow from %v", lat, lat0)
		}
		if env.backend.offsetsSum() <= offs0 {
			return errNotYet
		}
		if f["infergate_consumer_lag"] == nil || env.backend.callCount("topics") < 2 {
			return fmt.Errorf("lag not looked up again (%d lookups)", env.backend.callCount("topics"))
		}
		return nil
	})
}

func TestMetricsNoDuplicateCollectors(t *testing.T) {
	// An appliance registry that already has the Go collector: web must not add a second.
	env := newEnv(t)
	reg := env.backend.reg
	reg.MustRegister(collectors.NewGoCollector())
	env2 := startEnvWithRegistry(t, env, reg)
	r := env2.call("GET", "/metrics", "", nil)
	expectCode(t, r, 200)
	if n := strings.Count(string(r.body), "\ngo_goroutines "); n != 1 {
		t.Fatalf("go_goroutines appears %d times", n)
	}
	// The pipeline's own infergate_consumer_lag wins over web's, and web then does not ask
	// the broker for lag at all.
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "infergate_consumer_lag", Help: "from the pipeline"}, []string{"topic", "partition"})
	g.WithLabelValues("inference_requests", "0").Set(7)
	g.WithLabelValues("inference_requests", "1").Set(11)
	reg.MustRegister(g)
	env2.srv.topics.invalidate()
	before := env.backend.callCount("topics")
	r = env2.call("GET", "/metrics", "", nil)
	expectCode(t, r, 200)
	if !strings.Contains(string(r.body), "# HELP infergate_consumer_lag from the pipeline") ||
		strings.Count(string(r.body), "# TYPE infergate_consumer_lag ") != 1 {
		t.Fatalf("consumer lag family not deduplicated:\n%s", r.body)
	}
	if n := env.backend.callCount("topics") - before; n != 0 {
		t.Fatalf("scrape asked the backend for topics %d times although the pipeline exports lag", n)
	}
	// The dashboard's snapshots show the pipeline's lag too.
	testutil.Eventually(t, 10*time.Second, func() error {
		snap := env2.srv.sampler.snapshotNow()
		if len(snap.Lag) != 2 || snap.LagTotal != 18 || snap.Lag[1].Partition != 1 {
			return fmt.Errorf("snapshot lag %+v total %d", snap.Lag, snap.LagTotal)
		}
		return nil
	})
}

func TestMetricsAuth(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.MetricsAuth = true })
	expectCode(t, env.call("GET", "/metrics", "", nil), http.StatusUnauthorized)
	env.scrape(testToken)
}

// Run must return promptly while a dashboard still holds an event stream open.
func TestShutdownWithOpenStream(t *testing.T) {
	st := newEnv(t).store // a store for the second server; its env shuts down normally
	b := newMemBackend(st)
	cfg := DefaultConfig()
	cfg.Listen, cfg.AdminToken, cfg.EventsInterval = "127.0.0.1:0", testToken, 50*time.Millisecond
	srv, err := New(cfg, testutil.Logger(t), b, st, b.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	env := &testEnv{t: t, srv: srv, backend: b, store: st, base: srv.URL()}
	events := env.readEvents(context.Background(), "/api/v1/events")
	if ev := <-events; ev.name != "history" {
		t.Fatalf("first event %q", ev.name)
	}
	srv.SetStopping()
	expectCode(t, env.call("GET", "/readyz", "", nil), http.StatusServiceUnavailable)
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(cfg.ShutdownTimeout):
		t.Fatal("Run waited for the event stream")
	}
	for range events { // the stream ends
	}
}

// The Ingress view's data: GET /api/v1/ingress says when the ingress is off and
// otherwise passes the backend's status through; the snapshots carry the
// ingress's rates from the infergate_ingress_* metrics, and none while those do
// not exist.
func TestIngressStatusAndRates(t *testing.T) {
	env := newEnv(t)
	var off struct {
		Enabled bool `json:"enabled"`
	}
	r := env.api("GET", "/api/v1/ingress", nil)
	expectCode(t, r, 200)
	r.json(t, &off)
	if off.Enabled {
		t.Fatalf("ingress off: %s", r.body)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if snap := env.srv.sampler.snapshotNow(); snap.Time.IsZero() || snap.Ingress != nil {
			return fmt.Errorf("snapshot at %v with ingress %+v", snap.Time, snap.Ingress)
		}
		return nil
	})

	at := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	env.backend.mu.Lock()
	env.backend.ingress = &IngressStatus{Server: "nats-server 2.15.3 (embedded)", AnswerQoS: 1,
		Listeners: []IngressListener{{Protocol: "mqtt", Address: "127.0.0.1:1883"}},
		Clients:   map[string]int{"mqtt": 3, "nats": 1},
		Rejects:   []IngressReject{{At: at, Reason: "credentials", Client: "press2", Detail: "bad or missing credentials"}}}
	env.backend.mu.Unlock()
	var on struct {
		Enabled bool `json:"enabled"`
		IngressStatus
	}
	r = env.api("GET", "/api/v1/ingress", nil)
	expectCode(t, r, 200)
	r.json(t, &on)
	if !on.Enabled || on.Clients["mqtt"] != 3 || len(on.Rejects) != 1 || on.Rejects[0].Client != "press2" || !on.Rejects[0].At.Equal(at) {
		t.Fatalf("ingress on: %s", r.body)
	}

	received := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infergate_ingress_received_total", Help: "test"}, []string{"origin", "path"})
	rejects := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infergate_ingress_rejects_total", Help: "test"}, []string{"reason"})
	clients := prometheus.NewGauge(prometheus.GaugeOpts{Name: "infergate_ingress_clients", Help: "test"})
	env.backend.reg.MustRegister(received, rejects, clients)
	clients.Set(4)
	rejects.WithLabelValues("permission").Add(2)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				received.WithLabelValues("mqtt", "durable").Add(2)
				received.WithLabelValues("mqtt", "at-most-once").Inc()
			}
		}
	}()
	testutil.Eventually(t, 10*time.Second, func() error {
		ing := env.srv.sampler.snapshotNow().Ingress
		if ing == nil || ing.Clients != 4 || ing.InPerSec["mqtt"] <= 0 || ing.InPerSec["nats"] != 0 || ing.RejectsTotal["permission"] != 2 {
			return fmt.Errorf("ingress rates %+v", ing)
		}
		return nil
	})
}
