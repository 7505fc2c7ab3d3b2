package modelserver

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/proto/tfpb"
)

// Limits bound what one gRPC or REST request can make the server allocate,
// so memory is set by configuration and not by the sender: a TensorProto of
// shape [16777216,16] with a single float_val (TF's repeat-the-last-value
// rule) is a few bytes on the wire and a gigabyte decoded. They apply to the
// gRPC and REST APIs, not to in-process calls (the pipeline bounds its own
// batches). A zero field is no limit.
type Limits struct {
	// MaxRequestElements bounds the tensor elements of one request, all
	// inputs together, checked from the shapes (REST: from a count of the
	// body's JSON values) before anything is allocated.
	MaxRequestElements int64
	// MaxRequestRows bounds dim 0 of every input (REST row format: the
	// number of instances).
	MaxRequestRows int64
	// MaxInflightBytes bounds the estimated memory of the requests being
	// decoded and run at once. A request waits (until its deadline) for
	// room; one estimated above the whole bound runs alone.
	MaxInflightBytes int64
	// MaxFoldedConstantBytes bounds the constants a model's constant
	// folding computes while loading, all together (the runtime's default
	// when 0). A model over it does not load.
	MaxFoldedConstantBytes int64
}

// DefaultLimits are the edge defaults the appliance uses: 2 Mi elements
// (8 MiB of float32, a batch of 13 224×224×3 images) and 16384 rows per
// request, 512 MiB of requests in flight, 256 MiB of folded constants.
var DefaultLimits = Limits{
	MaxRequestElements:     1 << 21,
	MaxRequestRows:         16384,
	MaxInflightBytes:       512 << 20,
	MaxFoldedConstantBytes: 256 << 20,
}

// EdgeMaxMessageSize is the gRPC message bound the appliance uses (TF's is
// 2 GiB - 1): a request at MaxRequestElements of float32 in float_val is 8 MiB.
const EdgeMaxMessageSize = 64 << 20

// The settings named in limit errors: the appliance's keys and
// `infergate model-server`'s flags.
const (
	settingElements = "max_request_elements (model_server.max_request_elements, --max-request-elements; model-server --max_request_elements)"
	settingRows     = "max_request_rows (model_server.max_request_rows, --max-request-rows; model-server --max_request_rows)"
)

func (l Limits) validate() error {
	switch {
	case l.MaxRequestElements < 0:
		return fmt.Errorf("modelserver: Limits.MaxRequestElements %d is negative", l.MaxRequestElements)
	case l.MaxRequestRows < 0:
		return fmt.Errorf("modelserver: Limits.MaxRequestRows %d is negative", l.MaxRequestRows)
	case l.MaxInflightBytes < 0:
		return fmt.Errorf("modelserver: Limits.MaxInflightBytes %d is negative", l.MaxInflightBytes)
	case l.MaxFoldedConstantBytes < 0:
		return fmt.Errorf("modelserver: Limits.MaxFoldedConstantBytes %d is negative", l.MaxFoldedConstantBytes)
	}
	return nil
}

// TooManyElements is the INVALID_ARGUMENT a request over MaxRequestElements
// gets; the REST handler uses it for its count of JSON values too.
func (l Limits) TooManyElements(n int64) error {
	return status.Errorf(codes.InvalidArgument,
		"request has %d values, more than the limit of %d tensor elements: %s", n, l.MaxRequestElements, settingElements)
}

// checkInputs applies MaxRequestElements and MaxRequestRows to the shapes of
// a request's inputs, before any of them is decoded, and returns the
// estimated memory decoding them takes.
func (l Limits) checkInputs(inputs map[string]*tfpb.TensorProto) (int64, error) {
	var total, bytes int64
	for alias, tp := range inputs {
		shape, err := tensor.ShapeFromProto(tp.GetTensorShape())
		if err != nil {
			return 0, status.Errorf(codes.InvalidArgument, "tensor parsing error: %s: %v", alias, err)
		}
		n, err := tensor.NumElements(shape)
		if err != nil {
			return 0, status.Errorf(codes.InvalidArgument, "tensor parsing error: %s: %v", alias, err)
		}
		total += n // each n <= tensor.MaxElements, so no overflow for any sane number of inputs
		if l.MaxRequestElements > 0 && total > l.MaxRequestElements {
			return 0, l.TooManyElements(total)
		}
		if l.MaxRequestRows > 0 && len(shape) > 0 && shape[0] > l.MaxRequestRows {
			return 0, status.Errorf(codes.InvalidArgument,
				"input %s has %d rows (dim 0 of shape %s), more than the limit of %d: %s",
				alias, shape[0], tensor.ShapeString(shape), l.MaxRequestRows, settingRows)
		}
		size := int64(tensor.DType(tp.GetDtype()).GoSize())
		if size == 0 {
			size = 24 // an unsupported type, refused when decoded
		}
		bytes += n * size
	}
	return bytes, nil
}

// admission is a weighted semaphore over estimated request memory, FIFO so
// a large request is not starved by a stream of small ones.
type admission struct {
	capacity int64

	mu      sync.Mutex
	used    int64
	waiters []*waiter
}

type waiter struct {
	n     int64
	ready chan struct{}
}

func newAdmission(capacity int64) *admission {
	if capacity <= 0 {
		return nil
	}
	return &admission{capacity: capacity}
}

type admittedKey struct{}

// admit reserves n bytes (at most the whole capacity) until release is
// called; it waits until there is room or ctx ends (the call's deadline). A
// context that already holds an admission (the REST handler admits before it
// calls Predict in process) is not admitted twice. A nil admission admits
// everything.
func (a *admission) admit(ctx context.Context, n int64) (context.Context, func(), error) {
	if a == nil || ctx.Value(admittedKey{}) != nil {
		return ctx, func() {}, nil
	}
	n = max(min(n, a.capacity), 1)
	a.mu.Lock()
	if len(a.waiters) == 0 && a.used+n <= a.capacity {
		a.used += n
		a.mu.Unlock()
		return context.WithValue(ctx, admittedKey{}, true), func() { a.release(n) }, nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	a.waiters = append(a.waiters, w)
	a.mu.Unlock()
	select {
	case <-w.ready:
		return context.WithValue(ctx, admittedKey{}, true), func() { a.release(n) }, nil
	case <-ctx.Done():
		a.mu.Lock()
		select {
		case <-w.ready: // admitted meanwhile: give it back
			a.mu.Unlock()
			a.release(n)
		default:
			for i, x := range a.waiters {
				if x == w {
					a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
					break
				}
			}
			a.wakeLocked() // the head may have changed
			a.mu.Unlock()
		}
		return ctx, nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (a *admission) release(n int64) {
	a.mu.Lock()
	a.used -= n
	a.wakeLocked()
	a.mu.Unlock()
}

func (a *admission) wakeLocked() {
	for len(a.waiters) > 0 && a.used+a.waiters[0].n <= a.capacity {
		w := a.waiters[0]
		a.waiters = a.waiters[1:]
		a.used += w.n
		close(w.ready)
	}
}
