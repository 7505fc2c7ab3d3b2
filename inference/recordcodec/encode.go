package recordcodec

import (
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/internal/jsonscan"
)

// OutputNames is the order AppendResult writes outputs in: the signature's
// order, then anything else the model returned, by name.
func OutputNames(sig *model.Signature, res *model.Result) []string {
	names := make([]string, 0, len(res.Outputs))
	for _, o := range sig.Outputs {
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

// Result is one request's share of a batch's outputs, as AppendResult
// writes it.
type Result struct {
	Request *Envelope // for request_id and the form
	Model   string
	Outputs *model.Result
	Names   []string // OutputNames(signature, Outputs)
	// Off and Rows are the request's rows of the batch's outputs; when
	// Batched is false (the signature is not batchable) the request has
	// the whole outputs.
	Off, Rows int64
	Batched   bool
	// Sent is the request record's timestamp; latency_ms is from it to Now.
	Sent, Now time.Time
}

// AppendResult appends the result record's value (docs/pipeline.md, "Results").
func AppendResult(buf []byte, r *Result) []byte {
	res, names, off, batched, now := r.Outputs, r.Names, r.Off, r.Batched, r.Now
	b := append(buf, '{')
	if r.Request.ID != nil {
		b = append(b, `"request_id":`...)
		b = append(b, r.Request.ID...)
		b = append(b, ',')
	}
	b = append(b, `"model":`...)
	b = jsonscan.AppendString(b, r.Model)
	b = append(b, `,"model_version":`...)
	b = strconv.AppendInt(b, res.Version, 10)
	// The short form has one row and gets that row; the full forms carry
	// their own batch dimension and get it back, as TF Serving answers.
	drop := r.Request.Form == FormFeatures && batched
	if len(names) == 1 {
		b = append(b, `,"prediction":`...)
		b = appendOutput(b, res.Outputs[names[0]], off, r.Rows, batched, drop)
	} else {
		b = append(b, `,"outputs":{`...)
		for i, n := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonscan.AppendString(b, n)
			b = append(b, ':')
			b = appendOutput(b, res.Outputs[n], off, r.Rows, batched, drop)
		}
		b = append(b, '}')
	}
	b = append(b, `,"timestamp":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","latency_ms":`...)
	b = strconv.AppendFloat(b, latencyMS(r.Sent, now), 'f', 3, 64)
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
		return jsonscan.AppendString(b, string(v))
	}
	b = append(b, `{"b64":"`...)
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, `"}`...)
}
