package rollout

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/store"
)

// Dataset sources.
const (
	SourceRequests = "requests" // a window of the requests topic
	SourceDLQ      = "dlq"      // a selection of the dead-letter store
)

// CaptureSpec says what a dataset saves: a window of the requests topic
// (the newest Last requests, or those between Since and Until, or both),
// or a selection of the DLQ (IDs, or Class/Model/Since/Until), optionally
// only the requests of Model.
type CaptureSpec struct {
	Name   string `json:"name"`
	Source string `json:"source"` // SourceRequests (default) or SourceDLQ
	// Last keeps the newest Last requests (of Model) among the last Last
	// records of each partition of the requests topic, or the newest Last
	// of a DLQ selection. 0 with no window: 1,000.
	Last  int       `json:"last,omitempty"`
	Since time.Time `json:"since,omitzero"` // inclusive
	Until time.Time `json:"until,omitzero"` // exclusive; zero: now
	Model string    `json:"model,omitempty"`
	// DLQ only: the records by id, or those of an error class.
	IDs   []string `json:"ids,omitempty"`
	Class string   `json:"class,omitempty"`
}

// DefaultCaptureLast is what Last means when a capture names no window.
const DefaultCaptureLast = 1000

var datasetName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// Requests tells captures and replays where live requests are and how the
// pipeline reads them (the appliance sets it with the pipeline).
type Requests struct {
	Topic        string
	DefaultModel string // pipeline.default_model
	DefaultInput string // pipeline.default_input
	// NewClient makes a Kafka client of the appliance's broker with extra
	// options (a capture consumes partitions directly, without a group).
	NewClient func(opts ...kgo.Opt) (*kgo.Client, error)
}

// SetRequests installs where captures read requests (before the first
// capture or replay).
func (c *Controller) SetRequests(r Requests) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = r
}

func (c *Controller) requestsSource() Requests {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests
}

func (s *CaptureSpec) normalize() error {
	if !datasetName.MatchString(s.Name) {
		return fmt.Errorf("name %q: letters, digits, '.', '_', '-', at most 128, not starting with . or -", s.Name)
	}
	if s.Source == "" {
		s.Source = SourceRequests
	}
	if s.Source != SourceRequests && s.Source != SourceDLQ {
		return fmt.Errorf("source %q is neither %s nor %s", s.Source, SourceRequests, SourceDLQ)
	}
	if s.Last < 0 {
		return fmt.Errorf("last: %d is negative", s.Last)
	}
	if !s.Until.IsZero() && !s.Since.IsZero() && !s.Until.After(s.Since) {
		return errors.New("until: must be after since")
	}
	if s.Source == SourceRequests && (len(s.IDs) > 0 || s.Class != "") {
		return errors.New("ids and class select dead letters: use source dlq")
	}
	if len(s.IDs) > 0 && (s.Class != "" || s.Model != "" || !s.Since.IsZero() || !s.Until.IsZero()) {
		return errors.New("ids: give either ids or a filter (class, model, since, until), not both")
	}
	if s.Source == SourceRequests && s.Last == 0 && s.Since.IsZero() && s.Until.IsZero() {
		s.Last = DefaultCaptureLast
	}
	return nil
}

// selection describes a spec for the dataset's listing.
func (s *CaptureSpec) selection() string {
	var parts []string
	if len(s.IDs) > 0 {
		parts = append(parts, fmt.Sprintf("%d records by id", len(s.IDs)))
	}
	if s.Class != "" {
		parts = append(parts, "class "+s.Class)
	}
	if s.Last > 0 {
		parts = append(parts, fmt.Sprintf("last %d", s.Last))
	}
	if !s.Since.IsZero() {
		parts = append(parts, "since "+s.Since.UTC().Format(time.RFC3339))
	}
	if !s.Until.IsZero() {
		parts = append(parts, "until "+s.Until.UTC().Format(time.RFC3339))
	}
	if s.Model != "" {
		parts = append(parts, "model "+s.Model)
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, ", ")
}

// Capture saves a dataset (audited as rollout.capture by the caller, who
// knows who asked).
func (c *Controller) Capture(ctx context.Context, spec CaptureSpec) (*store.Dataset, error) {
	if err := spec.normalize(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if !c.claim(spec.Name) {
		return nil, fmt.Errorf("%w: dataset %s is being captured or replayed", ErrConflict, spec.Name)
	}
	defer c.release(spec.Name)
	if _, err := c.st.GetDataset(spec.Name); err == nil {
		return nil, fmt.Errorf("%w: dataset %s exists; delete it first or choose another name", ErrConflict, spec.Name)
	}
	limit := c.st.DatasetLimit()
	keep := limit
	if spec.Last > 0 {
		keep = min(spec.Last, limit)
	}
	newest := &newestRecords{max: keep, maxBytes: store.MaxDatasetBytes}
	var err error
	if spec.Source == SourceDLQ {
		err = c.readDLQ(spec, newest)
	} else {
		err = c.readRequests(ctx, spec, newest)
	}
	if err != nil {
		return nil, err
	}
	recs := newest.sorted()
	d := &store.Dataset{Name: spec.Name, Source: spec.Source, Selection: spec.selection(), Model: spec.Model,
		Truncated: newest.dropped && spec.Last == 0}
	if err := c.st.SaveDataset(d, recs); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, kinded{ErrConflict, err}
		}
		return nil, err
	}
	c.log.Info("dataset captured", "name", d.Name, "source", d.Source, "selection", d.Selection, "records", d.Records)
	return d, nil
}

// claim marks a dataset name busy (capture, replay, delete).
func (c *Controller) claim(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy[name] {
		return false
	}
	c.busy[name] = true
	return true
}

func (c *Controller) release(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.busy, name)
}

// readDLQ selects dead letters.
func (c *Controller) readDLQ(spec CaptureSpec, out *newestRecords) error {
	if len(spec.IDs) > 0 {
		for _, id := range spec.IDs {
			r, err := c.st.Get(id)
			if err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("%w: no dead letter %s", ErrNotFound, id)
				}
				return err
			}
			out.add(r)
		}
		return nil
	}
	f := store.Filter{Class: spec.Class, Model: spec.Model, Since: spec.Since, Until: spec.Until, Limit: 1000}
	for {
		recs, next, err := c.st.List(f)
		if err != nil {
			if errors.Is(err, store.ErrInvalid) {
				return kinded{ErrInvalid, err}
			}
			return err
		}
		for _, r := range recs {
			out.add(r)
		}
		// List goes newest first: once enough are kept, older ones would
		// only be dropped again.
		if next == "" || (out.max > 0 && out.h.Len() >= out.max) {
			return nil
		}
		f.Cursor = next
	}
}

// readRequests reads the requests topic's window: per partition from the
// first offset at Since (or Last before the end) to the offset at Until (or
// the end when the capture started).
func (c *Controller) readRequests(ctx context.Context, spec CaptureSpec, out *newestRecords) error {
	src := c.requestsSource()
	if src.NewClient == nil || src.Topic == "" {
		return fmt.Errorf("%w: the requests topic is not known yet (the pipeline has not started)", ErrConflict)
	}
	cl, err := src.NewClient()
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	lctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	starts, ends, err := window(lctx, adm, src.Topic, spec)
	cancel()
	cl.Close()
	if err != nil {
		return fmt.Errorf("capture: offsets of %s: %w", src.Topic, err)
	}
	assign := map[int32]kgo.Offset{}
	left := map[int32]int64{} // partition -> end offset still to reach
	for p, end := range ends {
		from := starts[p]
		if spec.Last > 0 && end-int64(spec.Last) > from {
			from = end - int64(spec.Last)
		}
		if from < end {
			assign[p] = kgo.NewOffset().At(from)
			left[p] = end
		}
	}
	if len(assign) == 0 {
		return nil
	}
	cl, err = src.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{src.Topic: assign}))
	if err != nil {
		return err
	}
	defer cl.Close()
	idle := 0
	for len(left) > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok {
				return
			}
			if r.Offset >= end {
				delete(left, r.Partition)
				return
			}
			n++
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
			if rec, ok := captured(r, spec.Model, src.DefaultModel); ok {
				out.add(rec)
			}
		})
		// Offsets below the end that hold no record a consumer sees
		// (transaction markers, records compacted away) are never
		// delivered: ten polls without a record end the capture.
		if n > 0 {
			idle = 0
		} else if idle++; idle >= 10 {
			break
		}
	}
	return nil
}

// window returns per partition the first offset of the window and its end
// (exclusive).
func window(ctx context.Context, adm *kadm.Client, topic string, spec CaptureSpec) (starts, ends map[int32]int64, err error) {
	list := func(l kadm.ListedOffsets, err error) (map[int32]int64, error) {
		if err != nil {
			return nil, err
		}
		if err := l.Error(); err != nil {
			return nil, err
		}
		out := map[int32]int64{}
		l.Each(func(o kadm.ListedOffset) {
			if o.Topic == topic && o.Partition >= 0 {
				out[o.Partition] = o.Offset
			}
		})
		return out, nil
	}
	if spec.Since.IsZero() {
		starts, err = list(adm.ListStartOffsets(ctx, topic))
	} else {
		starts, err = list(adm.ListOffsetsAfterMilli(ctx, spec.Since.UnixMilli(), topic))
	}
	if err != nil {
		return nil, nil, err
	}
	if spec.Until.IsZero() {
		ends, err = list(adm.ListEndOffsets(ctx, topic))
	} else {
		ends, err = list(adm.ListOffsetsAfterMilli(ctx, spec.Until.UnixMilli(), topic))
	}
	if err != nil {
		return nil, nil, err
	}
	if len(ends) == 0 {
		return nil, nil, fmt.Errorf("%w: topic %s has no partitions", ErrInvalid, topic)
	}
	return starts, ends, nil
}

// captured is a requests-topic record as a dataset keeps it; ok is false
// when it is not a request of model (model "" keeps every record, even one
// the pipeline cannot read: a replay counts those).
func captured(r *kgo.Record, model, defaultModel string) (*store.Record, bool) {
	var header string
	hs := make([]store.Header, 0, len(r.Headers))
	for _, h := range r.Headers {
		hs = append(hs, store.Header{Key: h.Key, Value: slices.Clone(h.Value)})
		if h.Key == pipeline.HeaderModel {
			header = string(h.Value)
		}
	}
	name := ""
	if req, err := pipeline.ParseRequest(r.Value, header, defaultModel); err == nil {
		name = req.Spec.Name
	}
	if model != "" && name != model {
		return nil, false
	}
	return &store.Record{Key: slices.Clone(r.Key), Value: slices.Clone(r.Value), Headers: hs, Model: name,
		SourceTopic: r.Topic, SourcePartition: r.Partition, SourceOffset: r.Offset, FailedAt: r.Timestamp}, true
}

// newestRecords keeps the newest max records (by time, then place), at
// most maxBytes of keys and values.
type newestRecords struct {
	max      int
	maxBytes int64
	bytes    int64
	dropped  bool
	h        recordHeap
}

func (n *newestRecords) add(r *store.Record) {
	heap.Push(&n.h, r)
	n.bytes += int64(len(r.Key) + len(r.Value))
	for n.h.Len() > 0 && ((n.max > 0 && n.h.Len() > n.max) || n.bytes > n.maxBytes) {
		old := heap.Pop(&n.h).(*store.Record)
		n.bytes -= int64(len(old.Key) + len(old.Value))
		n.dropped = true
	}
}

// sorted returns the kept records oldest first.
func (n *newestRecords) sorted() []*store.Record {
	out := slices.Clone(n.h)
	slices.SortFunc(out, func(a, b *store.Record) int {
		if older(a, b) {
			return -1
		}
		if older(b, a) {
			return 1
		}
		return 0
	})
	return out
}

func older(a, b *store.Record) bool {
	if !a.FailedAt.Equal(b.FailedAt) {
		return a.FailedAt.Before(b.FailedAt)
	}
	if a.SourcePartition != b.SourcePartition {
		return a.SourcePartition < b.SourcePartition
	}
	return a.SourceOffset < b.SourceOffset
}

// recordHeap is a min-heap on age: the oldest is dropped first.
type recordHeap []*store.Record

func (h recordHeap) Len() int           { return len(h) }
func (h recordHeap) Less(i, j int) bool { return older(h[i], h[j]) }
func (h recordHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *recordHeap) Push(x any)        { *h = append(*h, x.(*store.Record)) }
func (h *recordHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Datasets lists the saved datasets.
func (c *Controller) Datasets() ([]store.Dataset, error) { return c.st.Datasets() }

// DeleteDataset removes a dataset and the comparisons of its last replay.
func (c *Controller) DeleteDataset(name string) error {
	if !c.claim(name) {
		return fmt.Errorf("%w: dataset %s is being captured or replayed", ErrConflict, name)
	}
	defer c.release(name)
	if err := c.st.DeleteDataset(name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: no dataset %s", ErrNotFound, name)
		}
		return err
	}
	c.mu.Lock()
	last := c.replays[name]
	delete(c.replays, name)
	err := c.persistLocked()
	c.mu.Unlock()
	if last != nil {
		if derr := c.st.DeleteShadow(last.ID); derr != nil {
			c.log.Warn("deleting a replay's comparisons", "replay", last.ID, "err", derr)
		}
	}
	return err
}
