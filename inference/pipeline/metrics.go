package pipeline

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the pipeline's Prometheus series (docs/pipeline.md, "Metrics"),
// for the packages that read them from a registry: the dashboard's sampler,
// the web server's committed lag (which replaces MetricConsumerLag), bench.
const (
	MetricRequests        = "infergate_requests_total"
	MetricResults         = "infergate_results_total"
	MetricDLQRecords      = "infergate_dlq_records_total"
	MetricEndToEndLatency = "infergate_end_to_end_latency_seconds"
	MetricPredictLatency  = "infergate_predict_latency_seconds"
	MetricBatchSize       = "infergate_batch_size"
	MetricInflightBatches = "infergate_inflight_batches"
	MetricCircuitState    = "infergate_circuit_state"
	MetricConsumerLag     = "infergate_consumer_lag"
	MetricTransactions    = "infergate_transactions_total"
)

// metrics are the pipeline's Prometheus series.
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
			Name: MetricRequests, Help: "Request records consumed.",
		}, []string{"topic"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricResults, Help: "Result records acknowledged by the broker.",
		}, []string{"model"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDLQRecords, Help: "DLQ records acknowledged by the broker, by error class.",
		}, []string{"class", "model"}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricEndToEndLatency,
			Help:    "From the request record's timestamp to its result's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		predict: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricPredictLatency,
			Help:    "Duration of one batch's successful model call, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"model"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricBatchSize, Help: "Rows per model call.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 17),
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricInflightBatches, Help: "Batches being predicted.",
		}),
		circuit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricCircuitState, Help: "Model server circuit: 0 closed, 1 open, 2 half-open.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricConsumerLag, Help: "Records behind the partition's high watermark, as of the last fetch.",
		}, []string{"topic", "partition"}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTransactions,
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
