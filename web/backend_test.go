package web

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/store"
)

// memBackend is a Backend with real, in-memory behaviour: models with versions and labels,
// a requests topic whose offsets move, a pipeline that pauses, and a "model" that scores
// 16-feature requests and dead-letters everything else into the real store. Its metrics are
// the pipeline's metric names on a real registry, so the sampler and /metrics see them move.
type memBackend struct {
	st  *store.Store
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	results   *prometheus.CounterVec
	dlq       *prometheus.CounterVec
	e2e       prometheus.Histogram
	predict   *prometheus.HistogramVec
	batchSize prometheus.Histogram
	inflight  prometheus.Gauge
	circuit   prometheus.Gauge

	mu        sync.Mutex
	paused    bool
	models    map[string]*Model
	loading   map[string]int64 // versions that become AVAILABLE on the next Models call
	ends      []int64          // end offsets of the requests topic partitions
	committed []int64
	replayed  []*store.Record
	sidecar   *SidecarStatus
	ingress   *IngressStatus
	ready     error
	warnings  []string // data loss, as DataWarnings says it
	topicsErr error
	calls     map[string]int
	// modelServer replaces the model server's component in Status when set.
	modelServer *Component
}

func newMemBackend(st *store.Store) *memBackend {
	b := &memBackend{
		st:  st,
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infergate_requests_total",
			Help: "Requests consumed."}, []string{"topic"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infergate_results_total",
			Help: "Results produced."}, []string{"model"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infergate_dlq_records_total",
			Help: "Records dead-lettered."}, []string{"class", "model"}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "infergate_end_to_end_latency_seconds",
			Help: "Record timestamp to result acked.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		predict: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "infergate_predict_latency_seconds",
			Help: "Predict call latency.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"model"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "infergate_batch_size",
			Help: "Requests per batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "infergate_inflight_batches", Help: "Batches in flight."}),
		circuit:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "infergate_circuit_state", Help: "0 closed, 1 open, 2 half-open."}),
		models: map[string]*Model{
			"demo": {Name: "demo", Labels: map[string]int64{"stable": 1},
				Versions: []ModelVersion{{Version: 1, State: ModelAvailable}}},
		},
		loading:   map[string]int64{},
		ends:      []int64{0, 0, 0},
		committed: []int64{0, 0, 0},
		calls:     map[string]int{},
	}
	b.reg.MustRegister(b.requests, b.results, b.dlq, b.e2e, b.predict, b.batchSize, b.inflight, b.circuit)
	return b
}

func (b *memBackend) count(name string) {
	b.mu.Lock()
	b.calls[name]++
	b.mu.Unlock()
}

func (b *memBackend) callCount(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[name]
}

// traffic simulates n requests flowing through the pipeline: offsets advance, some lag
// remains, latencies are observed.
func (b *memBackend) traffic(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range n {
		p := i % len(b.ends)
		b.ends[p]++
		if !b.paused && rand.IntN(10) != 0 { // about a tenth stays behind as lag
			b.committed[p] = b.ends[p] - int64(rand.IntN(3))
		}
		b.requests.WithLabelValues("inference_requests").Inc()
		if b.paused {
			continue
		}
		b.results.WithLabelValues("demo").Inc()
		b.e2e.Observe(0.004 + rand.Float64()*0.02)
		b.predict.WithLabelValues("demo").Observe(0.001 + rand.Float64()*0.004)
	}
	if n > 0 && !b.paused {
		b.batchSize.Observe(float64(n))
	}
}

func (b *memBackend) Status(ctx context.Context) (*Status, error) {
	b.count("status")
	b.mu.Lock()
	defer b.mu.Unlock()
	pipe := Component{State: StateOK, Detail: "consuming inference_requests"}
	if b.paused {
		pipe = Component{State: StatePaused, Detail: "paused by operator"}
	}
	ms := Component{Mode: "embedded", State: StateOK, Address: "127.0.0.1:8500"}
	if b.modelServer != nil {
		ms = *b.modelServer
	}
	return &Status{
		Delivery:    "at-least-once",
		Broker:      Component{Mode: "embedded", State: StateOK, Address: "127.0.0.1:9092", Detail: "3 partitions"},
		ModelServer: ms,
		Pipeline:    pipe,
	}, nil
}

func (b *memBackend) Ready() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ready
}

func (b *memBackend) DataWarnings() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.warnings
}

func (b *memBackend) PausePipeline(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.paused = true
	return nil
}

func (b *memBackend) ResumePipeline(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.paused = false
	return nil
}

func (b *memBackend) Topics(ctx context.Context) ([]Topic, error) {
	b.count("topics")
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.topicsErr != nil {
		return nil, b.topicsErr
	}
	req := Topic{Name: "inference_requests", Role: RoleRequests, Group: "infergate"}
	res := Topic{Name: "inference_results", Role: RoleResults}
	for p := range b.ends {
		req.Partitions = append(req.Partitions, Partition{Partition: int32(p), Leader: 0, EndOffset: b.ends[p],
			Committed: b.committed[p], Lag: b.ends[p] - b.committed[p]})
		res.Partitions = append(res.Partitions, Partition{Partition: int32(p), EndOffset: b.committed[p], Committed: -1, Lag: -1})
	}
	dlq := Topic{Name: "inference_dlq", Role: RoleDLQ, Partitions: []Partition{{EndOffset: b.st.Stats().Records, Committed: -1, Lag: -1}}}
	return []Topic{req, res, dlq}, nil
}

func (b *memBackend) Models(ctx context.Context) ([]Model, error) {
	b.count("models")
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, 0, len(b.models))
	for n := range b.models {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Model, 0, len(names))
	for _, n := range names {
		m := b.models[n]
		// A version uploaded earlier has finished loading by the time anyone asks again.
		if v, ok := b.loading[n]; ok {
			for i := range m.Versions {
				if m.Versions[i].Version == v {
					m.Versions[i].State = ModelAvailable
				}
			}
			delete(b.loading, n)
		}
		c := *m
		c.Versions = slices.Clone(m.Versions)
		c.Labels = map[string]int64{}
		for k, v := range m.Labels {
			c.Labels[k] = v
		}
		out = append(out, c)
	}
	return out, nil
}

func (b *memBackend) UploadModel(ctx context.Context, name string, version int64, file string, size int64) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.models[name]
	if !ok {
		m = &Model{Name: name, Labels: map[string]int64{}}
		b.models[name] = m
	}
	var highest int64
	for _, v := range m.Versions {
		highest = max(highest, v.Version)
		if v.Version == version {
			return 0, fmt.Errorf("model %s version %d already exists: %w", name, version, ErrConflict)
		}
	}
	if version == 0 {
		version = highest + 1
	}
	m.Versions = append(m.Versions, ModelVersion{Version: version, State: ModelLoading})
	slices.SortFunc(m.Versions, func(a, b ModelVersion) int { return int(a.Version - b.Version) })
	b.loading[name] = version
	return version, nil
}

func (b *memBackend) SetLabel(ctx context.Context, name, label string, version int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.models[name]
	if !ok {
		return fmt.Errorf("model %q: %w", name, ErrNotFound)
	}
	for _, v := range m.Versions {
		if v.Version == version {
			m.Labels[label] = version
			return nil
		}
	}
	return fmt.Errorf("model %q has no version %d: %w", name, version, ErrInvalid)
}

func (b *memBackend) ReloadModels(ctx context.Context) error {
	b.count("reload")
	return nil
}

func (b *memBackend) Replay(ctx context.Context, recs []*store.Record) error {
	b.mu.Lock()
	b.replayed = append(b.replayed, recs...)
	b.mu.Unlock()
	b.traffic(len(recs))
	return nil
}

func (b *memBackend) replayedIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for _, r := range b.replayed {
		ids = append(ids, r.ID)
	}
	return ids
}

// testRequest is the article's request form.
type testRequest struct {
	RequestID string    `json:"request_id"`
	Features  []float32 `json:"features"`
}

// SendTestRequest scores a 16-feature request; anything else is dead-lettered into the
// store, as the pipeline would.
func (b *memBackend) SendTestRequest(ctx context.Context, key, value []byte, headers []store.Header) ([]byte, error) {
	b.traffic(1)
	var req testRequest
	class, msg := "", ""
	if err := json.Unmarshal(value, &req); err != nil {
		class, msg = "decode", "request is not JSON: "+err.Error()
	} else if len(req.Features) != 16 {
		class, msg = "validation", fmt.Sprintf("input \"input\": shape [1,%d] does not match the model's [-1,16]", len(req.Features))
	}
	if class != "" {
		b.dlq.WithLabelValues(class, "demo").Inc()
		rec := &store.Record{Key: key, Value: value, Headers: headers, Class: class, Message: msg, Model: "demo",
			SourceTopic: "inference_requests", Attempts: 1}
		if err := b.st.Put(ctx, rec); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("dead-lettered as %s (record %s): %s: %w", class, rec.ID, msg, ErrInvalid)
	}
	var sum float32
	for _, f := range req.Features {
		sum += f
	}
	score := sum / 16
	return json.Marshal(map[string]any{"request_id": req.RequestID, "model": "demo", "model_version": 1,
		"prediction": []float32{score}, "timestamp": time.Now().UTC(), "latency_ms": 3})
}

func (b *memBackend) Sidecar(ctx context.Context) (*SidecarStatus, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sidecar == nil {
		return nil, false
	}
	c := *b.sidecar
	return &c, true
}

func (b *memBackend) Ingress(context.Context) (*IngressStatus, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ingress == nil {
		return nil, false
	}
	c := *b.ingress
	return &c, true
}

func (b *memBackend) Settings() any {
	return map[string]any{
		"data_dir": "./infergate-data",
		"broker":   map[string]any{"mode": "embedded", "listen": "127.0.0.1:9092", "sasl": map[string]string{"password": "<redacted>"}},
		"pipeline": map[string]any{"max_batch": 64, "max_wait": "5ms", "delivery": "at-least-once"},
	}
}

var _ Backend = (*memBackend)(nil)
