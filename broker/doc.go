// Package broker owns everything infergate knows about Kafka: the embedded
// Kafka-compatible broker (franz-go's kfake with its on-disk data dir), the
// client settings shared by embedded and attached mode (seed brokers, TLS,
// SASL, producer compression), topic provisioning with retention, and consumer
// lag.
//
// The embedded broker is one process-local broker: there is no replication,
// so its durability is exactly what its data dir and the Durability setting
// give (see docs/broker.md for what survives which crash, measured).
package broker
