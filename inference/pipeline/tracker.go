package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/recordcodec"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/store"
)

// request is one consumed record on its way through the pipeline, and its
// place in the order of its partition.
type request struct {
	rec  *kgo.Record
	part *partState

	// Set by decoding.
	env       recordcodec.Envelope
	modelName string // the model the request asked for, for the DLQ record
	entry     *metaEntry
	si        *sigInfo
	inputs    []*tensor.Tensor
	rows      int64

	// Per-request budget of calls that time out or exhaust resources
	// (spendBudget): failures charged, the next backoff.
	slowFails int
	backoff   time.Duration

	// Set by the emitter and the produce promise (produceFailed): the
	// output's degradation level (fitOutput), the last produce error, the
	// next backoff after a retriable one.
	level          int
	produceErr     error
	produceBackoff time.Duration

	// Set by the stage that finishes the request, before complete.
	attempts int
	out      *kgo.Record   // the result or DLQ record to produce
	full     *kgo.Record   // the DLQ record before fitOutput cut it down
	dlq      *store.Record // non-nil when out is a DLQ record
	dlqID    []byte        // the value of out's dlq.id header, filled once stored (setDLQID)
	class    string        // DLQ class
	label    string        // model label for metrics

	// Guarded by tracker.mu.
	done  bool // out is set
	acked bool // the broker acknowledged out
}

type partKey struct {
	topic     string
	partition int32
}

// partState is the order of one assigned partition's in-flight requests.
// Requests are queued in offset order when polled; their outputs are
// produced in that order once done (q[:emitted] have been handed to the
// producer), and the commit point moves past a request only when it and all
// before it are acknowledged.
type partState struct {
	key     partKey
	q       []*request
	emitted int
	queued  bool // in tracker.readyParts

	commit kgo.EpochOffset // next offset to commit
	dirty  bool            // commit moved since the last commit

	revoked atomic.Bool // no longer ours: outputs are dropped, nothing committed
}

// tracker holds every partition's in-flight requests. One mutex guards it;
// each caller holds it briefly and never across a broker or model call.
type tracker struct {
	mu         sync.Mutex
	parts      map[partKey]*partState
	readyParts []*partState
	pending    int           // registered and not yet acknowledged
	notify     chan struct{} // closed when pending drops, if someone waits
	cycle      []*request    // exactly-once: acknowledged in the current transaction
	cycleErr   error         // exactly-once: a produce failed; the transaction must abort

	emitSig  chan struct{} // something is ready to produce
	retries  []*request    // outputs to produce again (produceFailed)
	spaceSig chan struct{} // pending dropped
}

func newTracker() *tracker {
	return &tracker{
		parts:    make(map[partKey]*partState),
		emitSig:  make(chan struct{}, 1),
		spaceSig: make(chan struct{}, 1),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// register queues polled records in their partitions' order.
func (t *tracker) register(recs []*kgo.Record) []*request {
	reqs := make([]*request, len(recs))
	block := make([]request, len(recs)) // one allocation for the poll
	t.mu.Lock()
	var ps *partState
	for i, rec := range recs {
		if ps == nil || ps.key.partition != rec.Partition || ps.key.topic != rec.Topic {
			k := partKey{rec.Topic, rec.Partition}
			ps = t.parts[k]
			if ps == nil {
				ps = &partState{key: k}
				t.parts[k] = ps
			}
		}
		r := &block[i]
		r.rec, r.part = rec, ps
		ps.q = append(ps.q, r)
		reqs[i] = r
	}
	t.pending += len(recs)
	t.mu.Unlock()
	return reqs
}

func (t *tracker) pendingCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}

// complete marks requests done; their outputs are produced in order by the emitter.
func (t *tracker) complete(reqs ...*request) {
	t.mu.Lock()
	for _, r := range reqs {
		r.done = true
		ps := r.part
		if !ps.queued && !ps.revoked.Load() {
			ps.queued = true
			t.readyParts = append(t.readyParts, ps)
		}
	}
	t.mu.Unlock()
	signal(t.emitSig)
}

// again queues r's output to be produced again (after a failed produce).
func (t *tracker) again(r *request) {
	t.mu.Lock()
	t.retries = append(t.retries, r)
	t.mu.Unlock()
	signal(t.emitSig)
}

// takeReady returns the outputs to produce again, then, per partition in
// order, the done requests that follow everything already handed to the
// producer.
func (t *tracker) takeReady(buf []*request) []*request {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.retries {
		if !r.part.revoked.Load() {
			buf = append(buf, r)
		}
	}
	clear(t.retries)
	t.retries = t.retries[:0]
	for _, ps := range t.readyParts {
		ps.queued = false
		if ps.revoked.Load() {
			continue
		}
		for ps.emitted < len(ps.q) && ps.q[ps.emitted].done {
			buf = append(buf, ps.q[ps.emitted])
			ps.emitted++
		}
	}
	clear(t.readyParts)
	t.readyParts = t.readyParts[:0]
	return buf
}

// acked records the broker's acknowledgement of r's output and moves the
// partition's commit point past every acknowledged request at its head.
// It reports whether r still belonged to an assigned partition.
func (t *tracker) acked(r *request, eos bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := r.part
	if ps.revoked.Load() {
		return false
	}
	r.acked = true
	if eos {
		t.cycle = append(t.cycle, r)
	}
	n := 0
	for n < len(ps.q) && ps.q[n].acked {
		head := ps.q[n]
		ps.commit = kgo.EpochOffset{Epoch: head.rec.LeaderEpoch, Offset: head.rec.Offset + 1}
		ps.dirty = true
		ps.q[n] = nil
		n++
	}
	if n > 0 {
		ps.q = ps.q[n:]
		ps.emitted -= n
		if len(ps.q) == 0 {
			ps.q = nil // let the backing array go
		}
		t.released(n)
	}
	return true
}

// released lowers pending by n and wakes whoever waits for room or for idle.
func (t *tracker) released(n int) {
	t.pending -= n
	signal(t.spaceSig)
	if t.notify != nil {
		close(t.notify)
		t.notify = nil
	}
}

// failed records that r's output could not be produced (exactly-once: the
// transaction aborts, so the request counts as finished for this cycle).
func (t *tracker) failed(r *request, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cycleErr == nil {
		t.cycleErr = err
	}
	if r.part.revoked.Load() {
		return
	}
	r.acked = true
	ps := r.part
	n := 0
	for n < len(ps.q) && ps.q[n].acked {
		ps.q[n] = nil
		n++
	}
	if n > 0 {
		ps.q = ps.q[n:]
		ps.emitted -= n
		t.released(n)
	}
}

// waitUntil blocks until cond (called with t.mu held) holds or ctx ends.
// poll also re-checks cond every interval, for conditions that depend on
// state outside the tracker.
func (t *tracker) waitUntil(ctx context.Context, poll time.Duration, cond func() bool) error {
	for {
		t.mu.Lock()
		if cond() {
			t.mu.Unlock()
			return nil
		}
		if t.notify == nil {
			t.notify = make(chan struct{})
		}
		ch := t.notify
		t.mu.Unlock()
		var tick <-chan time.Time
		var tm *time.Timer
		if poll > 0 {
			tm = time.NewTimer(poll)
			tick = tm.C
		}
		select {
		case <-ch:
		case <-tick:
		case <-ctx.Done():
		}
		if tm != nil {
			tm.Stop()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// dirtyOffsets returns the commit points that moved since the last call.
func (t *tracker) dirtyOffsets() map[string]map[int32]kgo.EpochOffset {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out map[string]map[int32]kgo.EpochOffset
	for k, ps := range t.parts {
		if !ps.dirty {
			continue
		}
		ps.dirty = false
		if out == nil {
			out = make(map[string]map[int32]kgo.EpochOffset)
		}
		if out[k.topic] == nil {
			out[k.topic] = make(map[int32]kgo.EpochOffset)
		}
		out[k.topic][k.partition] = ps.commit
	}
	return out
}

// redirty marks offsets whose commit failed so the next commit retries them.
func (t *tracker) redirty(offsets map[string]map[int32]kgo.EpochOffset) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for topic, ps := range offsets {
		for p := range ps {
			if st := t.parts[partKey{topic, p}]; st != nil {
				st.dirty = true
			}
		}
	}
}

// revoke forgets partitions and returns their last commit points. Requests
// of theirs still in flight are dropped when they finish.
func (t *tracker) revoke(parts map[string][]int32) map[string]map[int32]kgo.EpochOffset {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]map[int32]kgo.EpochOffset)
	n := 0
	for topic, ps := range parts {
		for _, p := range ps {
			k := partKey{topic, p}
			st := t.parts[k]
			if st == nil {
				continue
			}
			if st.dirty {
				if out[topic] == nil {
					out[topic] = make(map[int32]kgo.EpochOffset)
				}
				out[topic][p] = st.commit
			}
			st.revoked.Store(true)
			n += len(st.q)
			delete(t.parts, k)
		}
	}
	if n > 0 {
		t.released(n)
	}
	return out
}

// revokeAll forgets every partition (exactly-once after an abort, shutdown).
func (t *tracker) revokeAll() {
	all := make(map[string][]int32)
	t.mu.Lock()
	for k := range t.parts {
		all[k.topic] = append(all[k.topic], k.partition)
	}
	t.mu.Unlock()
	t.revoke(all)
}

// idle reports whether the given partitions have nothing in flight.
// Called with t.mu held.
func (t *tracker) idleLocked(parts map[string][]int32) bool {
	for topic, ps := range parts {
		for _, p := range ps {
			if st := t.parts[partKey{topic, p}]; st != nil && len(st.q) > 0 {
				return false
			}
		}
	}
	return true
}

// takeCycle returns the requests acknowledged in this transaction and the
// first produce error, and starts the next cycle.
func (t *tracker) takeCycle() ([]*request, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.cycle, t.cycleErr
	t.cycle, t.cycleErr = nil, nil
	return c, err
}

func (t *tracker) cycleError() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cycleErr
}
