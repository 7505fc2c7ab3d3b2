package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Headers of a DLQ record cut down to fit the DLQ topic (see fitOutput). The
// source.* headers are kept, so the original request can be read from the
// requests topic while it is retained; the store keeps the whole record.
const (
	// HeaderTruncated lists what was left out: "value", or "value,headers,key".
	HeaderTruncated = "dlq.truncated"
	// HeaderOriginalSize is the original value's size in bytes.
	HeaderOriginalSize = "dlq.original.size"
)

// defaultMaxMessageBytes is Kafka's default max.message.bytes, assumed for a
// topic whose configuration cannot be read.
const defaultMaxMessageBytes = 1048588

// What a failed produce means for the pipeline (classifyProduceError).
type produceKind int

const (
	// produceRetriable: the broker cannot take records now (timeouts after
	// kgo's own retries, a missing topic, a full disk, too few replicas, and
	// anything not known to be otherwise). The record is produced again
	// after a backoff; the pipeline reports itself not ready meanwhile.
	produceRetriable produceKind = iota
	// produceRecord: this record cannot be produced as it is (too large, or
	// refused as invalid). It is produced again cut down (fitOutput), or
	// kept in the store only; the pipeline goes on.
	produceRecord
	// produceFatal: no record can be produced by this instance (not
	// authorized, fenced by another instance with the same transactional
	// id, a broker too old for the client's settings). The pipeline stops
	// and Run returns the error: only the operator can fix it.
	produceFatal
)

var produceKindNames = [...]string{"retriable", "record", "fatal"}

func (k produceKind) String() string { return produceKindNames[k] }

// classifyProduceError sorts an error from a produce promise. kgo has
// already retried what it retries itself (leadership moves, timeouts of one
// request, NOT_ENOUGH_REPLICAS): what reaches a promise has outlasted that.
func classifyProduceError(err error) produceKind {
	for _, e := range []error{
		kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
		kerr.InvalidTimestamp,
	} {
		if errors.Is(err, e) {
			return produceRecord
		}
	}
	for _, e := range []error{
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed,
		kerr.SaslAuthenticationFailed, kerr.ProducerFenced, kerr.InvalidTxnState, kerr.InvalidProducerIDMapping,
		kerr.UnsupportedForMessageFormat, kerr.UnsupportedCompressionType, kerr.UnsupportedVersion,
		kerr.InvalidTopicException, kerr.InvalidRequiredAcks, kgo.ErrClientClosed,
	} {
		if errors.Is(err, e) {
			return produceFatal
		}
	}
	return produceRetriable
}

// topicLimits reads max.message.bytes of the results and DLQ topics. A topic
// whose configuration cannot be read (no DescribeConfigs permission, say)
// gets Kafka's default; a record-level error then still cuts the record down.
func (p *Pipeline) topicLimits(ctx context.Context) map[string]int {
	var lim map[string]int
	cl, err := kgo.NewClient(p.clientOpts...)
	if err == nil {
		defer cl.Close()
		lim, err = TopicLimits(ctx, kadm.NewClient(cl), p.cfg.ResultsTopic, p.cfg.DLQTopic)
	} else {
		lim = map[string]int{p.cfg.ResultsTopic: defaultMaxMessageBytes, p.cfg.DLQTopic: defaultMaxMessageBytes}
	}
	if err != nil {
		p.logger.Warn("cannot read the output topics' max.message.bytes; assuming Kafka's default",
			"default", defaultMaxMessageBytes, "err", err)
	}
	return lim
}

// TopicLimits reads max.message.bytes of topics: the largest record batch
// the broker accepts into each. A topic whose configuration cannot be read
// gets Kafka's default (1048588), and the error says why.
func TopicLimits(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]int, error) {
	lim := map[string]int{}
	for _, t := range topics {
		lim[t] = defaultMaxMessageBytes
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	for _, rc := range rcs {
		if rc.Err != nil {
			err = errors.Join(err, fmt.Errorf("%s: %w", rc.Name, rc.Err))
			continue
		}
		// The topic's own setting wins; else the broker's, which a
		// real Kafka reports as the topic's value and kfake under the
		// broker's name.
		var topic, broker, def int
		for _, c := range rc.Configs {
			if c.Value == nil {
				continue
			}
			n, perr := strconv.Atoi(*c.Value)
			if perr != nil || n <= 0 {
				continue
			}
			switch {
			case c.Key == "max.message.bytes" && c.Source == kmsg.ConfigSourceDynamicTopicConfig:
				topic = n
			case c.Key == "max.message.bytes":
				def = n
			case c.Key == "message.max.bytes":
				broker = n
			}
		}
		for _, n := range []int{topic, broker, def} {
			if n > 0 {
				lim[rc.Name] = n
				break
			}
		}
	}
	return lim, err
}

// batchOverhead is a record batch's header (what the broker measures against
// max.message.bytes includes it), recordOverhead a conservative bound on one
// record's varints and attributes, headerOverhead on one header's varints.
const (
	batchOverhead  = 61
	recordOverhead = 32
	headerOverhead = 10
)

// WireSize bounds r's size in a record batch of its own, uncompressed: what
// the broker measures against max.message.bytes.
func WireSize(r *kgo.Record) int { return wireSize(r) }

// wireSize bounds r's size in a record batch of its own, uncompressed.
func wireSize(r *kgo.Record) int {
	n := batchOverhead + recordOverhead + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += headerOverhead + len(h.Key) + len(h.Value)
	}
	return n
}

// Degradation levels of an output (fitOutput), raised by each record-level
// produce error.
const (
	levelFit       = 0 // cut down to max.message.bytes if over it
	levelHalf      = 1 // cut down to half of it (a limit lower than the one read)
	levelMinimal   = 2 // a DLQ record without the original value, headers and key
	levelStoreOnly = 3 // not produced: kept in the store only
)

// fitOutput makes r's output fit its topic, at r's degradation level (the
// higher of its own and the one remembered for its source record, so an
// exactly-once redelivery after an abort starts where the aborted attempt
// stopped). A result over the limit becomes a DLQ record (class
// result_too_large). It
// reports false when the output is to be kept in the store only.
func (p *Pipeline) fitOutput(r *request) bool {
	level := max(r.level, p.degraded.get(r.rec))
	r.level = level
	if r.dlq == nil {
		limit := p.limitFor(p.cfg.ResultsTopic, level)
		switch size := wireSize(r.out); {
		case level >= levelMinimal:
			err := fmt.Errorf("the broker refused the result twice (see the log)")
			if r.produceErr != nil {
				err = fmt.Errorf("the broker refused the result: %w", r.produceErr)
			}
			p.dlqOutput(r, ClassInternal, fmt.Errorf("producing to %s: %w", p.cfg.ResultsTopic, err), time.Now())
		case size > limit:
			p.dlqOutput(r, ClassResultTooLarge, fmt.Errorf("the result of %d bytes is larger than %s's max.message.bytes (%d)",
				size, p.cfg.ResultsTopic, limit), time.Now())
		default:
			return true
		}
	}
	if level >= levelStoreOnly {
		return false
	}
	limit := p.limitFor(p.cfg.DLQTopic, level)
	full := r.full // as dlqOutput made it: a retry after a record error cuts from the whole record again
	if level < levelMinimal && wireSize(full) <= limit {
		r.out = full
		return true
	}
	out := *full
	orig := len(out.Value)
	hs := out.Headers
	out.Headers = nil
	if level >= levelMinimal {
		// Only the DLQ headers, which follow the original ones.
		hs = hs[len(r.rec.Headers):]
		out.Key = nil
	}
	out.Headers = append(out.Headers[:0:0], hs...)
	out.Value = nil
	out.Headers = append(out.Headers,
		kgo.RecordHeader{Key: HeaderOriginalSize, Value: strconv.AppendInt(nil, int64(orig), 10)},
		kgo.RecordHeader{Key: HeaderTruncated, Value: []byte("value")})
	if level >= levelMinimal {
		out.Headers[len(out.Headers)-1].Value = []byte("value,headers,key")
	} else if room := limit - wireSize(&out); room > 0 {
		out.Value = full.Value[:min(room, orig)]
	}
	if wireSize(&out) > limit {
		if level >= levelMinimal {
			return false // not even the DLQ headers fit
		}
		r.level = levelMinimal // the original key and headers alone do not fit
		return p.fitOutput(r)
	}
	r.out = &out
	return true
}

// limitFor is the size an output to topic must stay within at level.
func (p *Pipeline) limitFor(topic string, level int) int {
	limit := p.limits[topic]
	if limit <= 0 {
		limit = defaultMaxMessageBytes
	}
	if level >= levelHalf {
		limit /= 2
	}
	return limit
}

// degradedMemory remembers the degradation level of outputs whose produce
// failed with a record-level error, by source record, so that in
// exactly-once mode, where such an error aborts the transaction, the
// redelivered request's output starts cut down: a poisonous output costs a
// bounded number of aborted transactions, not one per poll forever.
type degradedMemory struct {
	mu sync.Mutex
	m  map[partKey]map[int64]int
}

// degradedLimit bounds the memory; it is cleared when full (an entry matters
// only until its request is committed, normally within a poll).
const degradedLimit = 4096

func (d *degradedMemory) set(rec *kgo.Record, level int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) > degradedLimit {
		d.m = make(map[partKey]map[int64]int)
	}
	k := partKey{rec.Topic, rec.Partition}
	if d.m[k] == nil || len(d.m[k]) > degradedLimit {
		d.m[k] = make(map[int64]int)
	}
	d.m[k][rec.Offset] = level
}

func (d *degradedMemory) get(rec *kgo.Record) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[partKey{rec.Topic, rec.Partition}][rec.Offset]
}

// produceFailed handles a failed produce of r's output by its kind: a record
// error is that record's problem (produce it again cut down), a retriable
// one waits and tries again with the pipeline not ready, a fatal one stops
// the pipeline. In exactly-once mode every failure aborts the transaction
// (kgo cannot commit one with a failed record); the redelivered request's
// output is then cut down as remembered.
func (p *Pipeline) produceFailed(r *request, err error) {
	if p.eos && errors.Is(err, kgo.ErrAborting) {
		p.tr.failed(r, err) // the transaction is being aborted anyway
		return
	}
	kind := classifyProduceError(err)
	r.produceErr = err
	src := r.rec
	switch kind {
	case produceFatal:
		p.setFatal(fmt.Errorf("inference: producing to %s: %w (not retried: the broker refuses this instance)", r.out.Topic, err))
		if p.eos {
			p.tr.failed(r, err)
		}
		return
	case produceRecord:
		r.level++
		p.degraded.set(src, r.level)
		p.logger.Warn("an output cannot be produced as it is; producing it cut down", "topic", r.out.Topic,
			"source_topic", src.Topic, "source_partition", src.Partition, "source_offset", src.Offset,
			"bytes", wireSize(r.out), "level", r.level, "err", err)
		p.noteError(fmt.Errorf("producing to %s (request %s/%d@%d): %w", r.out.Topic, src.Topic, src.Partition, src.Offset, err))
		if p.eos {
			p.tr.failed(r, err)
			return
		}
		p.tr.again(r)
	case produceRetriable:
		p.stall(fmt.Errorf("producing to %s: %w", r.out.Topic, err))
		if p.eos {
			p.tr.failed(r, err)
			return
		}
		t := p.tuning()
		if r.produceBackoff == 0 {
			r.produceBackoff = t.RetryBackoff
		}
		wait := r.produceBackoff
		r.produceBackoff = min(2*r.produceBackoff, t.RetryBackoffMax)
		time.AfterFunc(wait, func() { p.tr.again(r) })
	}
}

// stall marks the pipeline unable to make progress (not ready) until an
// output is acknowledged (at-least-once) or a transaction commits.
func (p *Pipeline) stall(err error) {
	if p.stalled.CompareAndSwap(false, true) {
		p.logger.Warn("the pipeline cannot produce: not ready until the broker takes records again", "err", err)
	}
	p.noteError(err)
}

func (p *Pipeline) unstall() {
	if p.stalled.CompareAndSwap(true, false) {
		p.logger.Info("the broker takes records again: ready")
	}
}

// produceStallAfter is how long outputs may wait for the broker's answer,
// with none answered meanwhile, before the pipeline calls itself stalled.
// kgo retries some errors (KAFKA_STORAGE_ERROR, NOT_ENOUGH_REPLICAS, a
// leader that does not answer) without end and without telling the
// promise: without this the pipeline would wait silently while ready.
var produceStallAfter = 15 * time.Second

// watchProduce marks the pipeline stalled while the broker answers none of
// the outputs waiting for it for stallAfter; the next acknowledgement (or
// commit, exactly-once) clears it.
func (p *Pipeline) watchProduce(ctx context.Context) {
	t := time.NewTicker(min(time.Second, p.stallAfter/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := p.outstanding.Load()
		if n == 0 {
			continue
		}
		if since := time.Since(time.Unix(0, p.progressAt.Load())); since > p.stallAfter {
			p.stall(fmt.Errorf("the broker has answered none of %d outputs for %s", n, since.Round(time.Second)))
		}
	}
}
