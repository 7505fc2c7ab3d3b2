package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
)

// baseline processes requests the way the design note this product comes
// from does: a consumer loop that, for each message in turn, decodes it,
// makes one Predict call over gRPC, produces the result and waits for the
// broker's acknowledgement, then commits that message's offset
// synchronously before it looks at the next. Nothing is batched and nothing
// overlaps. It runs in the bench's process, against the same broker and
// the same model server as the pipeline, so the two figures are comparable.
type baseline struct {
	logger     *slog.Logger
	clientOpts func(extra ...kgo.Opt) []kgo.Opt
	requests   string
	results    string
	dlq        string
	group      string
	modelName  string
	grpcAddr   string

	processed atomic.Int64
}

// run consumes until ctx ends.
func (b *baseline) run(ctx context.Context) error {
	opts := b.clientOpts(
		kgo.ConsumerGroup(b.group),
		kgo.ConsumeTopics(b.requests),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// The article's producer sends each result on its own.
		kgo.ProducerLinger(0),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("bench: baseline client: %w", err)
	}
	defer cl.Close()
	tc := tfserving.DefaultConfig(b.grpcAddr)
	tc.Timeout = 10 * time.Second
	tf, err := tfserving.Dial(tc)
	if err != nil {
		return fmt.Errorf("bench: baseline model server client: %w", err)
	}
	defer tf.Close()

	spec := model.Spec{Name: b.modelName}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = fmt.Errorf("bench: baseline consuming %s/%d: %w", t, p, err)
		})
		if ferr != nil {
			return ferr
		}
		for _, rec := range fs.Records() {
			out, err := b.process(ctx, tf, spec, rec)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if err := cl.ProduceSync(ctx, out).FirstErr(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("bench: baseline producing a result: %w", err)
			}
			if err := cl.CommitRecords(ctx, rec); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("bench: baseline committing: %w", err)
			}
			b.processed.Add(1)
		}
	}
}

// process turns one request into its result record, or a DLQ record when
// it cannot be decoded or the model rejects it. Only an unavailable model
// server is an error (the baseline does not retry: it is not what is
// measured).
func (b *baseline) process(ctx context.Context, tf *tfserving.Client, spec model.Spec, rec *kgo.Record) (*kgo.Record, error) {
	start := time.Now()
	var req demo.Request // the article's request: an id and one row of features
	if err := json.Unmarshal(rec.Value, &req); err != nil || len(req.Features) == 0 {
		if err == nil {
			err = errors.New("no features")
		}
		return b.dlqRecord(rec, "decode", err), nil
	}
	in := tensor.FromFloat32(req.Features, 1, int64(len(req.Features)))
	res, err := tf.Predict(ctx, spec, map[string]*tensor.Tensor{"input": in})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return b.dlqRecord(rec, "model", err), nil
	}
	var pred []float32
	for _, t := range res.Outputs {
		pred = t.Float32s()
	}
	v := []byte(`{"request_id":`)
	v = strconv.AppendQuote(v, req.RequestID)
	v = append(v, `,"model":`...)
	v = strconv.AppendQuote(v, spec.Name)
	v = append(v, `,"model_version":`...)
	v = strconv.AppendInt(v, res.Version, 10)
	v = append(v, `,"prediction":[`...)
	for i, f := range pred {
		if i > 0 {
			v = append(v, ',')
		}
		v = strconv.AppendFloat(v, float64(f), 'g', -1, 32)
	}
	now := time.Now()
	v = append(v, `],"timestamp":"`...)
	v = now.UTC().AppendFormat(v, time.RFC3339Nano)
	v = append(v, `","latency_ms":`...)
	v = strconv.AppendFloat(v, float64(now.Sub(start).Microseconds())/1000, 'f', 3, 64)
	v = append(v, '}')
	return &kgo.Record{Topic: b.results, Key: rec.Key, Value: v, Headers: rec.Headers}, nil
}

func (b *baseline) dlqRecord(rec *kgo.Record, class string, err error) *kgo.Record {
	hs := append([]kgo.RecordHeader{}, rec.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: "error.class", Value: []byte(class)},
		kgo.RecordHeader{Key: "error.message", Value: []byte(err.Error())},
	)
	return &kgo.Record{Topic: b.dlq, Key: rec.Key, Value: rec.Value, Headers: hs}
}
