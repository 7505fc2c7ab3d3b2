package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/ingress"
	"github.com/infergate/infergate/store"
)

// The dashboard's live numbers come from the same Prometheus registry that /metrics serves:
// the sampler gathers it every EventsInterval and turns counters into rates and histogram
// buckets into quantiles over a short window, the way a PromQL rate() or
// histogram_quantile() would. The pipeline therefore needs no second, dashboard-only
// bookkeeping, and the dashboard shows exactly what Prometheus would.

// Names of the data dir's disk-health metrics, which the appliance registers
// (appliance/health.go) and the alert banner reads. Web owns them because the
// appliance imports web, not the other way round.
const (
	MetricDiskFree    = "infergate_disk_free_bytes"
	MetricDiskMinFree = "infergate_disk_min_free_bytes"
	MetricDiskFull    = "infergate_disk_full"
)

const (
	rateWindow  = 5 * time.Second
	quantWindow = 10 * time.Second
	historyLen  = 300
	// slowEvery: models and status are asked for every this many ticks (they change rarely
	// and each call may cross the network to TF Serving).
	slowEvery = 5
)

// Snapshot is one event of /api/v1/events. Rates are per second over the last few seconds;
// latencies are in milliseconds over the last ten seconds, null without observations.
type Snapshot struct {
	Time            time.Time          `json:"time"`
	RequestsPerSec  float64            `json:"requests_per_sec"`
	ResultsPerSec   float64            `json:"results_per_sec"`
	DLQPerSec       float64            `json:"dlq_per_sec"`
	RequestsTotal   float64            `json:"requests_total"`
	ResultsTotal    float64            `json:"results_total"`
	DLQTotal        float64            `json:"dlq_total"`
	LatencyP50      *float64           `json:"latency_p50_ms"`
	LatencyP99      *float64           `json:"latency_p99_ms"`
	PredictP50      *float64           `json:"predict_p50_ms"`
	PredictP99      *float64           `json:"predict_p99_ms"`
	BatchSizeAvg    *float64           `json:"batch_size_avg"`
	InflightBatches float64            `json:"inflight_batches"`
	Circuit         string             `json:"circuit"` // closed, open, half-open; "" if the pipeline does not export it
	ErrorsPerSec    map[string]float64 `json:"errors_per_sec"`
	ErrorsTotal     map[string]float64 `json:"errors_total"`
	Lag             []PartitionLag     `json:"lag"`
	LagTotal        int64              `json:"lag_total"`
	LagError        string             `json:"lag_error,omitempty"`
	Pipeline        string             `json:"pipeline,omitempty"` // pipeline component state
	Models          []Model            `json:"models"`
	StoreRecords    int64              `json:"store_records"`
	StoreBytes      int64              `json:"store_bytes"`
	// Ingress is the edge ingress's traffic; absent when it is off.
	Ingress *IngressRates `json:"ingress,omitempty"`
	// Alerts are the shipped alert rules whose conditions hold now (alerts.go).
	Alerts []Alert `json:"alerts"`
}

// IngressRates are the ingress's rates per second (over the last few seconds) and totals
// since start, from the infergate_ingress_* metrics.
type IngressRates struct {
	Clients       float64            `json:"clients"`
	AcksPending   float64            `json:"acks_pending"`
	InPerSec      map[string]float64 `json:"in_per_sec"`      // requests from devices by protocol
	AnswersPerSec map[string]float64 `json:"answers_per_sec"` // result, error
	ErrorsPerSec  map[string]float64 `json:"errors_per_sec"`  // by stage
	RejectsPerSec map[string]float64 `json:"rejects_per_sec"` // by reason
	InTotal       map[string]float64 `json:"in_total"`
	ErrorsTotal   map[string]float64 `json:"errors_total"`
	RejectsTotal  map[string]float64 `json:"rejects_total"`
}

// Point is one entry of the history sent when a client connects, for the charts.
type Point struct {
	Time           time.Time `json:"t"`
	RequestsPerSec float64   `json:"in"`
	ResultsPerSec  float64   `json:"out"`
	DLQPerSec      float64   `json:"dlq"`
	LatencyP50     *float64  `json:"p50"`
	LatencyP99     *float64  `json:"p99"`
	LagTotal       int64     `json:"lag"`
}

// sample is the raw state of the counters at one instant.
type sample struct {
	at         time.Time
	requests   float64
	results    float64
	dlq        map[string]float64 // by class, summed over models
	e2e        buckets
	predict    buckets
	batchSum   float64
	batchCnt   float64
	inflight   float64
	circuit    float64
	hasCircuit bool
	lag        []PartitionLag // from the pipeline's gauge, if it exports one
	hasLag     bool
	ingress    *ingressSample // nil: no ingress metrics
	// Disk health: free bytes (the least of the data dir's parts), the floor, full.
	diskFree, diskMin float64
	diskFull, hasDisk bool
}

// ingressSample is the ingress's counters at one instant, by label.
type ingressSample struct {
	in, replies, errors, rejects map[string]float64
	clients, pending             float64
}

func (s *sample) ing() *ingressSample {
	if s.ingress == nil {
		s.ingress = &ingressSample{in: map[string]float64{}, replies: map[string]float64{},
			errors: map[string]float64{}, rejects: map[string]float64{}}
	}
	return s.ingress
}

// buckets is a cumulative histogram summed over label sets: upper bound → count.
type buckets map[float64]float64

type sampler struct {
	gatherer prometheus.Gatherer
	backend  Backend
	store    *store.Store
	topics   *cache
	models   *cache
	interval time.Duration
	log      *slog.Logger
	lagLog   onceLogger
	slowLog  onceLogger

	mu      sync.Mutex
	samples []sample // oldest first, enough to cover quantWindow
	history []Point
	last    []byte // latest snapshot JSON
	subs    map[chan []byte]struct{}
	shown   []Model // models as last looked up for the snapshots
	pipe    string
	tick    int
	// modelsErr is the last model lookup's error; alertSince when each alert's condition
	// started holding.
	modelsErr  error
	alertSince map[string]time.Time
}

func newSampler(g prometheus.Gatherer, b Backend, st *store.Store, topics, models *cache, interval time.Duration, log *slog.Logger) *sampler {
	return &sampler{gatherer: g, backend: b, store: st, topics: topics, models: models, interval: interval, log: log,
		subs: map[chan []byte]struct{}{}, alertSince: map[string]time.Time{}}
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	s.step(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.step(ctx)
		}
	}
}

// step takes one sample and, if anyone is watching, publishes a snapshot. Samples are taken
// even with nobody watching, so a dashboard opened later shows rates and history at once.
func (s *sampler) step(ctx context.Context) {
	now := time.Now()
	cur := s.read(now)

	s.mu.Lock()
	s.samples = append(s.samples, cur)
	// Keep just enough to reach back quantWindow (plus one tick of slack).
	for len(s.samples) > 2 && now.Sub(s.samples[1].at) >= quantWindow+s.interval {
		s.samples = s.samples[1:]
	}
	watching := len(s.subs) > 0
	needSlow := s.tick%slowEvery == 0 || s.shown == nil
	s.tick++
	s.mu.Unlock()

	snap := s.snapshot(cur)
	if cur.hasLag {
		snap.Lag = cur.lag
	}
	if watching {
		// Backend calls cross the network; bound them by the tick so a stuck broker cannot
		// stall the stream.
		cctx, cancel := context.WithTimeout(ctx, max(s.interval, time.Second))
		if !cur.hasLag {
			v, err := s.topics.get(cctx)
			s.lagLog.report(s.log, "consumer lag lookup", err)
			if err != nil {
				snap.LagError = err.Error()
			}
			topics, _ := v.([]Topic)
			snap.Lag = lagOf(topics)
		}
		if needSlow {
			s.refreshSlow(cctx)
		}
		cancel()
	}
	for _, l := range snap.Lag {
		snap.LagTotal += l.Lag
	}
	st := s.store.Stats()
	snap.StoreRecords = st.Records
	snap.StoreBytes = st.LSMBytes + st.VLogBytes

	s.mu.Lock()
	defer s.mu.Unlock()
	snap.Models = s.shown
	snap.Pipeline = s.pipe
	if snap.Models == nil {
		snap.Models = []Model{}
	}
	snap.Alerts = evalAlerts(alertInputs{snap: &snap, history: s.history, cur: cur, modelsErr: s.modelsErr}, s.alertSince, now)
	if snap.Alerts == nil {
		snap.Alerts = []Alert{}
	}
	b, err := json.Marshal(snap)
	if err != nil {
		s.log.Error("encoding event snapshot", "err", err)
		return
	}
	s.last = b
	s.history = append(s.history, Point{Time: snap.Time, RequestsPerSec: snap.RequestsPerSec, ResultsPerSec: snap.ResultsPerSec,
		DLQPerSec: snap.DLQPerSec, LatencyP50: snap.LatencyP50, LatencyP99: snap.LatencyP99, LagTotal: snap.LagTotal})
	if len(s.history) > historyLen {
		s.history = slices.Delete(s.history, 0, len(s.history)-historyLen)
	}
	for ch := range s.subs {
		select {
		case ch <- b:
		default: // a slow client misses a snapshot rather than holding up the others
		}
	}
}

func (s *sampler) refreshSlow(ctx context.Context) {
	v, err := s.models.get(ctx)
	modelsErr := err
	models, _ := v.([]Model)
	var pipe string
	if err == nil {
		var st *Status
		st, err = s.backend.Status(ctx)
		if st != nil {
			pipe = st.Pipeline.State
		}
	}
	s.slowLog.report(s.log, "model and status lookup for the dashboard", err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.modelsErr = modelsErr
	if models != nil {
		s.shown = models
	} else if s.shown == nil {
		s.shown = []Model{}
	}
	if pipe != "" {
		s.pipe = pipe
	}
}

// read gathers the registry into a sample. A gather error still yields whatever families
// came back.
func (s *sampler) read(now time.Time) sample {
	fams, err := s.gatherer.Gather()
	if err != nil {
		s.log.Debug("gathering metrics for the dashboard", "err", err)
	}
	out := sample{at: now, dlq: map[string]float64{}, e2e: buckets{}, predict: buckets{}}
	for _, f := range fams {
		switch f.GetName() {
		case pipeline.MetricRequests:
			out.requests = sumValues(f)
		case pipeline.MetricResults:
			out.results = sumValues(f)
		case pipeline.MetricDLQRecords:
			for _, m := range f.GetMetric() {
				out.dlq[label(m, "class")] += value(m)
			}
		case pipeline.MetricEndToEndLatency:
			addBuckets(out.e2e, f)
		case pipeline.MetricPredictLatency:
			addBuckets(out.predict, f)
		case pipeline.MetricBatchSize:
			for _, m := range f.GetMetric() {
				if h := m.GetHistogram(); h != nil {
					out.batchSum += h.GetSampleSum()
					out.batchCnt += float64(h.GetSampleCount())
				}
			}
		case ingress.MetricReceived:
			for _, m := range f.GetMetric() {
				out.ing().in[label(m, "origin")] += value(m)
			}
		case ingress.MetricReplies:
			for _, m := range f.GetMetric() {
				out.ing().replies[label(m, "kind")] += value(m)
			}
		case ingress.MetricErrors:
			for _, m := range f.GetMetric() {
				out.ing().errors[label(m, "stage")] += value(m)
			}
		case ingress.MetricRejects:
			for _, m := range f.GetMetric() {
				out.ing().rejects[label(m, "reason")] += value(m)
			}
		case ingress.MetricClients:
			out.ing().clients = sumValues(f)
		case ingress.MetricAcksPending:
			out.ing().pending = sumValues(f)
		case MetricDiskFree:
			for i, m := range f.GetMetric() {
				if v := value(m); i == 0 || v < out.diskFree {
					out.diskFree = v
				}
				out.hasDisk = true
			}
		case MetricDiskMinFree:
			out.diskMin = sumValues(f)
		case MetricDiskFull:
			out.diskFull = sumValues(f) > 0
			out.hasDisk = true
		case pipeline.MetricInflightBatches:
			out.inflight = sumValues(f)
		case pipeline.MetricCircuitState:
			out.circuit = sumValues(f)
			out.hasCircuit = len(f.GetMetric()) > 0
		case pipeline.MetricConsumerLag:
			out.hasLag = true
			for _, m := range f.GetMetric() {
				p, _ := strconv.ParseInt(label(m, "partition"), 10, 32)
				out.lag = append(out.lag, PartitionLag{Topic: label(m, "topic"), Partition: int32(p), Lag: int64(value(m))})
			}
			slices.SortFunc(out.lag, func(a, b PartitionLag) int {
				if a.Topic != b.Topic {
					return strings.Compare(a.Topic, b.Topic)
				}
				return int(a.Partition - b.Partition)
			})
		}
	}
	return out
}

// snapshot computes rates and quantiles from the samples ending with cur.
func (s *sampler) snapshot(cur sample) Snapshot {
	s.mu.Lock()
	rateBase := s.baseFor(cur.at, rateWindow)
	quantBase := s.baseFor(cur.at, quantWindow)
	s.mu.Unlock()

	snap := Snapshot{
		Time:            cur.at.UTC(),
		RequestsTotal:   cur.requests,
		ResultsTotal:    cur.results,
		InflightBatches: cur.inflight,
		ErrorsPerSec:    map[string]float64{},
		ErrorsTotal:     map[string]float64{},
		Lag:             []PartitionLag{},
	}
	for class, v := range cur.dlq {
		snap.ErrorsTotal[class] = v
		snap.DLQTotal += v
	}
	if cur.hasCircuit {
		snap.Circuit = circuitName(cur.circuit)
	}
	if rateBase != nil {
		dt := cur.at.Sub(rateBase.at).Seconds()
		snap.RequestsPerSec = rate(cur.requests, rateBase.requests, dt)
		snap.ResultsPerSec = rate(cur.results, rateBase.results, dt)
		for class, v := range cur.dlq {
			r := rate(v, rateBase.dlq[class], dt)
			snap.ErrorsPerSec[class] = r
			snap.DLQPerSec += r
		}
	}
	if cur.ingress != nil {
		snap.Ingress = ingressRates(cur, rateBase)
	}
	if quantBase != nil {
		d := cur.e2e.minus(quantBase.e2e)
		snap.LatencyP50 = ms(d.quantile(0.5))
		snap.LatencyP99 = ms(d.quantile(0.99))
		p := cur.predict.minus(quantBase.predict)
		snap.PredictP50 = ms(p.quantile(0.5))
		snap.PredictP99 = ms(p.quantile(0.99))
		if n := cur.batchCnt - quantBase.batchCnt; n > 0 {
			avg := round((cur.batchSum - quantBase.batchSum) / n)
			snap.BatchSizeAvg = &avg
		}
	}
	return snap
}

// ingressRates computes the ingress's rates from cur and base (nil base: totals only).
func ingressRates(cur sample, base *sample) *IngressRates {
	c := cur.ingress
	out := &IngressRates{Clients: c.clients, AcksPending: c.pending,
		InPerSec: map[string]float64{}, AnswersPerSec: map[string]float64{}, ErrorsPerSec: map[string]float64{},
		RejectsPerSec: map[string]float64{}, InTotal: c.in, ErrorsTotal: c.errors, RejectsTotal: c.rejects}
	if base == nil {
		return out
	}
	var prev ingressSample
	if base.ingress != nil {
		prev = *base.ingress
	}
	dt := cur.at.Sub(base.at).Seconds()
	for _, x := range []struct {
		cur, prev, dst map[string]float64
	}{{c.in, prev.in, out.InPerSec}, {c.replies, prev.replies, out.AnswersPerSec},
		{c.errors, prev.errors, out.ErrorsPerSec}, {c.rejects, prev.rejects, out.RejectsPerSec}} {
		for k, v := range x.cur {
			x.dst[k] = rate(v, x.prev[k], dt)
		}
	}
	return out
}

// baseFor returns the newest sample at least window older than at, or the oldest one when
// the sampler has not run that long (rates over a shorter window beat no rates). nil when
// there is no earlier sample at all.
func (s *sampler) baseFor(at time.Time, window time.Duration) *sample {
	var base *sample
	for i := range s.samples {
		if !s.samples[i].at.Before(at) {
			break
		}
		if base == nil || at.Sub(s.samples[i].at) >= window {
			base = &s.samples[i]
		}
	}
	return base
}

// snapshotNow decodes the latest snapshot (for tests and debugging).
func (s *sampler) snapshotNow() Snapshot {
	s.mu.Lock()
	b := s.last
	s.mu.Unlock()
	var snap Snapshot
	_ = json.Unmarshal(b, &snap)
	return snap
}

func (s *sampler) subscribe() (ch chan []byte, history []Point, last []byte) {
	ch = make(chan []byte, 4)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[ch] = struct{}{}
	return ch, slices.Clone(s.history), s.last
}

func (s *sampler) unsubscribe(ch chan []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, ch)
}

func (s *sampler) subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// handleEvents streams snapshots as server-sent events: first "history" (the recent points
// for the charts), then "snapshot" every EventsInterval until the client goes away or the
// server shuts down.
func (s *Server) handleEvents(c echo.Context) error {
	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx in front must not buffer the stream
	w.WriteHeader(http.StatusOK)

	ch, history, last := s.sampler.subscribe()
	defer s.sampler.unsubscribe(ch)
	// Log records from now on; the log view reads the earlier ones from /api/v1/logs.
	logSeq := s.logs.Last()

	hist, err := json.Marshal(history)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "retry: 3000\n\nevent: history\ndata: %s\n\n", hist); err != nil {
		return nil
	}
	if last != nil {
		if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", last); err != nil {
			return nil
		}
	}
	w.Flush()
	ctx := c.Request().Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case b := <-ch:
			if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b); err != nil {
				return nil // the client left; nothing to report to it
			}
			var ev *logEvent
			if ev, logSeq = s.newLogs(logSeq); ev != nil {
				lb, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				if _, err := fmt.Fprintf(w, "event: logs\ndata: %s\n\n", lb); err != nil {
					return nil
				}
			}
			w.Flush()
		}
	}
}

func circuitName(v float64) string {
	switch v {
	case 0:
		return "closed"
	case 1:
		return "open"
	case 2:
		return "half-open"
	}
	return "unknown"
}

func rate(cur, prev, dt float64) float64 {
	if dt <= 0 {
		return 0
	}
	d := cur - prev
	if d < 0 { // counter reset (a restart of whatever owns it)
		d = cur
	}
	return round(d / dt)
}

func round(v float64) float64 { return math.Round(v*1000) / 1000 }

func ms(sec float64, ok bool) *float64 {
	if !ok {
		return nil
	}
	v := round(sec * 1000)
	return &v
}

func sumValues(f *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		sum += value(m)
	}
	return sum
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func addBuckets(dst buckets, f *dto.MetricFamily) {
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		for _, b := range h.GetBucket() {
			dst[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
		dst[math.Inf(1)] += float64(h.GetSampleCount())
	}
}

// minus is the histogram of the observations made between prev and b. A bucket that went
// down means the histogram was reset; then b alone is the best estimate.
func (b buckets) minus(prev buckets) buckets {
	out := make(buckets, len(b))
	for ub, v := range b {
		out[ub] = v - prev[ub]
		if out[ub] < 0 {
			return b
		}
	}
	return out
}

// quantile estimates the q-quantile by linear interpolation inside the bucket holding it,
// as PromQL's histogram_quantile does; ok is false without observations.
func (b buckets) quantile(q float64) (float64, bool) {
	total := b[math.Inf(1)]
	if total <= 0 {
		return 0, false
	}
	bounds := make([]float64, 0, len(b))
	for ub := range b {
		bounds = append(bounds, ub)
	}
	slices.Sort(bounds)
	rank := q * total
	lower, below := 0.0, 0.0
	for _, ub := range bounds {
		cum := b[ub]
		if cum >= rank {
			if math.IsInf(ub, 1) {
				// Beyond the last finite bucket: the best we can say is its bound.
				return lower, true
			}
			if cum == below {
				return ub, true
			}
			return lower + (ub-lower)*(rank-below)/(cum-below), true
		}
		lower, below = ub, cum
	}
	return lower, true
}
