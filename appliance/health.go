package appliance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/broker"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

// diskCheckInterval is how often the health component looks at free space. The store and
// the broker check on every write themselves; this only decides when consumption pauses and
// resumes, and what /readyz and the metrics say.
const diskCheckInterval = time.Second

// dataHealth is the appliance's view of its data dir: disk full (from the store's and the
// embedded broker's free-space checks) and corruption found in either.
type dataHealth struct {
	mu       sync.Mutex
	diskFull string // why, "" when there is space
}

// healthComponent watches free space and corruption. While the data dir's file system is
// below min_free_bytes the pipeline is held (consumes nothing, commits nothing it could not
// write) and the component is not ready; once space returns it releases the pipeline by
// itself. Corruption does not stop the appliance — the rest of the data is good and requests
// still flow — but is reported loudly: ERROR logs, the status page, /readyz's body,
// metrics and an alert.
func (a *Appliance) healthComponent() *component {
	h := &dataHealth{}
	return &component{
		name: "disk",
		start: func(context.Context) error {
			return a.registerHealthMetrics()
		},
		run: func(ctx context.Context) error {
			t := time.NewTicker(diskCheckInterval)
			defer t.Stop()
			for {
				a.checkDisk(h)
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		},
		ready: func() error {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.diskFull != "" {
				return fmt.Errorf("disk full: %s; consumption is paused until space returns", h.diskFull)
			}
			return nil
		},
	}
}

// checkDisk measures free space and holds or releases the pipeline on a change.
func (a *Appliance) checkDisk(h *dataHealth) {
	why := a.diskFullReason()
	h.mu.Lock()
	was := h.diskFull
	h.diskFull = why
	h.mu.Unlock()
	p := a.Pipeline()
	switch {
	case why != "" && was == "":
		a.logger.Error("DISK FULL: the appliance stops consuming requests until space returns; free space in the data dir or raise its size",
			"reason", why, "setting", "min_free_bytes")
		if p != nil {
			p.Hold("disk full: " + why)
		}
	case why == "" && was != "":
		a.logger.Info("disk space is back; the appliance consumes requests again")
		if p != nil {
			p.Release()
		}
	}
}

// diskFullReason says which data dir part is below the floor, "" when none is.
func (a *Appliance) diskFullReason() string {
	var why []string
	if st := a.Store(); st != nil {
		if h := st.Health(); h.DiskFull {
			why = append(why, fmt.Sprintf("store %s has %s free, below min_free_bytes %s", a.paths.Store, mib(h.FreeBytes), mib(h.MinFreeBytes)))
		}
	}
	if e := a.Broker(); e != nil {
		if h := e.Health(); h.DiskFull {
			why = append(why, fmt.Sprintf("broker %s has %s free, below min_free_bytes %s", a.paths.Broker, mib(h.FreeBytes), mib(h.MinFreeBytes)))
		}
	}
	return strings.Join(why, "; ")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Broker is the embedded broker, nil in external mode or before it started.
func (a *Appliance) Broker() *broker.Embedded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.embedded
}

// DataWarnings lists data loss found in the store and the embedded broker, one sentence each
// saying what was lost; empty when there is none. /readyz, the status page and the CLI show it.
func (a *Appliance) DataWarnings() []string {
	var out []string
	if st := a.Store(); st != nil {
		out = append(out, StoreWarnings(st.Health())...)
	}
	if e := a.Broker(); e != nil {
		h := e.Health()
		for _, c := range h.Corrupt {
			out = append(out, "broker: DATA CORRUPTION: "+c.String())
		}
		if h.SyncFailed != nil {
			out = append(out, "broker: "+h.SyncFailed.Error())
		}
	}
	return out
}

// StoreWarnings says what a store's Health reports as lost (the CLI reads a stopped
// appliance's store itself).
func StoreWarnings(h store.Health) []string {
	var out []string
	for _, c := range h.Corrupt {
		out = append(out, "store: DATA CORRUPTION: "+c.String())
	}
	if h.LostRecords > 0 {
		out = append(out, fmt.Sprintf("store: %d dead-lettered records are lost (their index entries remain): %s", h.LostRecords, idList(h.LostIDs, h.LostRecords)))
	}
	return out
}

func idList(ids []string, total int) string {
	const show = 20
	s := strings.Join(ids[:min(len(ids), show)], ", ")
	if total > show {
		s += fmt.Sprintf(" and %d more", total-show)
	}
	return s
}

var (
	descDiskFree = prometheus.NewDesc(web.MetricDiskFree,
		"Free space in the file system of each part of the data dir (component: store, broker).", []string{"component"}, nil)
	descDiskMin = prometheus.NewDesc(web.MetricDiskMinFree,
		"The floor of free space (min_free_bytes) below which the appliance stops consuming.", nil, nil)
	descDiskFull = prometheus.NewDesc(web.MetricDiskFull,
		"1 while a part of the data dir is below min_free_bytes: writes are refused and consumption is paused.", nil, nil)
	descCorrupt = prometheus.NewDesc("infergate_data_corruption",
		"Damaged store tables or broker files found since start (component: store, broker); any is data loss.", []string{"component"}, nil)
	descLost = prometheus.NewDesc("infergate_store_lost_records",
		"Dead-lettered records the store's index lists but that a damaged table took with it.", nil, nil)
)

// healthCollector reads the metrics at scrape time from the store's and the broker's Health.
type healthCollector struct{ a *Appliance }

func (c healthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDiskFree, descDiskMin, descDiskFull, descCorrupt, descLost} {
		ch <- d
	}
}

func (c healthCollector) Collect(ch chan<- prometheus.Metric) {
	full := 0.0
	var storeCorrupt, brokerCorrupt, lost float64
	if st := c.a.Store(); st != nil {
		h := st.Health()
		if h.FreeBytes >= 0 {
			ch <- prometheus.MustNewConstMetric(descDiskFree, prometheus.GaugeValue, float64(h.FreeBytes), "store")
		}
		if h.DiskFull {
			full = 1
		}
		storeCorrupt, lost = float64(len(h.Corrupt)), float64(h.LostRecords)
	}
	if e := c.a.Broker(); e != nil {
		h := e.Health()
		if h.FreeBytes >= 0 {
			ch <- prometheus.MustNewConstMetric(descDiskFree, prometheus.GaugeValue, float64(h.FreeBytes), "broker")
		}
		if h.DiskFull {
			full = 1
		}
		brokerCorrupt = float64(len(h.Corrupt))
	}
	ch <- prometheus.MustNewConstMetric(descDiskMin, prometheus.GaugeValue, float64(c.a.cfg.MinFreeBytes))
	ch <- prometheus.MustNewConstMetric(descDiskFull, prometheus.GaugeValue, full)
	ch <- prometheus.MustNewConstMetric(descCorrupt, prometheus.GaugeValue, storeCorrupt, "store")
	ch <- prometheus.MustNewConstMetric(descCorrupt, prometheus.GaugeValue, brokerCorrupt, "broker")
	ch <- prometheus.MustNewConstMetric(descLost, prometheus.GaugeValue, lost)
}

var _ prometheus.Collector = healthCollector{}

// registerHealthMetrics registers the collector once (a component's start may run again
// only in a new Appliance, but be safe).
func (a *Appliance) registerHealthMetrics() error {
	err := a.reg.Register(healthCollector{a})
	if _, ok := err.(prometheus.AlreadyRegisteredError); ok {
		return nil
	}
	return err
}
