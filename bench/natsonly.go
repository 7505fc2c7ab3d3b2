package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Relays of `bench --ingress mqtt --nats-only RELAY`.
const (
	// RelayMQTT answers from one MQTT client subscribed to every request at
	// QoS 1: a plain MQTT publisher -> nats-server -> subscriber path.
	RelayMQTT = "mqtt"
	// RelayJetStream answers as the ingress does, minus Kafka: an
	// in-process JetStream consumer on the inbox (the ingress's consumer
	// configuration) publishes each answer (a core message and, at answer
	// QoS 1, the copy stored for MQTT QoS 1 subscriptions) and acknowledges
	// the request.
	RelayJetStream = "js"
)

// startNATSOnly is the ceiling `bench --ingress mqtt --nats-only` measures:
// no infergate, only an embedded nats-server with the server options the
// ingress uses (JetStream file store, MQTT) and a relay standing in for
// infergate, which answers each request by publishing its payload to the
// device's result topic at the answer QoS. Either relay costs nats-server
// per request what the ingress does: the device's QoS 1 PUBLISH stored,
// delivered to one consumer, acknowledged and removed, and at answer QoS 1
// the same again for the answer.
func startNATSOnly(cfg *Config) (_ *system, err error) {
	dir, err := os.MkdirTemp("", "infergate-bench-nats-")
	if err != nil {
		return nil, fmt.Errorf("bench: temporary data dir: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	o := &server.Options{
		ServerName:             "bench-nats-only",
		NoSigs:                 true,
		JetStream:              true,
		StoreDir:               dir,
		DontListen:             true,
		DisableJetStreamBanner: true,
		NoLog:                  true,
	}
	o.MQTT.Host, o.MQTT.Port = "127.0.0.1", -1
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("bench: nats-server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("bench: nats-server did not start within 30s")
	}
	addr := net.JoinHostPort(o.MQTT.Host, strconv.Itoa(o.MQTT.Port))
	var answerQoS byte = 1
	if cfg.AnswerQoS0 {
		answerQoS = 0
	}
	if cfg.NATSOnly == RelayJetStream {
		closeRelay, err := startJetStreamRelay(srv, cfg.AnswerQoS0)
		if err != nil {
			srv.Shutdown()
			return nil, err
		}
		stop := func() error {
			closeRelay()
			srv.Shutdown()
			srv.WaitForShutdown()
			return os.RemoveAll(dir)
		}
		return &system{mqttAddr: addr, stop: stop, proc: selfProc{}, natsOnly: true}, nil
	}
	var relay *mqttDevice
	var relayed atomic.Int64
	relay, err = dialMQTT(addr, "bench-relay", func(uint16) {}, func(topic string, payload []byte) {
		// infergate/requests/<model>/<device> -> infergate/results/<model>/<device>
		rest, ok := bytes.CutPrefix([]byte(topic), []byte("infergate/requests/"))
		if !ok {
			return
		}
		relayed.Add(1)
		_ = relay.publishQoS("infergate/results/"+string(rest), payload, answerQoS)
	})
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	if err := relay.subscribe("infergate/requests/#", 1); err != nil {
		relay.close()
		srv.Shutdown()
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	stop := func() error {
		relay.close()
		srv.Shutdown()
		srv.WaitForShutdown()
		return os.RemoveAll(dir)
	}
	return &system{mqttAddr: addr, stop: stop, proc: selfProc{}, natsOnly: true}, nil
}

// publishQoS sends a PUBLISH at QoS 0 or 1 (a QoS 1 packet id is not
// tracked: the relay does not wait for its PUBACK).
func (d *mqttDevice) publishQoS(topic string, payload []byte, qos byte) error {
	if qos > 0 {
		_, err := d.publish(topic, payload)
		return err
	}
	body := make([]byte, 0, 2+len(topic)+len(payload))
	body = appendStr(body, topic)
	body = append(body, payload...)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if err := d.writeLocked(0x30, body); err != nil {
		return err
	}
	return d.w.Flush()
}

// startJetStreamRelay is RelayJetStream.
func startJetStreamRelay(srv *server.Server, answerQoS0 bool) (func(), error) {
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	fail := func(err error) (func(), error) {
		nc.Close()
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The ingress's inbox and consumer (ingress.ensureInbox, defaults).
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "$MQTT_msgs", Subjects: []string{"$MQTT.msgs.>"},
		Storage: jetstream.FileStorage, Retention: jetstream.InterestPolicy, Replicas: 1}); err != nil {
		return fail(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "$MQTT_msgs", jetstream.ConsumerConfig{
		Durable: "bench-relay", FilterSubject: "$MQTT.msgs.infergate.requests.>",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 4096})
	if err != nil {
		return fail(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		rest, ok := strings.CutPrefix(m.Subject(), "$MQTT.msgs.infergate.requests.")
		if !ok {
			_ = m.Term()
			return
		}
		reply := &nats.Msg{Subject: "infergate.results." + rest, Data: m.Data()}
		if !answerQoS0 {
			reply.Header = nats.Header{"Nmqtt-Pub": []string{"1"}}
		}
		_ = nc.PublishMsg(reply)
		if !answerQoS0 {
			_, _ = js.PublishMsgAsync(&nats.Msg{Subject: "$MQTT.msgs." + reply.Subject, Data: reply.Data, Header: reply.Header})
		}
		_ = m.Ack()
	}, jetstream.PullMaxMessages(1024))
	if err != nil {
		return fail(err)
	}
	return func() {
		cc.Drain()
		<-cc.Closed()
		nc.Close()
	}, nil
}
