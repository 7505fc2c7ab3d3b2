package pipeline

import (
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/internal/jsonscan"
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

// outputNames is the order outputs are written in: the signature's order,
// then anything else the model returned, by name.
func outputNames(si *sigInfo, res *model.Result) []string {
	names := make([]string, 0, len(res.Outputs))
	for _, o := range si.sig.Outputs {
		if _, ok := res.Outputs[o.Name]; ok {
			names = append(names, o.Name)
		}
	}
	if len(names) == len(res.Outputs) {
		return names
	}
	var extra []string
	for n := range res.Outputs {
		if !slices.Contains(names, n) {
			extra = append(extra, n)
		}
	}
	slices.Sort(extra)
	return append(names, extra...)
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

// resultValue encodes the result of request r, rows [off, off+r.rows) of the
// batch's outputs (the whole outputs when the signature is not batchable).
func resultValue(buf []byte, r *request, res *model.Result, names []string, off int64, batched bool, now time.Time) []byte {
	b := append(buf, '{')
	if r.env.id != nil {
		b = append(b, `"request_id":`...)
		b = append(b, r.env.id...)
		b = append(b, ',')
	}
	b = append(b, `"model":`...)
	b = appendJSONString(b, r.entry.key.name)
	b = append(b, `,"model_version":`...)
	b = strconv.AppendInt(b, res.Version, 10)
	// The short form has one row and gets that row; the full forms carry
	// their own batch dimension and get it back, as TF Serving answers.
	drop := r.env.form == formFeatures && batched
	if len(names) == 1 {
		b = append(b, `,"prediction":`...)
		b = appendOutput(b, res.Outputs[names[0]], off, r.rows, batched, drop)
	} else {
		b = append(b, `,"outputs":{`...)
		for i, n := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, n)
			b = append(b, ':')
			b = appendOutput(b, res.Outputs[n], off, r.rows, batched, drop)
		}
		b = append(b, '}')
	}
	b = append(b, `,"timestamp":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","latency_ms":`...)
	b = strconv.AppendFloat(b, latencyMS(r.rec.Timestamp, now), 'f', 3, 64)
	return append(b, '}')
}

func latencyMS(from, now time.Time) float64 {
	if from.IsZero() {
		return 0
	}
	return max(float64(now.Sub(from).Microseconds())/1000, 0)
}

func appendOutput(b []byte, t *tensor.Tensor, off, rows int64, batched, dropBatch bool) []byte {
	shape := t.Shape
	lo, hi := 0, t.Len()
	if batched {
		per := 1
		for _, d := range shape[1:] {
			per *= int(d)
		}
		lo, hi = int(off)*per, int(off+rows)*per
		if dropBatch {
			shape = shape[1:]
		} else {
			shape = append([]int64{rows}, shape[1:]...)
		}
	}
	switch d := t.Data.(type) {
	case []float32:
		return appendNested(b, shape, d[lo:hi], appendF32)
	case []float64:
		return appendNested(b, shape, d[lo:hi], appendF64)
	case []int32:
		return appendNested(b, shape, d[lo:hi], func(b []byte, v int32) []byte { return strconv.AppendInt(b, int64(v), 10) })
	case []int64:
		return appendNested(b, shape, d[lo:hi], func(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) })
	case []int16:
		return appendNested(b, shape, d[lo:hi], func(b []byte, v int16) []byte { return strconv.AppendInt(b, int64(v), 10) })
	case []int8:
		return appendNested(b, shape, d[lo:hi], func(b []byte, v int8) []byte { return strconv.AppendInt(b, int64(v), 10) })
	case []uint8:
		return appendNested(b, shape, d[lo:hi], func(b []byte, v uint8) []byte { return strconv.AppendUint(b, uint64(v), 10) })
	case []bool:
		return appendNested(b, shape, d[lo:hi], strconv.AppendBool)
	case [][]byte:
		return appendNested(b, shape, d[lo:hi], appendBytesValue)
	}
	return append(b, "null"...)
}

func appendNested[T any](b []byte, shape []int64, data []T, f func([]byte, T) []byte) []byte {
	if len(shape) == 0 {
		return f(b, data[0])
	}
	b = append(b, '[')
	n := int(shape[0])
	if n > 0 {
		step := len(data) / n
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendNested(b, shape[1:], data[i*step:(i+1)*step], f)
		}
	}
	return append(b, ']')
}

// appendF32 writes the shortest text that reads back as the same float32.
// JSON has no NaN or infinities; they are written as the strings Python's
// json module and TF Serving use for them.
func appendF32(b []byte, v float32) []byte {
	return appendFloat(b, float64(v), 32)
}

func appendF64(b []byte, v float64) []byte { return appendFloat(b, v, 64) }

func appendFloat(b []byte, v float64, bits int) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, bits)
}

// appendBytesValue writes a DT_STRING element: a JSON string when it is
// UTF-8 text, else TF Serving's {"b64": ...}.
func appendBytesValue(b []byte, v []byte) []byte {
	if utf8.Valid(v) {
		return appendJSONString(b, string(v))
	}
	b = append(b, `{"b64":"`...)
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, `"}`...)
}

func appendJSONString(b []byte, s string) []byte { return jsonscan.AppendString(b, s) }

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
