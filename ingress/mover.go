package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// mqttHeader is what nats-server puts on every message that came from an
// MQTT PUBLISH; its first byte is the QoS.
const mqttHeader = "Nmqtt-Pub"

// Origins recorded in HeaderOrigin.
const (
	OriginMQTT = "mqtt"
	OriginNATS = "nats"
)

// inboxPullExpiry is how long one pull request on the inbox lives.
const inboxPullExpiry = 2 * time.Second

// inboxPullHeartbeat is how often nats-server tells an idle pull request that
// it still holds it; two missed make the client pull again.
const inboxPullHeartbeat = 500 * time.Millisecond

// startMover subscribes the two paths in: the durable inbox consumer
// (MQTT QoS 1/2, JetStream publishes) and a core subscription (MQTT QoS 0,
// core NATS publishes and requests), which is at-most-once.
func (in *Ingress) startMover() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := in.js.Consumer(ctx, InboxStream, inboxConsumer)
	if err != nil {
		return fmt.Errorf("ingress: inbox consumer: %w", err)
	}
	cc, err := cons.Consume(in.onInbox,
		jetstream.PullMaxMessages(min(in.cfg.MaxAckPending, 1024)),
		// Seen at max rate: nats-server's consumer holds no pull request
		// (consumer info: 0 waiting, 0 ack pending, thousands pending)
		// while nats.go counts its pulls as outstanding and does not pull
		// again; PUBACKed requests wait in the inbox until the client
		// misses two idle heartbeats. nats.go's defaults (30 s expiry,
		// 15 s heartbeat) made that a 30 s stall; these bound it at 1 s.
		jetstream.PullExpiry(inboxPullExpiry),
		jetstream.PullHeartbeat(inboxPullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			in.logger.Debug("inbox consumer", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("ingress: consuming the inbox: %w", err)
	}
	in.mu.Lock()
	in.consumers = append(in.consumers, cc)
	in.mu.Unlock()

	sub, err := in.nc.QueueSubscribe(RequestsPrefix+">", "infergate-ingress", in.onCore)
	if err != nil {
		return fmt.Errorf("ingress: subscribing to %s>: %w", RequestsPrefix, err)
	}
	// Core NATS is at-most-once: a subscriber that falls this far behind
	// drops messages (counted) rather than growing without bound.
	if err := sub.SetPendingLimits(65536, 64<<20); err != nil {
		return err
	}
	in.coreSub = sub
	return nil
}

// stopMover stops taking requests and waits until Kafka acknowledged (or
// failed) every record produced, so their JetStream acks are sent.
func (in *Ingress) stopMover() {
	in.mu.Lock()
	ccs := in.consumers
	in.consumers = nil
	in.mu.Unlock()
	for _, cc := range ccs {
		cc.Drain()
		<-cc.Closed()
	}
	if in.coreSub != nil {
		_ = in.coreSub.Drain()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := in.producer.Flush(ctx); err != nil {
		in.logger.Warn("ingress: Kafka did not acknowledge every request before shutdown; JetStream delivers them again after the restart", "err", err)
	}
	if in.nc != nil {
		_ = in.nc.Flush()
	}
}

// onInbox moves one durable request; its JetStream ack waits for Kafka's.
func (in *Ingress) onInbox(m jetstream.Msg) {
	subj := strings.TrimPrefix(m.Subject(), InboxPrefix)
	origin := OriginNATS
	if m.Headers().Get(mqttHeader) != "" {
		origin = OriginMQTT
	}
	in.metrics.received.WithLabelValues(origin, "durable").Inc()
	rec, err := in.record(subj, m.Data(), origin, "")
	if err != nil {
		// Nothing can make it valid: terminate it so it is not redelivered.
		in.metrics.errors.WithLabelValues("subject").Inc()
		in.reject(Reject{Reason: RejectSubject, Client: subj, Detail: err.Error()})
		in.logger.Warn("ingress: dropping a request on a subject without a model", "subject", subj, "err", err)
		_ = m.Term()
		return
	}
	in.metrics.pending.Inc()
	in.producer.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
		in.metrics.pending.Dec()
		if err != nil {
			in.metrics.errors.WithLabelValues("produce").Inc()
			in.logger.Warn("ingress: producing a request to Kafka failed; JetStream delivers it again", "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		in.metrics.produced.WithLabelValues(origin).Inc()
		if err := m.Ack(); err != nil {
			// The request is in Kafka; JetStream will deliver it again
			// after AckWait and it will be produced twice.
			in.metrics.errors.WithLabelValues("ack").Inc()
		}
	})
}

// onCore moves an at-most-once request (MQTT QoS 0, core NATS).
func (in *Ingress) onCore(m *nats.Msg) {
	if q := m.Header.Get(mqttHeader); q != "" && q[0] != '0' {
		// MQTT QoS 1/2: the same message is in the inbox, moved durably.
		return
	}
	origin := OriginNATS
	if m.Header.Get(mqttHeader) != "" {
		origin = OriginMQTT
	}
	in.metrics.received.WithLabelValues(origin, "at-most-once").Inc()
	rec, err := in.record(m.Subject, m.Data, origin, m.Reply)
	if err != nil {
		in.metrics.errors.WithLabelValues("subject").Inc()
		in.reject(Reject{Reason: RejectSubject, Client: m.Subject, Detail: err.Error()})
		return
	}
	in.producer.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
		if err != nil {
			in.metrics.errors.WithLabelValues("produce").Inc()
			in.logger.Warn("ingress: producing an at-most-once request to Kafka failed; it is lost", "subject", m.Subject, "err", err)
			return
		}
		in.metrics.produced.WithLabelValues(origin).Inc()
	})
}

// record is the Kafka request record of a device message on subj.
func (in *Ingress) record(subj string, data []byte, origin, reply string) (*kgo.Record, error) {
	model, device, ok := parseRequestSubject(subj)
	if !ok {
		return nil, fmt.Errorf("subject %q is not %s<model>[.<device>]", subj, RequestsPrefix)
	}
	if reply == "" {
		reply = replyTo(data, device, in.auth.anonymous)
	}
	if reply == "" {
		reply = ResultSubject(model, device)
	}
	hs := make([]kgo.RecordHeader, 0, 4)
	hs = append(hs,
		kgo.RecordHeader{Key: HeaderOrigin, Value: []byte(origin)},
		kgo.RecordHeader{Key: HeaderReply, Value: []byte(reply)})
	if device != "" {
		hs = append(hs, kgo.RecordHeader{Key: HeaderDevice, Value: []byte(device)})
	}
	if model != AnyModel {
		hs = append(hs, kgo.RecordHeader{Key: HeaderModel, Value: []byte(model)})
	}
	rec := &kgo.Record{Topic: in.cfg.RequestsTopic, Value: data, Headers: hs}
	if device != "" {
		rec.Key = []byte(device)
	}
	return rec, nil
}

// replyTo is the payload's "reply_to" (an MQTT topic or NATS subject)
// when it is a results subject the device may read: under ResultsPrefix
// and, unless clients are anonymous, ending with the device's own level.
func replyTo(data []byte, device string, anonymous bool) string {
	if !bytes.Contains(data, []byte(`"reply_to"`)) {
		return ""
	}
	var p struct {
		ReplyTo string `json:"reply_to"`
	}
	if json.Unmarshal(data, &p) != nil || p.ReplyTo == "" {
		return ""
	}
	subj := TopicToSubject(p.ReplyTo)
	if !strings.HasPrefix(subj, ResultsPrefix) || strings.ContainsAny(subj, "*> ") {
		return ""
	}
	if !anonymous && (device == "" || !strings.HasSuffix(subj, "."+device)) {
		return ""
	}
	return subj
}
