// Package feed keeps the pipeline's recent predictions for the dashboard: the last ones
// with their scores, and per model how many scored at or above the model's anomaly
// threshold, in total and per interval for a small chart. The demo model is an anomaly
// detector; this is where its operator sees the anomalies.
//
// A Feed is a pipeline.Observer. The thresholds are model settings kept in the store
// (setting "model.thresholds"), so they survive restarts; changing one starts its model's
// counts afresh, since counts at two thresholds do not add up.
package feed

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/store"
)

// ThresholdsSetting is the store setting holding the thresholds, {"model": threshold}.
const ThresholdsSetting = "model.thresholds"

// DefaultThreshold is a model's threshold until one is set: the demo model's score is an
// anomaly probability.
const DefaultThreshold = 0.5

const (
	recentLen  = 100              // predictions kept, all models together
	bucketLen  = 10 * time.Second // one bar of the chart
	bucketsLen = 60               // ten minutes of bars
	maxValues  = 4                // values kept of an output that is not a single score
)

// Prediction is one request's answer.
type Prediction struct {
	Time      time.Time `json:"time"`
	Model     string    `json:"model"`
	Version   int64     `json:"version"`
	RequestID string    `json:"request_id,omitempty"`
	Key       string    `json:"key,omitempty"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	// Score is the output's value when it is a single one per request (an anomaly
	// score); Values are the first few otherwise, and Anomaly is false.
	Score   *float64  `json:"score,omitempty"`
	Values  []float64 `json:"values,omitempty"`
	Anomaly bool      `json:"anomaly"`
}

// Bucket counts one interval's scored predictions of a model.
type Bucket struct {
	Start     time.Time `json:"t"`
	Normal    int64     `json:"normal"`
	Anomalous int64     `json:"anomalous"`
}

// ModelStats is one model's counts since its threshold was set (or the appliance started).
type ModelStats struct {
	Model     string    `json:"model"`
	Threshold float64   `json:"threshold"`
	Since     time.Time `json:"since"`
	Scored    int64     `json:"scored"`    // predictions with a single score
	Anomalies int64     `json:"anomalies"` // of which at or above the threshold
	Other     int64     `json:"other"`     // predictions with several values (not scored)
	Buckets   []Bucket  `json:"buckets"`   // oldest first, the last ten minutes
}

// View is what the dashboard shows.
type View struct {
	Recent        []Prediction `json:"recent"` // newest first
	Models        []ModelStats `json:"models"`
	BucketSeconds int          `json:"bucket_seconds"`
}

type modelState struct {
	stats   ModelStats
	buckets []Bucket // ring by bucket start
}

// Feed collects predictions. Safe for concurrent use.
type Feed struct {
	st  *store.Store
	now func() time.Time

	mu         sync.Mutex
	thresholds map[string]float64
	recent     []Prediction // ring
	next       int
	models     map[string]*modelState
}

// New returns a feed whose thresholds are kept in st.
func New(st *store.Store) (*Feed, error) {
	f := &Feed{st: st, now: time.Now, thresholds: map[string]float64{}, models: map[string]*modelState{}}
	raw, err := st.GetSetting(ThresholdsSetting)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("feed: reading %s: %w", ThresholdsSetting, err)
	default:
		if err := json.Unmarshal(raw, &f.thresholds); err != nil {
			return nil, fmt.Errorf("feed: setting %s in the store: %w", ThresholdsSetting, err)
		}
	}
	return f, nil
}

// Threshold returns model's threshold.
func (f *Feed) Threshold(model string) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.thresholdLocked(model)
}

func (f *Feed) thresholdLocked(model string) float64 {
	if v, ok := f.thresholds[model]; ok {
		return v
	}
	return DefaultThreshold
}

// SetThreshold makes v model's threshold, kept in the store, and starts its counts afresh.
func (f *Feed) SetThreshold(model string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("threshold %v: want a finite number", v)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next := maps.Clone(f.thresholds)
	next[model] = v
	raw, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if err := f.st.PutSetting(ThresholdsSetting, raw); err != nil {
		return fmt.Errorf("storing the threshold: %w", err)
	}
	f.thresholds = next
	f.models[model] = &modelState{stats: ModelStats{Model: model, Threshold: v, Since: f.now().UTC()}}
	return nil
}

// Observe takes a predicted batch (pipeline.Observer). Failed batches are not predictions:
// they are in the DLQ.
func (f *Feed) Observe(o *pipeline.Observation) {
	if o.Err != nil || len(o.Outputs) == 0 {
		return
	}
	out := o.Outputs[outputName(o.Outputs)]
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	th := f.thresholdLocked(o.Spec.Name)
	m := f.model(o.Spec.Name, th, now)
	b := m.bucket(now)
	for _, q := range o.Requests {
		p := Prediction{Time: now, Model: o.Spec.Name, Version: o.Version, RequestID: requestID(q.ID), Key: string(q.Key),
			Topic: q.Topic, Partition: q.Partition, Offset: q.Offset}
		vals := rowValues(out, o.Batched, q.Row, q.Rows)
		if len(vals) == 1 {
			s := vals[0]
			p.Score = &s
			p.Anomaly = s >= th
			m.stats.Scored++
			if p.Anomaly {
				m.stats.Anomalies++
				b.Anomalous++
			} else {
				b.Normal++
			}
		} else {
			p.Values = slices.Clone(vals[:min(len(vals), maxValues)])
			m.stats.Other++
		}
		if len(f.recent) < recentLen {
			f.recent = append(f.recent, p)
		} else {
			f.recent[f.next] = p
		}
		f.next = (f.next + 1) % recentLen
	}
}

func (f *Feed) model(name string, th float64, now time.Time) *modelState {
	m := f.models[name]
	if m == nil {
		m = &modelState{stats: ModelStats{Model: name, Threshold: th, Since: now.UTC()}}
		f.models[name] = m
	}
	return m
}

// bucket returns the bucket of now, starting it (and dropping ones older than the chart).
func (m *modelState) bucket(now time.Time) *Bucket {
	start := now.Truncate(bucketLen).UTC()
	if n := len(m.buckets); n > 0 && m.buckets[n-1].Start.Equal(start) {
		return &m.buckets[n-1]
	}
	m.buckets = append(m.buckets, Bucket{Start: start})
	cut := start.Add(-bucketLen * (bucketsLen - 1))
	for len(m.buckets) > 0 && m.buckets[0].Start.Before(cut) {
		m.buckets = m.buckets[1:]
	}
	return &m.buckets[len(m.buckets)-1]
}

// View returns the recent predictions (of model, or all when ""), newest first, at most
// limit, and every model's counts.
func (f *Feed) View(model string, limit int) View {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := View{Recent: []Prediction{}, Models: []ModelStats{}, BucketSeconds: int(bucketLen / time.Second)}
	n := len(f.recent)
	for i := 1; i <= n && len(v.Recent) < limit; i++ {
		p := f.recent[((f.next-i)%n+n)%n]
		if model == "" || p.Model == model {
			v.Recent = append(v.Recent, p)
		}
	}
	now := f.now()
	cut := now.Truncate(bucketLen).Add(-bucketLen * (bucketsLen - 1))
	for _, name := range slices.Sorted(maps.Keys(f.models)) {
		m := f.models[name]
		s := m.stats
		s.Buckets = []Bucket{}
		for _, b := range m.buckets {
			if !b.Start.Before(cut) {
				s.Buckets = append(s.Buckets, b)
			}
		}
		v.Models = append(v.Models, s)
	}
	return v
}

// requestID shows a request_id: a JSON string unquoted, a number as is.
func requestID(raw string) string {
	if s, err := strconv.Unquote(raw); err == nil && len(raw) > 0 && raw[0] == '"' {
		return s
	}
	return raw
}

// outputName is the output whose values are shown: the only one, or the first by name.
func outputName(outs map[string]*tensor.Tensor) string {
	return slices.Sorted(maps.Keys(outs))[0]
}

// rowValues returns rows [row, row+rows) of t as float64s, nil for a type that is not a
// number.
func rowValues(t *tensor.Tensor, batched bool, row, rows int64) []float64 {
	if t == nil {
		return nil
	}
	n := int64(t.Len())
	lo, hi := int64(0), n
	if batched && len(t.Shape) > 0 && t.Shape[0] > 0 {
		per := n / t.Shape[0]
		lo, hi = row*per, (row+rows)*per
	}
	if lo < 0 || hi > n || lo >= hi {
		return nil
	}
	out := make([]float64, 0, hi-lo)
	switch d := t.Data.(type) {
	case []float32:
		for _, x := range d[lo:hi] {
			out = append(out, float64(x))
		}
	case []float64:
		out = append(out, d[lo:hi]...)
	case []int64:
		for _, x := range d[lo:hi] {
			out = append(out, float64(x))
		}
	case []int32:
		for _, x := range d[lo:hi] {
			out = append(out, float64(x))
		}
	default:
		return nil
	}
	return out
}
