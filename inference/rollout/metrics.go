package rollout

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	percent   *prometheus.GaugeVec
	rollbacks *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	compared  *prometheus.CounterVec
	queue     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		percent: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "infergate_rollout_candidate_percent",
			Help: "Share of record keys (0-100) a model's rollout candidate answers."}, []string{"model"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infergate_rollout_rollbacks_total",
			Help: "Rollouts rolled back by a guard (error_rate, p99, disagreement)."}, []string{"model", "guard"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infergate_shadow_dropped_total",
			Help: "Sampled requests the shadow skipped: its queue was full, or the pipeline had a backlog and the shadow had used its share of time (it yields to the pipeline)."}, []string{"model"}),
		compared: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infergate_shadow_compared_total",
			Help: "Requests scored by both versions of a rollout."}, []string{"model"}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "infergate_shadow_queue",
			Help: "Observed batches waiting for the shadow."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.percent, m.rollbacks, m.dropped, m.compared, m.queue} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
