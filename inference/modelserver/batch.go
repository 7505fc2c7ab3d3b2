package modelserver

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
)

// batcher merges concurrent Predict calls on one model version along dim 0,
// as TF Serving's BasicBatchScheduler does: tasks join the newest batch while
// it has room and no thread has taken it; a batch becomes eligible when it is
// full or BatchTimeout after it opened; at most MaxEnqueuedBatches batches
// wait (else UNAVAILABLE); NumBatchThreads batches run at once.
type batcher struct {
	s   *servable
	cfg tfserving.BatchingConfig

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []*batch
	closed bool
	wg     sync.WaitGroup

	runs atomic.Int64 // model runs, for tests
}

type batch struct {
	tasks []*task
	rows  int64
	ready bool // eligible to run: full, timed out, or followed by a newer batch
	timer *time.Timer
}

type task struct {
	ctx     context.Context
	inputs  map[string]*tensor.Tensor
	outputs []string // nil = all
	rows    int64
	done    chan struct{}
	out     map[string]*tensor.Tensor
	err     error
}

func newBatcher(s *servable, cfg tfserving.BatchingConfig) *batcher {
	b := &batcher{s: s, cfg: cfg}
	b.cond = sync.NewCond(&b.mu)
	for range cfg.NumBatchThreads {
		b.wg.Add(1)
		go b.worker()
	}
	return b
}

// stop runs what is queued, stops the workers and waits for them. Calls
// that arrive later run unbatched, so a request racing with an unload still
// gets an answer.
func (b *batcher) stop() {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *batcher) submit(ctx context.Context, inputs map[string]*tensor.Tensor, outputs []string) (map[string]*tensor.Tensor, error) {
	rows := int64(-1)
	for name, t := range inputs {
		if len(t.Shape) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "batching: input %q is a scalar; batched inputs need a batch dimension", name)
		}
		if rows >= 0 && t.Shape[0] != rows {
			return nil, status.Errorf(codes.InvalidArgument,
				"batching: input tensors must have equal 0th-dimension size (input %q has %d, another has %d)", name, t.Shape[0], rows)
		}
		rows = t.Shape[0]
	}
	if rows > int64(b.cfg.MaxBatchSize) {
		return nil, status.Errorf(codes.InvalidArgument, "Task size %d is larger than maximum input batch size %d", rows, b.cfg.MaxBatchSize)
	}
	t := &task{ctx: ctx, inputs: inputs, outputs: outputs, rows: rows, done: make(chan struct{})}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.s.runDirect(inputs, outputs)
	}
	var cur *batch
	if n := len(b.queue); n > 0 && b.queue[n-1].rows+rows <= int64(b.cfg.MaxBatchSize) {
		cur = b.queue[n-1]
	} else {
		if int64(len(b.queue)) >= b.cfg.MaxEnqueuedBatches {
			b.mu.Unlock()
			return nil, status.Error(codes.Unavailable, "The batch scheduling queue to which this task was submitted is full")
		}
		if n > 0 {
			b.queue[n-1].ready = true // closed by the task that did not fit
		}
		cur = &batch{}
		if b.cfg.BatchTimeout <= 0 {
			cur.ready = true
		} else {
			nb := cur
			cur.timer = time.AfterFunc(b.cfg.BatchTimeout, func() {
				b.mu.Lock()
				nb.ready = true
				b.cond.Broadcast()
				b.mu.Unlock()
			})
		}
		b.queue = append(b.queue, cur)
	}
	cur.tasks = append(cur.tasks, t)
	cur.rows += rows
	if cur.rows >= int64(b.cfg.MaxBatchSize) {
		cur.ready = true
	}
	if cur.ready {
		b.cond.Signal()
	}
	b.mu.Unlock()

	select {
	case <-t.done:
		return t.out, t.err
	case <-ctx.Done():
		// The worker skips or discards it; the caller has gone.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (b *batcher) worker() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		for !(len(b.queue) > 0 && (b.queue[0].ready || b.closed)) {
			if b.closed && len(b.queue) == 0 {
				b.mu.Unlock()
				return
			}
			b.cond.Wait()
		}
		bt := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		b.mu.Unlock()
		if bt.timer != nil {
			bt.timer.Stop()
		}
		b.process(bt)
	}
}

func (b *batcher) process(bt *batch) {
	live := bt.tasks[:0]
	for _, t := range bt.tasks {
		if err := t.ctx.Err(); err != nil {
			t.err = status.FromContextError(err).Err()
			close(t.done)
			continue
		}
		live = append(live, t)
	}
	// Tasks merge only if their inputs agree on names, dtypes and trailing
	// dims; normally that is all of them, but a stray request must not fail
	// its neighbours.
	var groups [][]*task
	for _, t := range live {
		placed := false
		for i, g := range groups {
			if mergeable(g[0], t) {
				groups[i] = append(g, t)
				placed = true
				break
			}
		}
		if !placed {
			groups = append(groups, []*task{t})
		}
	}
	for _, g := range groups {
		b.runGroup(g)
	}
}

func mergeable(a, b *task) bool {
	if len(a.inputs) != len(b.inputs) {
		return false
	}
	for name, x := range a.inputs {
		y, ok := b.inputs[name]
		if !ok || x.DType != y.DType || len(x.Shape) != len(y.Shape) || !slices.Equal(x.Shape[1:], y.Shape[1:]) {
			return false
		}
	}
	return true
}

// paddedSize is the smallest allowed batch size that holds rows.
func (b *batcher) paddedSize(rows int64) int64 {
	if rows == 0 {
		return 0
	}
	for _, s := range b.cfg.AllowedBatchSizes {
		if s >= rows {
			return s
		}
	}
	return rows
}

func (b *batcher) runGroup(g []*task) {
	b.runs.Add(1)
	var total int64
	for _, t := range g {
		total += t.rows
	}
	padded := b.paddedSize(total)
	if len(g) == 1 && padded == total {
		t := g[0]
		t.out, t.err = b.s.runDirect(t.inputs, t.outputs)
		close(t.done)
		return
	}
	fail := func(err error) {
		for _, t := range g {
			t.err = err
			close(t.done)
		}
	}
	merged := make(map[string]*tensor.Tensor, len(g[0].inputs))
	for name := range g[0].inputs {
		parts := make([]*tensor.Tensor, len(g))
		for i, t := range g {
			parts[i] = t.inputs[name]
		}
		m, err := concatRows(parts, padded)
		if err != nil {
			fail(status.Errorf(codes.InvalidArgument, "batching input %q: %v", name, err))
			return
		}
		merged[name] = m
	}
	var want []string // nil = all outputs
	for _, t := range g {
		if t.outputs == nil {
			want = nil
			break
		}
		for _, o := range t.outputs {
			if !slices.Contains(want, o) {
				want = append(want, o)
			}
		}
	}
	out, err := b.s.runDirect(merged, want)
	if err != nil {
		fail(err)
		return
	}
	for name, o := range out {
		if len(o.Shape) == 0 || o.Shape[0] != padded {
			fail(status.Errorf(codes.Internal, "batching: output %q has shape %s, a batch of %d rows needs dim 0 = %d",
				name, tensor.ShapeString(o.Shape), padded, padded))
			return
		}
	}
	var off int64
	for _, t := range g {
		names := t.outputs
		if names == nil {
			names = b.s.outNames
		}
		res := make(map[string]*tensor.Tensor, len(names))
		for _, name := range names {
			res[name] = sliceRows(out[name], off, off+t.rows)
		}
		off += t.rows
		t.out = res
		close(t.done)
	}
}

// concatRows stacks tensors along dim 0 and pads to rows by repeating the
// first row, as TF's batching does.
func concatRows(parts []*tensor.Tensor, rows int64) (*tensor.Tensor, error) {
	first := parts[0]
	shape := slices.Clone(first.Shape)
	shape[0] = rows
	n, err := tensor.NumElements(shape)
	if err != nil {
		return nil, err
	}
	out := &tensor.Tensor{DType: first.DType, Shape: shape}
	switch first.Data.(type) {
	case []float32:
		out.Data = concatData[float32](parts, int(n))
	case []float64:
		out.Data = concatData[float64](parts, int(n))
	case []int32:
		out.Data = concatData[int32](parts, int(n))
	case []int64:
		out.Data = concatData[int64](parts, int(n))
	case []bool:
		out.Data = concatData[bool](parts, int(n))
	case [][]byte:
		out.Data = concatData[[]byte](parts, int(n))
	case []uint8:
		out.Data = concatData[uint8](parts, int(n))
	case []int16:
		out.Data = concatData[int16](parts, int(n))
	case []int8:
		out.Data = concatData[int8](parts, int(n))
	default:
		return nil, fmt.Errorf("unsupported data %T", first.Data)
	}
	return out, nil
}

func concatData[T any](parts []*tensor.Tensor, n int) []T {
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p.Data.([]T)...)
	}
	rowLen := 1
	for _, d := range parts[0].Shape[1:] {
		rowLen *= int(d)
	}
	if len(out) < n && rowLen > 0 && len(out) >= rowLen {
		row := out[:rowLen]
		for len(out) < n {
			out = append(out, row...)
		}
	}
	return out[:n]
}

// sliceRows returns rows [from, to) of t, sharing t's memory; the capacity is
// cut so an append by one caller cannot write into another's rows.
func sliceRows(t *tensor.Tensor, from, to int64) *tensor.Tensor {
	shape := slices.Clone(t.Shape)
	shape[0] = to - from
	rowLen := int64(1)
	for _, d := range t.Shape[1:] {
		rowLen *= d
	}
	a, z := from*rowLen, to*rowLen
	out := &tensor.Tensor{DType: t.DType, Shape: shape}
	switch d := t.Data.(type) {
	case []float32:
		out.Data = d[a:z:z]
	case []float64:
		out.Data = d[a:z:z]
	case []int32:
		out.Data = d[a:z:z]
	case []int64:
		out.Data = d[a:z:z]
	case []bool:
		out.Data = d[a:z:z]
	case [][]byte:
		out.Data = d[a:z:z]
	case []uint8:
		out.Data = d[a:z:z]
	case []int16:
		out.Data = d[a:z:z]
	case []int8:
		out.Data = d[a:z:z]
	}
	return out
}
