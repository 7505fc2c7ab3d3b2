package pipeline

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/recordcodec"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/store"
)

// DLQ and replay header names (docs/pipeline.md, "Results" and "Errors").
const (
	HeaderErrorClass      = "error.class"
	HeaderErrorMessage    = "error.message"
	HeaderSourceTopic     = "source.topic"
	HeaderSourcePartition = "source.partition"
	HeaderSourceOffset    = "source.offset"
	HeaderAttempts        = "attempts"
	HeaderFailedAt        = "failed.at"
	HeaderReplayOf        = store.ReplayOfHeader
	// HeaderDLQID is the ID the dead-lettering instance's store gave the record, and
	// HeaderDLQModel the model the request was for: with them every instance of a group
	// can index the DLQ topic under the same IDs (docs/scaling.md, "One DLQ for the group").
	HeaderDLQID    = "dlq.id"
	HeaderDLQModel = "dlq.model"
	// HeaderModel names the model of a request whose body names none.
	HeaderModel = "model"
)

// maxMessage bounds error.message; a header is not the place for a novel.
const maxMessage = 1024

// resultValue encodes the result of request r, rows [off, off+r.rows) of the
// batch's outputs (the whole outputs when the signature is not batchable).
func resultValue(buf []byte, r *request, res *model.Result, names []string, off int64, batched bool, now time.Time) []byte {
	return recordcodec.AppendResult(buf, &recordcodec.Result{
		Request: &r.env, Model: r.entry.key.name, Outputs: res, Names: names,
		Off: off, Rows: r.rows, Batched: batched, Sent: r.rec.Timestamp, Now: now,
	})
}

// checkOutputs verifies the model's outputs before they are sliced per
// request: a malformed answer must become an error, not a panic.
func checkOutputs(res *model.Result, rows int64, batched bool) error {
	if res == nil || len(res.Outputs) == 0 {
		return fmt.Errorf("model returned no outputs")
	}
	for name, t := range res.Outputs {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("output %q: %w", name, err)
		}
		if batched && (len(t.Shape) == 0 || t.Shape[0] != rows) {
			return fmt.Errorf("output %q has shape %s for a batch of %d rows", name, tensor.ShapeString(t.Shape), rows)
		}
	}
	return nil
}

// dlqOutput makes r's DLQ record: the original key, value and headers, plus
// why and where it failed; and the same record for the store.
func (p *Pipeline) dlqOutput(r *request, class string, err error, now time.Time) {
	msg := err.Error()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage-3] + "..."
	}
	msg = string([]rune(msg)) // a cut in the middle of a rune becomes U+FFFD, not invalid UTF-8
	src := r.rec
	failedAt := now.UTC()
	hs := make([]kgo.RecordHeader, 0, len(src.Headers)+7)
	hs = append(hs, src.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: HeaderErrorClass, Value: []byte(class)},
		kgo.RecordHeader{Key: HeaderErrorMessage, Value: []byte(msg)},
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(src.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, src.Offset, 10)},
		kgo.RecordHeader{Key: HeaderAttempts, Value: strconv.AppendInt(nil, int64(r.attempts), 10)},
		kgo.RecordHeader{Key: HeaderFailedAt, Value: failedAt.AppendFormat(nil, time.RFC3339Nano)},
	)
	sh := make([]store.Header, len(hs))
	for i, h := range hs {
		sh[i] = store.Header{Key: h.Key, Value: h.Value}
	}
	if r.modelName != "" {
		hs = append(hs, kgo.RecordHeader{Key: HeaderDLQModel, Value: []byte(r.modelName)})
	}
	r.dlqID = nil
	if p.st != nil {
		// The store assigns the ID when emitLoop stores the record, after fitOutput
		// sized it: a placeholder of an ID's length keeps that size exact, and every
		// cut-down copy of the headers shares its bytes, which setDLQID fills in.
		r.dlqID = make([]byte, idLen)
		hs = append(hs, kgo.RecordHeader{Key: HeaderDLQID, Value: r.dlqID})
	}
	r.out = &kgo.Record{Topic: p.cfg.DLQTopic, Key: src.Key, Value: src.Value, Headers: hs, Partition: src.Partition}
	r.full = r.out
	r.dlq = &store.Record{
		Key: src.Key, Value: src.Value, Headers: sh,
		Class: class, Message: msg, Model: r.modelName,
		SourceTopic: src.Topic, SourcePartition: src.Partition, SourceOffset: src.Offset,
		Attempts: r.attempts, FailedAt: failedAt,
	}
	r.class = class
	r.label = "unknown"
	if r.entry != nil && r.entry.err == nil {
		r.label = r.entry.key.name
	}
}

// idLen is the length of a store ID (a ULID's text).
const idLen = 26

// setDLQID fills the ID placeholder of r's DLQ record (dlqOutput) with the ID the store
// gave it, or, when it was not stored, removes the header.
func setDLQID(r *request, stored bool) {
	if r.dlqID == nil {
		return
	}
	if stored && len(r.dlq.ID) == idLen {
		copy(r.dlqID, r.dlq.ID)
		return
	}
	for _, out := range []*kgo.Record{r.out, r.full} {
		out.Headers = slices.DeleteFunc(slices.Clone(out.Headers), func(h kgo.RecordHeader) bool { return h.Key == HeaderDLQID })
	}
	r.dlqID = nil
}

// resultOutput makes r's result record.
func (p *Pipeline) resultOutput(r *request, value []byte) {
	src := r.rec
	r.out = &kgo.Record{Topic: p.cfg.ResultsTopic, Key: src.Key, Value: value, Headers: src.Headers, Partition: src.Partition}
	r.dlq, r.dlqID = nil, nil
	r.label = r.entry.key.name
}
