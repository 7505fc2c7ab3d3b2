package web

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/store"
)

// Metrics owned by web. They are read at scrape time from the store and the Backend rather
// than kept up to date by whoever changes them, so they cannot drift. A family that the
// appliance's own registry already exports is neither collected nor served twice: see
// mergedGatherer. (infergate run hides the pipeline's per-fetch infergate_consumer_lag from
// the registry it passes in, so the committed-offset lag below is the one served.)
var (
	descStoreBytes = prometheus.NewDesc("infergate_store_bytes",
		"On-disk size of the DLQ store (Badger LSM and value log).", []string{"kind"}, nil)
	descStoreRecords = prometheus.NewDesc("infergate_store_dlq_records",
		"Dead-lettered records held in the store, by error class.", []string{"class"}, nil)
	descLag = prometheus.NewDesc(pipeline.MetricConsumerLag,
		"Records in the requests topic not yet committed by the consumer group, per partition. Each partition is "+
			"exported by the instance that owns it in the group (by one instance while nobody does), so a sum "+
			"over instances counts every partition once. group is set when instances share the group "+
			"(attached to an external cluster).", []string{"topic", "partition", "group"}, nil)
	descModelStatus = prometheus.NewDesc(famModelStatus,
		"1 for each served model version, labelled with its state (AVAILABLE, LOADING, ...).", []string{"model", "version", "state"}, nil)
	descSidecarRestarts = prometheus.NewDesc(famSidecarRestarts,
		"Restarts of the supervised tensorflow_model_server since infergate started.", nil, nil)
	descLookupOK = prometheus.NewDesc("infergate_backend_lookup_ok",
		"1 if the last lookup for /metrics succeeded, 0 if the broker or model server could not be asked.", []string{"lookup"}, nil)
)

// Families the appliance's registry may export already (then skipped here).
const (
	famModelStatus     = "infergate_model_status"
	famSidecarRestarts = "infergate_sidecar_restarts_total"
)

// scrapeTimeout bounds the broker and model server round trips a scrape triggers.
const scrapeTimeout = 3 * time.Second

// ownRegistry registers web's collectors, plus the Go runtime and process collectors unless
// the appliance's gatherer already exports them (so they are never collected twice).
func ownRegistry(primary prometheus.Gatherer, st *store.Store, b Backend, topics, models *cache, skip *skipSet) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	have := map[string]bool{}
	if fams, err := primary.Gather(); err == nil {
		for _, f := range fams {
			have[f.GetName()] = true
		}
	}
	var cs []prometheus.Collector
	if !have["go_goroutines"] {
		cs = append(cs, collectors.NewGoCollector())
	}
	if !have["process_start_time_seconds"] && !have["process_cpu_seconds_total"] {
		cs = append(cs, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	cs = append(cs, storeCollector{st}, &backendCollector{backend: b, topics: topics, models: models, skip: skip})
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

type storeCollector struct{ st *store.Store }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descStoreBytes
	ch <- descStoreRecords
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.st.Stats()
	ch <- prometheus.MustNewConstMetric(descStoreBytes, prometheus.GaugeValue, float64(st.LSMBytes), "lsm")
	ch <- prometheus.MustNewConstMetric(descStoreBytes, prometheus.GaugeValue, float64(st.VLogBytes), "vlog")
	classes := make([]string, 0, len(st.ByClass))
	for k := range st.ByClass {
		classes = append(classes, k)
	}
	slices.Sort(classes)
	for _, k := range classes {
		ch <- prometheus.MustNewConstMetric(descStoreRecords, prometheus.GaugeValue, float64(st.ByClass[k]), k)
	}
	if len(classes) == 0 {
		// Zero must be visible, or an alert on the series would see "no data" instead of 0.
		ch <- prometheus.MustNewConstMetric(descStoreRecords, prometheus.GaugeValue, 0, "")
	}
}

// backendCollector asks the Backend at scrape time for consumer lag, model states and
// sidecar restarts, skipping what the appliance's registry already has.
type backendCollector struct {
	backend Backend
	topics  *cache
	models  *cache
	skip    *skipSet
}

func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLag
	ch <- descModelStatus
	ch <- descSidecarRestarts
	ch <- descLookupOK
}

func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	ok := func(err error) float64 {
		if err != nil {
			return 0
		}
		return 1
	}
	if !c.skip.has(pipeline.MetricConsumerLag) {
		v, err := c.topics.get(ctx)
		topics, _ := v.([]Topic)
		ch <- prometheus.MustNewConstMetric(descLookupOK, prometheus.GaugeValue, ok(err), "topics")
		for _, t := range topics {
			group := ""
			if t.Shared {
				group = t.Group
			}
			for _, p := range t.Partitions {
				if p.Lag >= 0 && (t.Role == RoleRequests || t.Group != "") && !p.ReportedElsewhere {
					ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(p.Lag), t.Name, strconv.Itoa(int(p.Partition)), group)
				}
			}
		}
	}
	if !c.skip.has(famModelStatus) {
		v, err := c.models.get(ctx)
		models, _ := v.([]Model)
		ch <- prometheus.MustNewConstMetric(descLookupOK, prometheus.GaugeValue, ok(err), "models")
		for _, m := range models {
			for _, mv := range m.Versions {
				ch <- prometheus.MustNewConstMetric(descModelStatus, prometheus.GaugeValue, 1, m.Name, strconv.FormatInt(mv.Version, 10), mv.State)
			}
		}
	}
	if !c.skip.has(famSidecarRestarts) {
		if sc, ok := c.backend.Sidecar(ctx); ok && sc != nil {
			ch <- prometheus.MustNewConstMetric(descSidecarRestarts, prometheus.CounterValue, float64(sc.Restarts))
		}
	}
}

// skipSet names the families the appliance's registry exported in the current scrape.
type skipSet struct {
	mu    sync.Mutex
	names map[string]bool
}

func (s *skipSet) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[name]
}

func (s *skipSet) set(names map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names = names
}

// PartitionLag is one partition's consumer lag in the event snapshots.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Lag       int64  `json:"lag"`
}

// lagOf picks the partitions that have a consumer group lag (the requests topic).
func lagOf(topics []Topic) []PartitionLag {
	var out []PartitionLag
	for _, t := range topics {
		for _, p := range t.Partitions {
			if p.Lag >= 0 && (t.Role == RoleRequests || t.Group != "") {
				out = append(out, PartitionLag{Topic: t.Name, Partition: p.Partition, Lag: p.Lag})
			}
		}
	}
	return out
}

// cache shares one Backend call (Topics, Models) between the event sampler and scrapes
// that come within maxAge of each other: each call costs broker or model server round trips.
// Concurrent callers wait for the call in flight instead of starting their own.
type cache struct {
	fn     func(ctx context.Context) (any, error)
	maxAge time.Duration

	mu  sync.Mutex
	at  time.Time
	val any
	err error
}

func newCache(maxAge time.Duration, fn func(ctx context.Context) (any, error)) *cache {
	return &cache{fn: fn, maxAge: maxAge}
}

// invalidate makes the next get call the Backend.
func (c *cache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = time.Time{}
}

func (c *cache) get(ctx context.Context) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.maxAge {
		return c.val, c.err
	}
	c.val, c.err = c.fn(ctx)
	c.at = time.Now()
	return c.val, c.err
}

// mergedGatherer serves the appliance's metrics plus web's own. A family the appliance
// already exports wins, so a collector registered on both sides is never a scrape error.
type mergedGatherer struct {
	primary prometheus.Gatherer
	own     prometheus.Gatherer
	skip    *skipSet
	mu      *sync.Mutex // one own-gather at a time, so skip describes the scrape in progress
}

func (m mergedGatherer) Gather() ([]*dto.MetricFamily, error) {
	fams, err := m.primary.Gather()
	have := make(map[string]bool, len(fams))
	for _, f := range fams {
		have[f.GetName()] = true
	}
	m.mu.Lock()
	m.skip.set(have)
	own, err2 := m.own.Gather()
	m.mu.Unlock()
	for _, f := range own {
		if !have[f.GetName()] {
			fams = append(fams, f)
		}
	}
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int {
		switch {
		case a.GetName() < b.GetName():
			return -1
		case a.GetName() > b.GetName():
			return 1
		}
		return 0
	})
	return fams, errors.Join(err, err2)
}

var _ prometheus.Gatherer = mergedGatherer{}

// onceLogger logs a failing lookup once when it starts failing and once when it recovers,
// not every second.
type onceLogger struct {
	mu     sync.Mutex
	failed bool
}

func (o *onceLogger) report(log *slog.Logger, what string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err != nil && !o.failed:
		log.Warn(what+" failed", "err", err)
		o.failed = true
	case err == nil && o.failed:
		log.Info(what + " works again")
		o.failed = false
	}
}
