package pipeline

import (
	"context"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/recordcodec"
	"github.com/infergate/infergate/inference/tensor"
)

// batch is requests of one model spec, signature and input shape (beyond the
// batch dimension), predicted in one call.
type batch struct {
	key      groupKey
	spec     model.Spec
	reqs     []*request
	rows     int64
	deadline time.Time
}

type groupKey struct {
	entry  *metaEntry
	si     *sigInfo
	shapes string // "" when the signature fixes every dimension but the batch
}

// inbox carries polled requests from the poll loop to the dispatcher without
// ever blocking the poll loop (which holds off rebalances while it works);
// the poll loop bounds it by polling only as many records as there is room for.
type inbox struct {
	mu    sync.Mutex
	items []inItem
	sig   chan struct{}
}

type inItem struct {
	reqs  []*request
	flush bool   // dispatch every open batch now
	again *batch // a request whose model call timed out, to try again (spendBudget)
}

func (in *inbox) push(it inItem) {
	in.mu.Lock()
	in.items = append(in.items, it)
	in.mu.Unlock()
	signal(in.sig)
}

func (in *inbox) take(buf []inItem) []inItem {
	in.mu.Lock()
	defer in.mu.Unlock()
	buf = append(buf, in.items...)
	clear(in.items)
	in.items = in.items[:0]
	return buf
}

// dispatchLoop decodes requests and groups them into batches, sending a batch
// to the workers when it is full or its first request has waited MaxWait.
// It runs on one goroutine, which owns the open batches.
func (p *Pipeline) dispatchLoop(ctx context.Context) {
	groups := make(map[groupKey]*batch)
	var ready []*batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var items []inItem

	closeGroup := func(k groupKey, b *batch) {
		delete(groups, k)
		ready = append(ready, b)
	}
	add := func(r *request) {
		t := p.tuning()
		if !r.si.Batchable || r.rows >= int64(t.MaxBatchSize) {
			ready = append(ready, &batch{spec: p.specOf(r), reqs: []*request{r}, rows: r.rows})
			return
		}
		k := groupKey{entry: r.entry, si: r.si}
		if !r.si.fixed {
			k.shapes = shapeKey(r.inputs)
		}
		b := groups[k]
		if b != nil && b.rows+r.rows > int64(t.MaxBatchSize) {
			closeGroup(k, b)
			b = nil
		}
		if b == nil {
			b = &batch{key: k, spec: p.specOf(r), deadline: time.Now().Add(t.MaxBatchWait),
				reqs: make([]*request, 0, min(t.MaxBatchSize, 64))}
			groups[k] = b
		}
		b.reqs = append(b.reqs, r)
		b.rows += r.rows
		if b.rows >= int64(t.MaxBatchSize) {
			closeGroup(k, b)
		}
	}
	expire := func(all bool) {
		t := p.tuning()
		now := time.Now()
		var next time.Time
		for k, b := range groups {
			if all || (t.MaxBatchWait > 0 && !now.Before(b.deadline)) {
				closeGroup(k, b)
			} else if t.MaxBatchWait > 0 && (next.IsZero() || b.deadline.Before(next)) {
				next = b.deadline
			}
		}
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(next.Sub(now))
		}
	}

	wait := p.tuning().MaxBatchWait
	for {
		if w := p.tuning().MaxBatchWait; w != wait {
			// Retuned: batches opened with no wait have no timer armed.
			wait = w
			expire(false)
		}
		var send chan *batch
		var head *batch
		var headKey groupKey
		switch {
		case len(ready) > 0:
			send, head = p.work, ready[0]
		case wait == 0 && len(groups) > 0:
			// No waiting: the oldest open batch goes as soon as a worker is
			// free, and grows meanwhile, so batches are as large as the
			// model's pace makes them and no larger.
			for k, b := range groups {
				if head == nil || b.deadline.Before(head.deadline) {
					head, headKey = b, k
				}
			}
			send = p.work
		}
		select {
		case <-ctx.Done():
			return
		case send <- head:
			if len(ready) > 0 && ready[0] == head {
				ready[0] = nil
				ready = ready[1:]
			} else {
				delete(groups, headKey)
			}
		case <-timer.C:
			expire(false)
		case <-p.in.sig:
			items = p.in.take(items[:0])
			for _, it := range items {
				if it.again != nil && !it.again.reqs[0].part.revoked.Load() {
					ready = append(ready, it.again)
				}
				for _, r := range it.reqs {
					if r.part.revoked.Load() {
						continue
					}
					if err := p.decode(ctx, r); err != nil {
						if ctx.Err() != nil {
							return // stopping: the request stays uncommitted
						}
						p.finishWithError(r, err)
						continue
					}
					add(r)
				}
				if it.flush {
					expire(true)
				}
			}
			clear(items)
			expire(false)
		}
	}
}

func (p *Pipeline) specOf(r *request) model.Spec {
	s := r.entry.key.spec()
	s.Signature = r.si.Name
	return s
}

func shapeKey(ins []*tensor.Tensor) string {
	var b []byte
	for _, t := range ins {
		for _, d := range t.Shape[1:] {
			b = strconv.AppendInt(b, d, 10)
			b = append(b, ',')
		}
		b = append(b, ';')
	}
	return string(b)
}

// decode reads r's record into tensors checked against the model's
// signature. An error that is not of class decode or validation means the
// pipeline is stopping.
func (p *Pipeline) decode(ctx context.Context, r *request) (err error) {
	defer func() {
		if v := recover(); v != nil {
			p.logger.Error("panic decoding a request", "topic", r.rec.Topic, "partition", r.rec.Partition,
				"offset", r.rec.Offset, "panic", v, "stack", string(debug.Stack()))
			err = withClass(ClassInternal, fmt.Errorf("panic decoding the request: %v", v))
		}
	}()
	env, err := recordcodec.ParseEnvelope(r.rec.Value)
	if err != nil {
		return err
	}
	r.env = env
	name := env.Model
	if name == "" {
		for _, h := range r.rec.Headers {
			if h.Key == HeaderModel {
				name = string(h.Value)
			}
		}
	}
	if name == "" {
		name = p.cfg.DefaultModel
	}
	r.modelName = name
	version := env.Version
	if p.router != nil && !env.HasVersion && env.Label == "" {
		version = p.router.Route(name, routeKey(r))
	}
	e, err := p.lookupMeta(ctx, metaKey{name: name, version: version, label: env.Label})
	if err != nil {
		return err
	}
	r.entry = e
	sig := env.Signature
	if sig == "" {
		sig = model.DefaultSignature
		if _, ok := e.meta.Signatures[sig]; !ok && len(e.meta.Signatures) == 1 {
			for only := range e.meta.Signatures {
				sig = only
			}
		}
	}
	si, err := e.signature(sig, p.cfg.DefaultInput)
	if err != nil {
		return err
	}
	r.si = si
	r.inputs, r.rows, err = recordcodec.DecodeInputs(&r.env, si.Signature)
	return err
}

// lookupMeta returns cached metadata, retrying while the model server is
// unavailable exactly as predictions do (backoff, then the circuit).
func (p *Pipeline) lookupMeta(ctx context.Context, key metaKey) (*metaEntry, error) {
	if e := p.meta.cached(key); e != nil {
		return e, e.err
	}
	var e *metaEntry
	err := p.retry(ctx, key.spec(), false, func(ctx context.Context) error {
		var err error
		e, err = p.meta.lookup(ctx, key, p.tuning().PredictTimeout)
		return err
	})
	if err != nil && ctx.Err() == nil && classOf(err) == ClassInternal {
		err = withClass(ClassInternal, fmt.Errorf("model %s: metadata: %w", key, err))
	}
	return e, err
}

// finishWithError dead-letters r.
func (p *Pipeline) finishWithError(r *request, err error) {
	class := classOf(err)
	if class == ClassUnavailable { // only reachable through a bug: never dead-letter for unavailability
		class = ClassInternal
	}
	p.dlqOutput(r, class, err, time.Now())
	p.tr.complete(r)
}
