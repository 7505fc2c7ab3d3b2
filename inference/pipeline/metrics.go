package pipeline

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pipeline's Prometheus series (names in docs/pipeline.md, "Metrics").
type metrics struct {
	requests  *prometheus.CounterVec // topic
	results   *prometheus.CounterVec // model
	dlq       *prometheus.CounterVec // class, model
	e2e       prometheus.Histogram
	predict   *prometheus.HistogramVec // model
	batchSize prometheus.Histogram
	inflight  prometheus.Gauge
	circuit   prometheus.Gauge
	lag       *prometheus.GaugeVec   // topic, partition
	txns      *prometheus.CounterVec // outcome: committed, aborted (exactly-once only)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_requests_total", Help: "Request records consumed.",
		}, []string{"topic"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_results_total", Help: "Result records acknowledged by the broker.",
		}, []string{"model"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_dlq_records_total", Help: "DLQ records acknowledged by the broker, by error class.",
		}, []string{"class", "model"}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "infergate_end_to_end_latency_seconds",
			Help:    "From the request record's timestamp to its result's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		predict: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_predict_latency_seconds",
			Help:    "Duration of one batch's successful model call, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"model"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "infergate_batch_size", Help: "Rows per model call.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 17),
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "infergate_inflight_batches", Help: "Batches being predicted.",
		}),
		circuit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "infergate_circuit_state", Help: "Model server circuit: 0 closed, 1 open, 2 half-open.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "infergate_consumer_lag", Help: "Records behind the partition's high watermark, as of the last fetch.",
		}, []string{"topic", "partition"}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_transactions_total",
			Help: "Exactly-once transactions ended, by outcome (committed, aborted). An abort puts its requests back to be consumed again.",
		}, []string{"outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.results, m.dlq, m.e2e, m.predict, m.batchSize, m.inflight, m.circuit, m.lag, m.txns} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering pipeline metrics: %w", err)
	}
	return m, nil
}
