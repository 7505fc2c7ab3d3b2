package pipeline

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/recordcodec"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/internal/jsonscan"
)

// Decoded is what DecodeRequest found in a record, for tests of the decoder.
type Decoded struct {
	ID     string // request_id as JSON text
	Spec   model.Spec
	Inputs map[string]*tensor.Tensor
	Rows   int64
}

// DecodeRequest decodes value as the pipeline does for a model whose
// signature is sig, and returns the error class with the error. It goes
// through ParseRequest and Request.Decode, the parser's exported way (a
// rollout's replay), so the decoder's tests and fuzzing cover that too.
func DecodeRequest(value []byte, sig *model.Signature, defaultInput string) (*Decoded, string, error) {
	r, err := ParseRequest(value, "", "")
	if err != nil {
		return nil, classOf(err), err
	}
	// sig is the signature whatever name the request gives it.
	md := &model.Metadata{Signatures: map[string]*model.Signature{model.DefaultSignature: sig}}
	if r.Spec.Signature != "" {
		md.Signatures[r.Spec.Signature] = sig
	}
	if err := r.Decode(md, defaultInput); err != nil {
		return nil, classOf(err), err
	}
	return &Decoded{ID: r.ID, Spec: r.Spec, Inputs: r.Inputs, Rows: r.Rows}, "", nil
}

// AppendJSONString exposes the result encoder's string writer.
func AppendJSONString(b []byte, s string) []byte { return jsonscan.AppendString(b, s) }

// HotPath is the pipeline's per-request work without the broker: decode
// each record against the model's cached metadata, stack rows into batches,
// predict, and encode one result per request.
type HotPath struct {
	p   *Pipeline
	buf []byte
}

// NewHotPath prepares a hot path with the default config and maxBatch.
func NewHotPath(pred Predictor, maxBatch int) (*HotPath, error) {
	cfg := DefaultConfig()
	cfg.MaxBatchSize = maxBatch
	p, err := New(cfg, nil, nil, pred, nil, nil)
	if err != nil {
		return nil, err
	}
	return &HotPath{p: p}, nil
}

// Run processes values in batches and returns the bytes of results encoded.
func (h *HotPath) Run(ctx context.Context, values [][]byte) (int, error) {
	p := h.p
	n := 0
	now := time.Now()
	reqs := make([]request, len(values))
	for start := 0; start < len(values); start += p.cfg.MaxBatchSize {
		end := min(start+p.cfg.MaxBatchSize, len(values))
		b := &batch{reqs: make([]*request, 0, end-start)}
		for i := start; i < end; i++ {
			r := &reqs[i]
			r.rec = &kgo.Record{Value: values[i], Timestamp: now}
			if err := p.decode(ctx, r); err != nil {
				return 0, err
			}
			b.reqs = append(b.reqs, r)
			b.rows += r.rows
		}
		b.spec = p.specOf(b.reqs[0])
		res, err := p.pred.Predict(ctx, b.spec, batchInputs(b))
		if err != nil {
			return 0, err
		}
		if err := checkOutputs(res, b.rows, true); err != nil {
			return 0, err
		}
		names := recordcodec.OutputNames(b.reqs[0].si.Sig, res)
		off := int64(0)
		for _, r := range b.reqs {
			h.buf = resultValue(h.buf[:0], r, res, names, off, true, now)
			r.out = &kgo.Record{Value: append([]byte(nil), h.buf...)}
			n += len(h.buf)
			off += r.rows
		}
	}
	return n, nil
}

// ClassifyProduceError exposes how the pipeline sorts produce errors:
// "retriable", "record" or "fatal".
func ClassifyProduceError(err error) string { return classifyProduceError(err).String() }

// SetProduceStallAfter changes how long outputs may wait for the broker
// before pipelines created afterwards call themselves stalled; it returns
// the function that restores the default.
func SetProduceStallAfter(d time.Duration) (restore func()) {
	old := produceStallAfter
	produceStallAfter = d
	return func() { produceStallAfter = old }
}
