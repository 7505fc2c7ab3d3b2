package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/store"
)

// A replay scores a saved dataset with two versions, off the live traffic:
// the offline check before a candidate touches it. Its result is a Rollout
// of mode replay (never running: nothing is routed) whose comparisons are
// stored as a shadow's are, so its report is the same report.
const (
	ModeReplay    = "replay"
	StateReplayed = "replayed"
)

// ReplaySpec says which versions score a dataset.
type ReplaySpec struct {
	// Model is the model whose requests are scored; default: the dataset's
	// model filter, else pipeline.default_model. Requests of other models
	// are left out (counted).
	Model string `json:"model,omitempty"`
	// Stable is the version compared against; 0: the version serving now.
	Stable int64 `json:"stable,omitempty"`
	// Candidate is the version tried; 0: the highest available one other
	// than Stable.
	Candidate int64   `json:"candidate,omitempty"`
	Threshold float64 `json:"threshold,omitempty"`
	Tolerance float64 `json:"tolerance,omitempty"`
	Output    string  `json:"output,omitempty"`
}

// ReplayStats says what a replay did with a dataset's records.
type ReplayStats struct {
	Dataset string `json:"dataset"`
	Records int    `json:"records"`
	// Scored were decoded and sent to both versions; OtherModel named
	// another model; Undecodable would be dead-lettered by the pipeline
	// at decoding (class decode or validation).
	Scored      int `json:"scored"`
	OtherModel  int `json:"other_model"`
	Undecodable int `json:"undecodable"`
}

// replayBatchRows bounds the rows of one replay call.
const replayBatchRows = 64

type metadataReader interface {
	Metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error)
}

type pendingReq struct {
	rec *store.Record
	req *pipeline.Request
}

// Replay scores dataset with two versions of a model and returns the
// comparison report; it is kept (with its comparisons, for the rollout
// retention) as the dataset's last replay, replacing the one before.
func (c *Controller) Replay(ctx context.Context, dataset string, spec ReplaySpec) (*Report, error) {
	if !c.claim(dataset) {
		return nil, fmt.Errorf("%w: dataset %s is being captured, replayed or deleted", ErrConflict, dataset)
	}
	defer c.release(dataset)
	d, err := c.st.GetDataset(dataset)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: no dataset %s", ErrNotFound, dataset)
		}
		return nil, err
	}
	src := c.requestsSource()
	r, err := c.replayRollout(ctx, d, src, spec)
	if err != nil {
		return nil, err
	}
	mr, ok := c.pred.(metadataReader)
	if !ok {
		return nil, fmt.Errorf("%w: the model server cannot describe models, so requests cannot be decoded", ErrInvalid)
	}
	mctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	md, err := mr.Metadata(mctx, model.Spec{Name: r.Model, Version: r.Stable})
	cancel()
	if err == nil && md == nil {
		err = errors.New("the model server returned no metadata")
	}
	if err != nil {
		return nil, fmt.Errorf("replay: metadata of model %s version %d: %w", r.Model, r.Stable, err)
	}
	stats := &ReplayStats{Dataset: dataset}
	var batch []pendingReq
	var rows int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		recs := c.scoreReplay(ctx, r, batch)
		batch, rows = batch[:0], 0
		if err := c.st.PutShadow(r.ID, recs, c.cfg.Retention); err != nil {
			return fmt.Errorf("replay: storing comparisons: %w", err)
		}
		return ctx.Err()
	}
	err = c.st.ScanDataset(dataset, func(rec *store.Record) error {
		stats.Records++
		var header string
		for _, h := range rec.Headers {
			if h.Key == pipeline.HeaderModel {
				header = string(h.Value)
			}
		}
		req, err := pipeline.ParseRequest(rec.Value, header, src.DefaultModel)
		if err != nil {
			stats.Undecodable++
			return nil
		}
		if req.Spec.Name != r.Model {
			stats.OtherModel++
			return nil
		}
		if err := req.Decode(md, src.DefaultInput); err != nil {
			stats.Undecodable++
			return nil
		}
		stats.Scored++
		if len(batch) > 0 && !stacks(batch[0].req, req, rows) {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, pendingReq{rec, req})
		rows += req.Rows
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		if derr := c.st.DeleteShadow(r.ID); derr != nil {
			c.log.Warn("deleting an unfinished replay's comparisons", "replay", r.ID, "err", derr)
		}
		return nil, err
	}
	r.Replay, r.EndedAt = stats, c.cfg.Now()
	c.mu.Lock()
	prev := c.replays[dataset]
	c.replays[dataset] = r
	err = c.persistLocked()
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if prev != nil {
		if err := c.st.DeleteShadow(prev.ID); err != nil {
			c.log.Warn("deleting a replay's comparisons", "replay", prev.ID, "err", err)
		}
	}
	c.log.Info("dataset replayed", "dataset", dataset, "id", r.ID, "model", r.Model, "stable", r.Stable, "candidate", r.Candidate,
		"scored", stats.Scored, "undecodable", stats.Undecodable, "other_model", stats.OtherModel)
	return c.replayReport(r)
}

// ReplayReport is the report of a dataset's last replay.
func (c *Controller) ReplayReport(dataset string) (*Report, error) {
	c.mu.Lock()
	r := c.replays[dataset]
	c.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("%w: dataset %s has not been replayed", ErrNotFound, dataset)
	}
	return c.replayReport(r)
}

func (c *Controller) replayReport(r *Rollout) (*Report, error) {
	out := *r
	rep, err := c.report(&out, nil)
	if err != nil {
		return nil, err
	}
	rep.Dropped, rep.Queue = 0, 0 // the live shadow's, not the replay's
	return rep, nil
}

// replayRollout resolves the versions a replay compares, as Start does.
func (c *Controller) replayRollout(ctx context.Context, d *store.Dataset, src Requests, spec ReplaySpec) (*Rollout, error) {
	name := spec.Model
	if name == "" {
		name = d.Model
	}
	if name == "" {
		name = src.DefaultModel
	}
	if name == "" {
		return nil, fmt.Errorf("%w: name the model to replay", ErrInvalid)
	}
	if spec.Stable < 0 || spec.Candidate < 0 || spec.Tolerance < 0 {
		return nil, fmt.Errorf("%w: versions and tolerance must not be negative", ErrInvalid)
	}
	var avail []int64
	if c.versions != nil {
		var err error
		if avail, err = c.versions(ctx, name); err != nil {
			return nil, err
		}
	}
	s := Spec{Model: name, Stable: spec.Stable, Candidate: spec.Candidate, Mode: ModeReplay, Sample: 1,
		Threshold: spec.Threshold, Tolerance: spec.Tolerance, Output: spec.Output}
	if s.Stable == 0 {
		s.Stable = c.Serving(name)
		if s.Stable == 0 && len(avail) > 0 {
			s.Stable = avail[0]
		}
	}
	if s.Candidate == 0 {
		for _, v := range avail {
			if v != s.Stable {
				s.Candidate = v
				break
			}
		}
	}
	if err := checkPair(name, s.Stable, s.Candidate, avail); err != nil {
		return nil, err
	}
	if s.Threshold == 0 {
		s.Threshold = 0.5
	}
	if s.Tolerance == 0 {
		s.Tolerance = 1e-6
	}
	now := c.cfg.Now()
	return &Rollout{ID: fmt.Sprintf("%s-replay-%d", d.Name, now.UnixMilli()), Spec: s, State: StateReplayed,
		StartedAt: now, StepStarted: now, StepIndex: -1}, nil
}

// stacks reports whether req can join a batch that starts with first and
// has rows rows: both batchable, same signature, same dimensions after the
// batch dimension.
func stacks(first, req *pipeline.Request, rows int64) bool {
	if !first.Batchable || !req.Batchable || first.Signature != req.Signature || rows+req.Rows > replayBatchRows {
		return false
	}
	for name, t := range first.Inputs {
		u := req.Inputs[name]
		if u == nil || u.DType != t.DType || !slices.Equal(u.Shape[1:], t.Shape[1:]) {
			return false
		}
	}
	return true
}

// scoreReplay calls both versions with a batch and returns its comparison
// records.
func (c *Controller) scoreReplay(ctx context.Context, r *Rollout, batch []pendingReq) [][]byte {
	inputs := concatInputs(batch)
	call := func(v int64) (*model.Result, float64, error) {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		defer cancel()
		start := time.Now()
		res, err := c.pred.Predict(cctx, model.Spec{Name: r.Model, Version: v, Signature: batch[0].req.Signature}, inputs)
		return res, float64(time.Since(start)) / 1e6, err
	}
	sRes, sLat, sErr := call(r.Stable)
	cRes, cLat, cErr := call(r.Candidate)
	var outs map[string]*tensor.Tensor
	switch {
	case sErr == nil && sRes != nil:
		outs = sRes.Outputs
	case cErr == nil && cRes != nil:
		outs = cRes.Outputs
	}
	name := outputName(r.Output, outs)
	batched := batch[0].req.Batchable
	values := func(res *model.Result, err error, row, rows int64) ([]float64, string) {
		if err != nil {
			return nil, err.Error()
		}
		if res == nil {
			return nil, "no result"
		}
		v := rowValues(res.Outputs[name], batched, row, rows)
		if v == nil {
			return nil, fmt.Sprintf("output %q missing or not numeric", name)
		}
		return v, ""
	}
	now := c.cfg.Now().UnixMilli()
	recs := make([][]byte, 0, len(batch))
	off := int64(0)
	for _, p := range batch {
		cmp := Comparison{At: now, RequestID: p.req.ID, Key: string(p.rec.Key), Topic: p.rec.SourceTopic,
			Partition: p.rec.SourcePartition, Offset: p.rec.SourceOffset, AnsweredBy: ModeReplay, StableMs: sLat, CandMs: cLat}
		cmp.Stable, cmp.StableErr = values(sRes, sErr, off, p.req.Rows)
		cmp.Candidate, cmp.CandErr = values(cRes, cErr, off, p.req.Rows)
		off += p.req.Rows
		b, _ := json.Marshal(cmp)
		recs = append(recs, b)
	}
	return recs
}

// concatInputs stacks the batch's tensors along dim 0 (stacks checked
// they can be).
func concatInputs(batch []pendingReq) map[string]*tensor.Tensor {
	if len(batch) == 1 {
		return batch[0].req.Inputs
	}
	out := make(map[string]*tensor.Tensor, len(batch[0].req.Inputs))
	for name, first := range batch[0].req.Inputs {
		v := reflect.MakeSlice(reflect.TypeOf(first.Data), 0, 0)
		var rows int64
		for _, p := range batch {
			t := p.req.Inputs[name]
			v = reflect.AppendSlice(v, reflect.ValueOf(t.Data))
			rows += t.Shape[0]
		}
		out[name] = &tensor.Tensor{DType: first.DType, Shape: append([]int64{rows}, first.Shape[1:]...), Data: v.Interface()}
	}
	return out
}
