package ingress

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DLQ headers the pipeline adds (inference.HeaderErrorClass, ...).
const (
	headerErrorClass   = "error.class"
	headerErrorMessage = "error.message"
)

// runReturner consumes the results and DLQ topics with its own group and
// publishes each answer of a device request to its reply subject. Offsets
// are marked once the answers of a poll are published (and, at answer QoS
// 1, stored by JetStream) and committed in the background every second,
// not after every poll: a synchronous commit per poll put a broker round
// trip between every batch of answers. A crash publishes the answers of up
// to the last second again. The next poll does not wait for JetStream to
// store the previous poll's answers (it did: under load the answers of a
// poll queued behind the stores of the one before). Of a poll's stored
// answers only the last asks JetStream for an ack (see answerPoll).
func (in *Ingress) runReturner(ctx context.Context) error {
	// A new group starts a little before this start, not at the end: a
	// result produced while the group was joining would be skipped.
	from := kgo.NewOffset().AfterMilli(in.started.Add(-time.Minute).UnixMilli())
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), in.kopts...),
		kgo.ConsumerGroup(in.cfg.Group),
		kgo.ConsumeTopics(in.cfg.ResultsTopic, in.cfg.DLQTopic),
		kgo.ConsumeResetOffset(from),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		// In exactly-once mode an aborted transaction's results must
		// not reach a device.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("ingress: results consumer: %w", err)
	}
	defer func() {
		// What was answered is committed before the group is left, so a
		// clean restart publishes nothing twice.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cl.CommitMarkedOffsets(cctx); err != nil {
			in.logger.Warn("ingress: committing answered results at shutdown", "err", err)
		}
		cl.Close()
	}()
	// The answers of a poll wait for JetStream's ack here, in poll order,
	// while the next poll is already read and answered: a poll's records
	// are marked only after its stored answers are in the stream. At most
	// two polls wait (up to 8192 answers), which bounds what is in flight.
	pending := make(chan answeredPoll)
	markerDone := make(chan struct{})
	go func() {
		defer close(markerDone)
		for p := range pending {
			if !in.awaitStored(ctx, p.stored) {
				return
			}
			cl.MarkCommitRecords(p.recs...)
		}
	}()
	defer func() {
		close(pending)
		<-markerDone
	}()
	for {
		fs := cl.PollRecords(ctx, 4096)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			in.metrics.errors.WithLabelValues("consume").Inc()
			in.logger.Warn("ingress: reading results", "topic", t, "partition", p, "err", err)
		})
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		stored := in.answerPoll(recs)
		select {
		case pending <- answeredPoll{recs: recs, stored: stored}:
		case <-markerDone:
			return nil // ctx ended while the marker waited
		}
	}
}

// answeredPoll is a poll's records and the JetStream ack of its last
// stored answer (nil if none), on their way to being marked for commit.
type answeredPoll struct {
	recs   []*kgo.Record
	stored jetstream.PubAckFuture
}

// answerPoll publishes the answers of a poll's records. Every stored
// answer but the last is published without a reply subject, so JetStream
// sends no ack for it; the last one asks for an ack, returned. The stream
// stores the messages of one connection in the order they were published,
// so that ack means every stored answer of the poll has been through the
// stream: a per-answer ack was a message more per answer each way through
// nats-server and this connection (see docs/ingress.md, Answers).
func (in *Ingress) answerPoll(recs []*kgo.Record) jetstream.PubAckFuture {
	last := len(recs) - 1
	for last >= 0 && !in.answerOf(recs[last]).stored {
		last--
	}
	var f jetstream.PubAckFuture
	for i, r := range recs {
		if g := in.answer(r, in.answerOf(r), i == last); g != nil {
			f = g
		}
	}
	return f
}

// awaitStored waits for JetStream to acknowledge (or refuse) the last
// stored answer of a poll, 30s at most; false when ctx ended first.
func (in *Ingress) awaitStored(ctx context.Context, f jetstream.PubAckFuture) bool {
	if f == nil {
		return true
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case <-f.Ok():
	case err := <-f.Err():
		in.metrics.errors.WithLabelValues("reply").Inc()
		in.logger.Warn("ingress: JetStream refused a stored answer", "subject", f.Msg().Subject, "err", err)
	case <-timeout.C:
		in.metrics.errors.WithLabelValues("reply").Inc()
		in.logger.Warn("ingress: JetStream did not acknowledge answers within 30s")
	case <-ctx.Done():
		return false
	}
	return true
}

// answerTarget is where the answer to a record goes: its reply subject
// ("" when the record answers no device request), whether a copy is
// stored for MQTT QoS 1 subscriptions, and the DLQ headers.
type answerTarget struct {
	reply, class, msg string
	stored            bool
}

func (in *Ingress) answerOf(r *kgo.Record) answerTarget {
	var t answerTarget
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderReply:
			t.reply = string(h.Value)
		case headerErrorClass:
			t.class = string(h.Value)
		case headerErrorMessage:
			t.msg = string(h.Value)
		}
	}
	t.stored = t.reply != "" && in.cfg.AnswerQoS > 0 && strings.HasPrefix(t.reply, ResultsPrefix)
	return t
}

// qos1Header marks a message as an MQTT QoS 1 publish; shared, never
// modified.
var qos1Header = nats.Header{mqttHeader: []string{"1"}}

// answer publishes the answer to r, going to t, if r answers a device
// request. Its
// stored copy asks JetStream for an ack only when ack is set; the ack's
// future is returned (nil otherwise).
func (in *Ingress) answer(r *kgo.Record, t answerTarget, ack bool) jetstream.PubAckFuture {
	if t.reply == "" {
		return nil
	}
	data, kind := r.Value, "result"
	if r.Topic == in.cfg.DLQTopic {
		data, kind = errorReply(r.Value, t.class, t.msg), "error"
	}
	m := &nats.Msg{Subject: t.reply, Data: data}
	if t.stored {
		// As an MQTT QoS 1 publish: QoS 0 subscribers get the core
		// message, QoS 1 subscribers (persistent sessions too) the copy
		// stored in the MQTT stream, and nobody gets both.
		m.Header = qos1Header
	}
	if err := in.nc.PublishMsg(m); err != nil {
		in.metrics.errors.WithLabelValues("reply").Inc()
		return nil
	}
	in.metrics.replies.WithLabelValues(kind).Inc()
	if !t.stored {
		return nil
	}
	stored := &nats.Msg{Subject: InboxPrefix + t.reply, Data: data, Header: qos1Header}
	if !ack {
		if err := in.nc.PublishMsg(stored); err != nil {
			in.metrics.errors.WithLabelValues("reply").Inc()
		}
		return nil
	}
	f, err := in.js.PublishMsgAsync(stored)
	if err != nil {
		in.metrics.errors.WithLabelValues("reply").Inc()
		return nil
	}
	return f
}

// errorReply is what a device gets for a dead-lettered request.
func errorReply(request []byte, class, message string) []byte {
	var req struct {
		RequestID json.RawMessage `json:"request_id"`
		Model     string          `json:"model"`
	}
	_ = json.Unmarshal(request, &req)
	out := struct {
		RequestID json.RawMessage `json:"request_id,omitempty"`
		Model     string          `json:"model,omitempty"`
		Error     struct {
			Class   string `json:"class"`
			Message string `json:"message"`
		} `json:"error"`
	}{RequestID: req.RequestID, Model: req.Model}
	out.Error.Class, out.Error.Message = class, message
	b, _ := json.Marshal(out)
	return b
}
