package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
)

// job is a sampled share of one observed batch, waiting for the shadow.
type job struct {
	r        *active
	byStable bool // the stable version answered it; the shadow scores the candidate
	obs      *pipeline.Observation
	reqs     []pipeline.ObservedRequest
	at       time.Time
}

// Comparison is one request scored by both versions (one store record).
type Comparison struct {
	At         int64     `json:"t"` // unix ms
	RequestID  string    `json:"id,omitempty"`
	Key        string    `json:"k,omitempty"`
	Topic      string    `json:"tp"`
	Partition  int32     `json:"p"`
	Offset     int64     `json:"o"`
	AnsweredBy string    `json:"by"` // "stable" or "candidate": who produced the result
	Stable     []float64 `json:"s,omitempty"`
	Candidate  []float64 `json:"c,omitempty"`
	StableMs   float64   `json:"sl"`
	CandMs     float64   `json:"cl"`
	StableErr  string    `json:"se,omitempty"`
	CandErr    string    `json:"ce,omitempty"`
	// Diff is the largest element-wise |candidate - stable| (reports only).
	Diff float64 `json:"diff,omitempty"`
}

// Observe implements pipeline.Observer: it counts the answer and queues a
// sampled copy for the shadow, dropping it when the queue is full.
func (c *Controller) Observe(o *pipeline.Observation) {
	e := c.table.Load().models[o.Spec.Name]
	if e == nil || e.r == nil {
		return
	}
	if o.Busy {
		if until := time.Now().Add(time.Second).UnixNano(); until > c.busyUntil.Load() {
			c.busyUntil.Store(until)
		}
	}
	r := e.r
	v := o.Spec.Version
	if v == 0 {
		v = o.Version
	}
	var byStable bool
	switch v {
	case r.stable:
		byStable = true
	case r.candidate:
	default:
		return // a request that named another version
	}
	n := int64(len(o.Requests))
	lv := r.live
	lv.mu.Lock()
	if byStable {
		lv.stableReqs += n
		if o.Err != nil {
			lv.stableErrs += n
		}
	} else {
		lv.candReqs += n
		if o.Err != nil {
			lv.candErrs += n
		} else {
			lv.candLatency(float64(o.Latency) / 1e6)
		}
	}
	lv.mu.Unlock()
	if o.Err != nil {
		return
	}
	var reqs []pipeline.ObservedRequest
	for _, q := range o.Requests {
		if r.sample >= 1 || bucket('m', sampleKey(q)) < r.sample*100 {
			reqs = append(reqs, q)
		}
	}
	if len(reqs) == 0 {
		return
	}
	select {
	case c.jobs <- &job{r: r, byStable: byStable, obs: o, reqs: reqs, at: c.cfg.Now()}:
		c.m.queue.Set(float64(len(c.jobs)))
	default:
		c.dropped.Add(int64(len(reqs)))
		c.m.dropped.WithLabelValues(r.model).Add(float64(len(reqs)))
	}
}

func sampleKey(q pipeline.ObservedRequest) []byte {
	if len(q.Key) > 0 {
		return q.Key
	}
	return []byte(q.ID)
}

// shadow scores a job on the other version and stores the comparisons.
func (c *Controller) shadow(ctx context.Context, j *job) {
	o, r := j.obs, j.r
	other := r.candidate
	if !j.byStable {
		other = r.stable
	}
	inputs, whole := gather(o, j.reqs)
	spec := model.Spec{Name: r.model, Version: other, Signature: o.Spec.Signature}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	start := time.Now()
	res, err := c.pred.Predict(cctx, spec, inputs)
	lat := float64(time.Since(start)) / 1e6
	cancel()
	if ctx.Err() != nil {
		return
	}
	if status.Code(err) == codes.Unavailable {
		// The model server is down (a sidecar restarting, no endpoint of a
		// fleet answering), which says nothing about either version: the
		// sample is skipped as one the queue had no room for, and counts
		// against neither version's errors.
		c.dropped.Add(int64(len(j.reqs)))
		c.m.dropped.WithLabelValues(r.model).Add(float64(len(j.reqs)))
		return
	}
	name := outputName(r.output, o.Outputs)
	now := c.cfg.Now().UnixMilli()
	recs := make([][]byte, 0, len(j.reqs))
	lv := r.live
	var compared, disagree int64
	off := int64(0)
	for _, q := range j.reqs {
		cmp := Comparison{At: now, RequestID: q.ID, Key: string(q.Key), Topic: q.Topic, Partition: q.Partition, Offset: q.Offset,
			AnsweredBy: "candidate"}
		mine := rowValues(o.Outputs[name], o.Batched, q.Row, q.Rows)
		at := off
		if whole {
			at = q.Row // the shadow scored the whole batch
		}
		off += q.Rows
		var theirs []float64
		if err == nil && res != nil {
			theirs = rowValues(res.Outputs[name], o.Batched, at, q.Rows)
		}
		var otherErr string
		if err != nil {
			otherErr = err.Error()
		} else if theirs == nil {
			otherErr = fmt.Sprintf("output %q missing or not numeric", name)
		}
		if j.byStable {
			cmp.AnsweredBy = "stable"
			cmp.Stable, cmp.Candidate, cmp.StableMs, cmp.CandMs, cmp.CandErr = mine, theirs, float64(o.Latency)/1e6, lat, otherErr
		} else {
			cmp.Stable, cmp.Candidate, cmp.StableMs, cmp.CandMs, cmp.StableErr = theirs, mine, lat, float64(o.Latency)/1e6, otherErr
		}
		if otherErr == "" {
			compared++
			if !agree(cmp.Stable, cmp.Candidate, r.tolerance) {
				disagree++
			}
		}
		b, _ := json.Marshal(cmp)
		recs = append(recs, b)
	}
	lv.mu.Lock()
	n := int64(len(j.reqs))
	if j.byStable {
		lv.shadowCand += n
		if err != nil {
			lv.shadowCandErrs += n
		} else {
			lv.candLatency(lat)
		}
	} else {
		lv.shadowStable += n
		if err != nil {
			lv.shadowStableErrs += n
		}
	}
	lv.compared += compared
	lv.disagree += disagree
	lv.mu.Unlock()
	c.m.compared.WithLabelValues(r.model).Add(float64(compared))
	if err := c.st.PutShadow(r.id, recs, c.cfg.Retention); err != nil {
		c.log.Warn("storing shadow comparisons", "rollout", r.id, "err", err)
	}
}

// agree: the same class for a row of several scores (argmax), else scores
// no further apart than tol.
func agree(a, b []float64, tol float64) bool {
	if len(a) == 0 || len(b) == 0 || len(a) != len(b) {
		return false
	}
	if len(a) > 1 {
		return argmax(a) == argmax(b)
	}
	return math.Abs(a[0]-b[0]) <= tol
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func outputName(want string, outs map[string]*tensor.Tensor) string {
	if want != "" {
		return want
	}
	names := slices.Sorted(maps.Keys(outs))
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// rowValues reads rows [row, row+rows) of t as float64s.
func rowValues(t *tensor.Tensor, batched bool, row, rows int64) []float64 {
	if t == nil {
		return nil
	}
	all := floats(t)
	if all == nil {
		return nil
	}
	if !batched || len(t.Shape) == 0 || t.Shape[0] == 0 {
		return all
	}
	per := int64(len(all)) / t.Shape[0]
	lo, hi := row*per, (row+rows)*per
	if lo < 0 || hi > int64(len(all)) {
		return nil
	}
	return all[lo:hi]
}

func floats(t *tensor.Tensor) []float64 {
	switch d := t.Data.(type) {
	case []float32:
		return widen(d)
	case []float64:
		return slices.Clone(d)
	case []int64:
		return widen(d)
	case []int32:
		return widen(d)
	}
	return nil
}

func widen[T float32 | int64 | int32](d []T) []float64 {
	out := make([]float64, len(d))
	for i, x := range d {
		out[i] = float64(x)
	}
	return out
}

// gather copies the rows of the sampled requests out of the observed batch
// into a batch of their own; whole reports that it could not (or need not)
// and the whole batch is to be scored.
func gather(o *pipeline.Observation, reqs []pipeline.ObservedRequest) (inputs map[string]*tensor.Tensor, whole bool) {
	if !o.Batched || len(reqs) == len(o.Requests) {
		return o.Inputs, true
	}
	out := make(map[string]*tensor.Tensor, len(o.Inputs))
	var total int64
	for _, q := range reqs {
		total += q.Rows
	}
	for name, t := range o.Inputs {
		if len(t.Shape) == 0 || t.Shape[0] == 0 {
			return o.Inputs, true
		}
		per := int64(t.Len()) / t.Shape[0]
		shape := append([]int64{total}, t.Shape[1:]...)
		data, ok := pick(t.Data, reqs, per, total*per)
		if !ok {
			return o.Inputs, true
		}
		out[name] = &tensor.Tensor{DType: t.DType, Shape: shape, Data: data}
	}
	return out, false
}

// pick copies the rows of reqs out of data, a tensor's slice of any element
// type (per elements a row, n in all).
func pick(data any, reqs []pipeline.ObservedRequest, per, n int64) (any, bool) {
	v := reflect.ValueOf(data)
	if v.Kind() != reflect.Slice {
		return nil, false
	}
	out := reflect.MakeSlice(v.Type(), 0, int(n))
	for _, q := range reqs {
		lo, hi := int(q.Row*per), int((q.Row+q.Rows)*per)
		if lo < 0 || hi > v.Len() {
			return nil, false
		}
		out = reflect.AppendSlice(out, v.Slice(lo, hi))
	}
	return out.Interface(), true
}
