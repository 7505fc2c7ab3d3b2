package ingress

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the ingress's Prometheus series (docs/ingress.md), for the
// packages that read them from a registry: the dashboard's sampler.
const (
	MetricReceived    = "infergate_ingress_received_total"
	MetricProduced    = "infergate_ingress_produced_total"
	MetricReplies     = "infergate_ingress_replies_total"
	MetricErrors      = "infergate_ingress_errors_total"
	MetricRejects     = "infergate_ingress_rejects_total"
	MetricAcksPending = "infergate_ingress_acks_pending"
	MetricClients     = "infergate_ingress_clients"
)

type metrics struct {
	received *prometheus.CounterVec // origin, path
	produced *prometheus.CounterVec // origin
	replies  *prometheus.CounterVec // kind: result, error
	errors   *prometheus.CounterVec // stage
	rejects  *prometheus.CounterVec // reason
	pending  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, clients func() float64) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricReceived,
			Help: "Requests received from devices, by origin (mqtt, nats) and path (durable: MQTT QoS 1/2 and JetStream; at-most-once: MQTT QoS 0 and core NATS).",
		}, []string{"origin", "path"}),
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricProduced,
			Help: "Device requests acknowledged by Kafka in the requests topic, by origin.",
		}, []string{"origin"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricReplies,
			Help: "Answers published back to devices: kind result (from the results topic) or error (from the DLQ topic).",
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricErrors,
			Help: "Ingress errors by stage: subject (no model in the subject), produce (Kafka refused; redelivered), ack (JetStream ack lost; redelivered), reply (publishing an answer failed), consume (reading results).",
		}, []string{"stage"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRejects,
			Help: "Clients refused by the ingress, by reason: credentials (no or wrong credentials at connect), permission (a publish or subscription outside the device's permissions), subject (a request subject without a model level).",
		}, []string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricAcksPending,
			Help: "Durable requests produced to Kafka and not yet acknowledged by it (their JetStream ack waits).",
		}),
	}
	if reg != nil {
		cs := []prometheus.Collector{m.received, m.produced, m.replies, m.errors, m.rejects, m.pending}
		if clients != nil {
			// Only the embedded server's clients are known; an external
			// server reports its own.
			cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: MetricClients,
				Help: "Devices connected to the ingress (MQTT and NATS; embedded server only).",
			}, clients))
		}
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
			}
		}
	}
	return m, nil
}
