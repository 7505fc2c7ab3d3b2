package modelserver

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	"github.com/infergate/infergate/proto/tfpb/errorpb"
)

// metrics exports TF Serving's metric names (':' stands for every character
// outside [a-zA-Z0-9_], as TF's Prometheus exporter writes them) on a private
// registry, so they never clash with infergate's own /metrics. A nil
// *metrics records nothing.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	available *prometheus.GaugeVec
	loads     *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ":tensorflow:serving:request_count",
			Help: "The total number of requests.",
		}, []string{"model_name", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: ":tensorflow:serving:request_latency",
			Help: "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
			// TF's buckets: exponential from 10 µs by 1.8, 33 of them.
			Buckets: prometheus.ExponentialBuckets(10, 1.8, 33),
		}, []string{"model_name", "API", "entrypoint"}),
		available: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ":tensorflow:serving:model_count",
			Help: "Number of AVAILABLE versions of each model.",
		}, []string{"model_name"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ":tensorflow:cc:saved_model:load_attempt_count",
			Help: "The number of times a model version was loaded.",
		}, []string{"model_path", "status"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.available, m.loads)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// codeName is TF's name for a status code (INVALID_ARGUMENT, not InvalidArgument).
func codeName(c codes.Code) string {
	return errorpb.Code(c).String()
}

func (m *metrics) request(modelName, api, entry string, c codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(modelName, codeName(c)).Inc()
	if c == codes.OK { // TF times successful requests only
		m.latency.WithLabelValues(modelName, api, entry).Observe(float64(d.Microseconds()))
	}
}

func (m *metrics) setAvailable(modelName string, n int) {
	if m == nil {
		return
	}
	m.available.WithLabelValues(modelName).Set(float64(n))
}

func (m *metrics) loadAttempt(path string, ok bool) {
	if m == nil {
		return
	}
	m.loads.WithLabelValues(path, map[bool]string{true: "success", false: "failure"}[ok]).Inc()
}
