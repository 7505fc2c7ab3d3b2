package pipeline

import (
	"time"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
)

// Router picks the version of a request that names neither a version nor a
// label: a version pinned after a rollback, or one side of a traffic split
// chosen by a stable hash of the record key. 0 means the model server's
// latest. It is called on the dispatcher's goroutine for every such request,
// so it must be quick and must not block.
type Router interface {
	Route(model string, key []byte) (version int64)
}

// Observer sees every predicted batch once its results are on their way to
// the broker (a shadow copies sampled rows to score them elsewhere; a
// rollout guard counts errors and latencies). Observe runs on a worker's
// goroutine: it must not block and must not modify the observation's tensors.
type Observer interface {
	Observe(o *Observation)
}

// Observation is one model call of the pipeline.
type Observation struct {
	Spec    model.Spec // as called: Version is set when the request named one or was routed
	Version int64      // the version that answered (0 after an error)
	Inputs  map[string]*tensor.Tensor
	Outputs map[string]*tensor.Tensor // nil after an error
	// Batched reports whether the rows of every request are stacked along
	// dim 0 of Inputs and Outputs.
	Batched  bool
	Requests []ObservedRequest
	Latency  time.Duration // of the successful call
	Err      error         // the error that dead-lettered the batch
	Class    string        // its class
	// Busy reports a backlog: when the batch was answered, more requests were
	// waiting than the model calls in flight can hold (MaxBatchSize rows times
	// MaxInflightBatches). An observer doing work of its own yields then.
	Busy bool
}

// ObservedRequest is one request of an observed batch: its rows are
// [Row, Row+Rows) of the batch.
type ObservedRequest struct {
	ID        string // request_id as JSON text ("\"r-1\"", "17"), "" if absent
	Key       []byte
	Topic     string
	Partition int32
	Offset    int64
	Row, Rows int64
}

// SetRouter installs the router (before Run).
func (p *Pipeline) SetRouter(r Router) { p.router = r }

// SetObserver installs the observer (before Run).
func (p *Pipeline) SetObserver(o Observer) { p.observer = o }

// routeKey is what a split hashes: the record key, so one device stays on one
// version; a record without a key is placed by its request id.
func routeKey(r *request) []byte {
	if len(r.rec.Key) > 0 {
		return r.rec.Key
	}
	return r.env.ID
}

func (p *Pipeline) observe(b *batch, inputs map[string]*tensor.Tensor, res *model.Result, latency time.Duration, err error) {
	if p.observer == nil {
		return
	}
	o := &Observation{Spec: b.spec, Inputs: inputs, Latency: latency, Err: err, Batched: b.reqs[0].si.Batchable,
		Requests: make([]ObservedRequest, len(b.reqs)),
		Busy:     p.tr.pendingCount() >= p.cfg.MaxBatchSize*p.cfg.MaxInflightBatches}
	if err != nil {
		o.Class = classOf(err)
	} else {
		o.Version, o.Outputs = res.Version, res.Outputs
	}
	off := int64(0)
	for i, r := range b.reqs {
		o.Requests[i] = ObservedRequest{ID: string(r.env.ID), Key: r.rec.Key, Topic: r.rec.Topic,
			Partition: r.rec.Partition, Offset: r.rec.Offset, Row: off, Rows: r.rows}
		off += r.rows
	}
	p.observer.Observe(o)
}
