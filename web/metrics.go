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

	"github.com/infergate/infergate/store"
)

// Metrics owned by web. They are read at scrape time from the store and the Backend rather
// than kept up to date by whoever changes them, so they cannot drift.
var (
	descStoreBytes = prometheus.NewDesc("infergate_store_bytes",
		"On-disk size of the DLQ store (Badger LSM and value log).", []string{"kind"}, nil)
	descStoreRecords = prometheus.NewDesc("infergate_store_dlq_records",
		"Dead-lettered records held in the store, by error class.", []string{"class"}, nil)
	descLag = prometheus.NewDesc("infergate_consumer_lag",
		"Records in the requests topic not yet committed by the consumer group, per partition.", []string{"topic", "partition"}, nil)
	descLagUp = prometheus.NewDesc("infergate_consumer_lag_scrape_ok",
		"1 if the last consumer lag lookup succeeded, 0 if the broker could not be asked.", nil, nil)
)

// scrapeTimeout bounds the broker round trips a scrape triggers.
const scrapeTimeout = 3 * time.Second

// ownRegistry registers web's collectors, plus the Go runtime and process collectors unless
// the appliance's gatherer already exports them (so they are never collected twice).
func ownRegistry(primary prometheus.Gatherer, st *store.Store, lag *lagCache) (*prometheus.Registry, error) {
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
	cs = append(cs, storeCollector{st}, lagCollector{lag})
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

type lagCollector struct{ lag *lagCache }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLag
	ch <- descLagUp
}

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	topics, err := c.lag.get(ctx)
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(descLagUp, prometheus.GaugeValue, up)
	for _, l := range lagOf(topics) {
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(l.Lag), l.Topic, strconv.Itoa(int(l.Partition)))
	}
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

// lagCache shares one Backend.Topics call between the event sampler and scrapes that come
// within maxAge of each other: each call costs broker round trips.
type lagCache struct {
	backend Backend
	maxAge  time.Duration

	mu     sync.Mutex
	at     time.Time
	topics []Topic
	err    error
}

func newLagCache(b Backend, maxAge time.Duration) *lagCache {
	return &lagCache{backend: b, maxAge: maxAge}
}

func (l *lagCache) get(ctx context.Context) ([]Topic, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.at.IsZero() && time.Since(l.at) < l.maxAge {
		return l.topics, l.err
	}
	topics, err := l.backend.Topics(ctx)
	l.at, l.topics, l.err = time.Now(), topics, err
	return topics, err
}

// mergedGatherer serves the appliance's metrics plus web's own. A family the appliance
// already exports wins, so a collector registered on both sides is never a scrape error.
type mergedGatherer struct {
	primary prometheus.Gatherer
	own     prometheus.Gatherer
}

func (m mergedGatherer) Gather() ([]*dto.MetricFamily, error) {
	fams, err := m.primary.Gather()
	have := make(map[string]bool, len(fams))
	for _, f := range fams {
		have[f.GetName()] = true
	}
	own, err2 := m.own.Gather()
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

// logAttrs is a helper for components that log a failed lookup once per state change.
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
