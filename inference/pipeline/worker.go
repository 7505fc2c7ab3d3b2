package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/recordcodec"
	"github.com/infergate/infergate/inference/tensor"
)

// workLoop predicts batches until ctx ends.
func (p *Pipeline) workLoop(ctx context.Context) {
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-p.work:
			p.inflight.Add(1)
			p.m.inflight.Inc()
			buf = p.runBatch(ctx, b, buf)
			p.m.inflight.Dec()
			p.inflight.Add(-1)
		}
	}
}

// runBatch predicts b and finishes each of its requests with a result or a
// DLQ record. If ctx ends first (hard stop), the requests stay unfinished and
// so uncommitted.
func (p *Pipeline) runBatch(ctx context.Context, b *batch, buf []byte) []byte {
	finished := false
	defer func() {
		if v := recover(); v != nil {
			p.logger.Error("panic predicting a batch", "model", b.spec.Name, "requests", len(b.reqs),
				"panic", v, "stack", string(debug.Stack()))
			if !finished {
				err := withClass(ClassInternal, fmt.Errorf("panic predicting the batch: %v", v))
				for _, r := range b.reqs {
					p.dlqOutput(r, ClassInternal, err, time.Now())
				}
				p.tr.complete(b.reqs...)
			}
		}
	}()
	inputs := batchInputs(b)
	p.m.batchSize.Observe(float64(b.rows))
	var res *model.Result
	var seen uint64 // successful calls when the last call began
	start := time.Now()
	err := p.retry(ctx, b.spec, true, func(ctx context.Context) error {
		for _, r := range b.reqs {
			r.attempts++
		}
		seen = p.successes.Load()
		var err error
		res, err = p.pred.Predict(ctx, b.spec, inputs)
		return err
	})
	if ctx.Err() != nil {
		return buf
	}
	if err != nil && slow(classOf(err)) {
		if len(b.reqs) > 1 {
			// A timeout or exhaustion may be one request's doing: try each
			// alone, so a stuck request does not take its batch-mates down.
			// One by one rather than by bisection: every failing call costs
			// a whole predict_timeout, and one by one makes the fewest.
			if p.successes.Load() == seen {
				p.slowFailed(b.spec, err)
			}
			p.noteError(err)
			for _, r := range b.reqs {
				buf = p.runBatch(ctx, &batch{key: b.key, spec: b.spec, reqs: []*request{r}, rows: r.rows}, buf)
			}
			finished = true
			return buf
		}
		if err = p.spendBudget(ctx, b, err, seen); err == nil {
			finished = true // tried again later
			return buf
		}
	}
	var latency time.Duration
	if err == nil {
		latency = time.Since(start)
		p.m.predict.WithLabelValues(b.spec.Name).Observe(latency.Seconds())
		err = checkOutputs(res, b.rows, b.reqs[0].si.Batchable)
		if err != nil {
			err = withClass(ClassInternal, fmt.Errorf("model %s: %w", b.spec.Name, err))
		}
	}
	if err != nil {
		if status.Code(err) == codes.InvalidArgument && len(b.reqs) > 1 {
			// One bad request can fail a whole batch; predict them one by
			// one so only the bad ones are dead-lettered.
			for _, r := range b.reqs {
				buf = p.runBatch(ctx, &batch{key: b.key, spec: b.spec, reqs: []*request{r}, rows: r.rows}, buf)
			}
			finished = true
			return buf
		}
		if status.Code(err) == codes.NotFound {
			b.reqs[0].entry.stale.Store(true)
		}
		p.noteError(err)
		now := time.Now()
		for _, r := range b.reqs {
			p.dlqOutput(r, classOf(err), fmt.Errorf("model %s: %w", b.reqs[0].entry.key, err), now)
		}
		p.tr.complete(b.reqs...)
		finished = true
		p.observe(b, inputs, nil, 0, err)
		return buf
	}
	if len(b.reqs) == 1 || p.canaries.get(b.spec) == nil {
		p.canaries.put(b.spec, b.reqs[0])
	}
	e := b.reqs[0].entry
	if b.spec.Version == 0 && b.spec.Label == "" && res.Version != e.meta.Version {
		e.stale.Store(true) // a new version may have a new signature
	}
	names := recordcodec.OutputNames(b.reqs[0].si.Sig, res)
	batched := b.reqs[0].si.Batchable
	now := time.Now()
	off := int64(0)
	for _, r := range b.reqs {
		start := len(buf)
		buf = resultValue(buf, r, res, names, off, batched, now)
		// Each record keeps its own copy: buf is reused for the next batch.
		p.resultOutput(r, append([]byte(nil), buf[start:]...))
		off += r.rows
	}
	buf = buf[:0]
	p.tr.complete(b.reqs...)
	finished = true
	p.observe(b, inputs, res, latency, nil)
	return buf
}

// batchInputs stacks the requests' tensors along the batch dimension.
func batchInputs(b *batch) map[string]*tensor.Tensor {
	sig := b.reqs[0].si.Sig
	out := make(map[string]*tensor.Tensor, len(sig.Inputs))
	if len(b.reqs) == 1 {
		for j, in := range sig.Inputs {
			out[in.Name] = b.reqs[0].inputs[j]
		}
		return out
	}
	for j, in := range sig.Inputs {
		first := b.reqs[0].inputs[j]
		shape := append([]int64{b.rows}, first.Shape[1:]...)
		per := 0
		if first.Shape[0] > 0 {
			per = first.Len() / int(first.Shape[0])
		}
		n := per * int(b.rows)
		var data any
		switch first.Data.(type) {
		case []float32:
			data = stack[float32](b.reqs, j, n)
		case []float64:
			data = stack[float64](b.reqs, j, n)
		case []int32:
			data = stack[int32](b.reqs, j, n)
		case []int64:
			data = stack[int64](b.reqs, j, n)
		case []int16:
			data = stack[int16](b.reqs, j, n)
		case []int8:
			data = stack[int8](b.reqs, j, n)
		case []uint8:
			data = stack[uint8](b.reqs, j, n)
		case []bool:
			data = stack[bool](b.reqs, j, n)
		case [][]byte:
			data = stack[[]byte](b.reqs, j, n)
		}
		out[in.Name] = &tensor.Tensor{DType: first.DType, Shape: shape, Data: data}
	}
	return out
}

func stack[T any](reqs []*request, j, n int) []T {
	out := make([]T, 0, n)
	for _, r := range reqs {
		out = append(out, r.inputs[j].Data.([]T)...)
	}
	return out
}

// spendBudget charges a failed call (class timeout or resource_exhausted) of
// the single request of b, which began when seen calls had succeeded, to the
// request when the model server is evidently fine otherwise: another call
// succeeded while this one ran, or a canary (the inputs of the last request
// that succeeded with the same spec) succeeds now. Without that evidence the
// failure counts towards opening the circuit instead (slowFailed): it may be
// one of calls that all fail. When MaxAttempts failures were charged,
// spendBudget returns the error to dead-letter the request with; else it
// queues b to be tried again after a backoff and returns nil.
func (p *Pipeline) spendBudget(ctx context.Context, b *batch, err error, seen uint64) error {
	r := b.reqs[0]
	if p.successes.Load() > seen || p.canary(ctx, b.spec) {
		r.slowFails++
	} else {
		p.slowFailed(b.spec, err)
	}
	p.noteError(err)
	t := p.tuning()
	if r.slowFails >= t.MaxAttempts {
		return fmt.Errorf("%d calls with this request alone failed while other requests succeeded (pipeline.max_attempts %d): %w",
			r.slowFails, t.MaxAttempts, err)
	}
	if r.backoff == 0 {
		r.backoff = t.RetryBackoff
	}
	wait := r.backoff
	r.backoff = min(2*r.backoff, t.RetryBackoffMax)
	time.AfterFunc(wait, func() { p.in.push(inItem{again: b}) })
	return nil
}

// canaries keeps, per model spec, the inputs of one request that was
// predicted successfully: a call the model server is known to answer.
type canaries struct {
	mu sync.Mutex
	m  map[model.Spec]map[string]*tensor.Tensor
}

func (c *canaries) put(spec model.Spec, r *request) {
	sig := r.si.Sig
	in := make(map[string]*tensor.Tensor, len(sig.Inputs))
	for j, s := range sig.Inputs {
		in[s.Name] = r.inputs[j]
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[model.Spec]map[string]*tensor.Tensor)
	}
	c.m[spec] = in
	c.mu.Unlock()
}

func (c *canaries) get(spec model.Spec) map[string]*tensor.Tensor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[spec]
}

// canary predicts the last good request of spec again and reports whether
// the model server answered it.
func (p *Pipeline) canary(ctx context.Context, spec model.Spec) bool {
	in := p.canaries.get(spec)
	if in == nil {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, p.tuning().PredictTimeout)
	_, err := p.pred.Predict(cctx, spec, in)
	cancel()
	if err != nil {
		return false
	}
	p.succeeded()
	return true
}

// slowFailed counts a failed call of class timeout or resource_exhausted
// towards opening the circuit: Retry.Attempts of them in a row, with no
// success in between, mean every call fails, and the model server is
// treated as unavailable (consumption pauses, nothing is dead-lettered).
func (p *Pipeline) slowFailed(spec model.Spec, err error) {
	if p.circ.state() == circuitHalfOpen || p.slowStreak.Add(1) >= int64(p.tuning().RetryAttempts) {
		p.slowStreak.Store(0)
		p.circ.trip(spec, err)
	}
}

// succeeded records a successful model call.
func (p *Pipeline) succeeded() {
	p.successes.Add(1)
	p.slowStreak.Store(0)
	p.circ.succeed()
}

// retry runs call until it succeeds or fails with anything but
// unavailability. Unavailability is retried with exponential backoff; after
// Retry.Attempts failures in a row the circuit opens (consumption pauses and
// a prober waits for the model server), and the call waits for the circuit
// to close and tries again. Nothing is ever given up for unavailability:
// only ctx ending (a hard stop) ends the loop with an error. A timeout or
// exhaustion is returned to the caller when perRequest (it may be the
// request's fault: spendBudget), else retried as unavailability.
func (p *Pipeline) retry(ctx context.Context, spec model.Spec, perRequest bool, call func(context.Context) error) error {
	tu := p.tuning()
	backoff := tu.RetryBackoff
	failures := 0
	for {
		if err := p.circ.wait(ctx); err != nil {
			return err
		}
		if now := p.tuning(); now != tu { // retuned while retrying
			tu, backoff = now, min(max(backoff, now.RetryBackoff), now.RetryBackoffMax)
		}
		cctx, cancel := context.WithTimeout(ctx, tu.PredictTimeout)
		err := call(cctx)
		cancel()
		if err == nil {
			p.succeeded()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		class := classOf(err)
		if perRequest && slow(class) {
			return err
		}
		if class != ClassUnavailable && !slow(class) {
			p.circ.succeed() // the model server answered: it is up
			return err
		}
		p.noteError(err)
		if p.circ.state() == circuitHalfOpen {
			p.circ.trip(spec, err)
			continue
		}
		if failures++; failures >= tu.RetryAttempts {
			p.circ.trip(spec, err)
			failures, backoff = 0, tu.RetryBackoff
			continue
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(2*backoff, tu.RetryBackoffMax)
	}
}

// Circuit states, as the infergate_circuit_state gauge reports them.
const (
	circuitClosed   = 0
	circuitOpen     = 1
	circuitHalfOpen = 2
)

var circuitNames = [...]string{"closed", "open", "half-open"}

// circuit stops model calls while the model server is unreachable. Open:
// calls wait and fetching is paused; a prober asks the server for metadata
// every ProbeInterval. When it answers the circuit is half-open: the waiting
// calls go ahead, and the first success closes it (fetching resumes) while an
// unavailable answer opens it again.
type circuit struct {
	p        *Pipeline
	interval time.Duration

	mu      sync.Mutex
	st      int
	reopen  chan struct{} // closed when the circuit leaves open
	probing bool
	spec    model.Spec
	ctx     context.Context // bounds the prober
}

func newCircuit(p *Pipeline, interval time.Duration) *circuit {
	return &circuit{p: p, interval: interval, reopen: make(chan struct{}), ctx: context.Background()}
}

func (c *circuit) state() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func (c *circuit) setCtx(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
}

func (c *circuit) wait(ctx context.Context) error {
	for {
		c.mu.Lock()
		st, ch := c.st, c.reopen
		c.mu.Unlock()
		if st != circuitOpen {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *circuit) trip(spec model.Spec, cause error) {
	c.mu.Lock()
	if c.st == circuitOpen {
		c.mu.Unlock()
		return
	}
	c.st = circuitOpen
	c.reopen = make(chan struct{})
	c.spec = spec
	start := !c.probing
	c.probing = true
	ctx := c.ctx
	c.mu.Unlock()
	c.p.logger.Warn("model server unavailable: circuit open, consumption paused", "model", spec.Name, "err", cause)
	c.p.circuitChanged(circuitOpen)
	if start {
		c.p.bg.Add(1)
		go func() {
			defer c.p.bg.Done()
			c.probe(ctx)
		}()
	}
}

func (c *circuit) succeed() {
	c.mu.Lock()
	if c.st == circuitClosed {
		c.mu.Unlock()
		return
	}
	if c.st == circuitOpen {
		close(c.reopen)
	}
	c.st = circuitClosed
	c.mu.Unlock()
	c.p.logger.Info("model server answers again: circuit closed, consumption resumed")
	c.p.circuitChanged(circuitClosed)
}

func (c *circuit) probe(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.mu.Lock()
			c.probing = false
			c.mu.Unlock()
			return
		case <-t.C:
		}
		c.mu.Lock()
		spec := c.spec
		c.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, min(c.p.tuning().PredictTimeout, max(c.interval, time.Second)))
		_, err := c.p.pred.Metadata(pctx, model.Spec{Name: spec.Name, Version: spec.Version, Label: spec.Label})
		cancel()
		if err != nil && (down(err) || errors.Is(err, context.Canceled)) {
			continue
		}
		c.mu.Lock()
		c.probing = false
		if c.st == circuitOpen {
			c.st = circuitHalfOpen
			close(c.reopen)
		}
		c.mu.Unlock()
		c.p.logger.Info("model server answers a probe: circuit half-open, retrying held batches")
		c.p.circuitChanged(circuitHalfOpen)
		return
	}
}
