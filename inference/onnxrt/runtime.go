// Package onnxrt runs ONNX models in pure Go (no cgo), so the infergate
// binary stays a single file on any machine it is copied to.
//
// A Model is an interpreter over the ONNX graph: Load parses the file, checks
// that every operator is supported, folds constant subgraphs, lays constant
// weights out for the matrix kernels and fuses dense layers with the bias and
// activation that follow them. Run then executes the remaining nodes in
// topological order with float32 compute (int64 for shape arithmetic), using
// per-call scratch buffers drawn from a pool, so a steady stream of calls
// allocates little more than its results. docs/runtime.md explains why this is
// hand-written rather than a library, with measurements.
package onnxrt

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/infergate/infergate/inference/tensor"
)

// ErrInvalidInput is wrapped by every Run error caused by the caller's inputs
// or requested outputs: a missing or unknown input, a dtype or shape that does
// not fit the model's signature, shapes the graph cannot combine, or a tensor
// above the size limit. Servers map it to INVALID_ARGUMENT.
var ErrInvalidInput = errors.New("invalid input")

// TensorSpec describes one input or output of a model's signature.
type TensorSpec struct {
	Name  string
	DType tensor.DType
	// Shape has -1 for a dimension of any size; nil means the rank is unknown.
	Shape []int64
}

// Model is a loaded ONNX model. It is immutable after Load and safe for
// concurrent use by many goroutines.
type Model struct {
	inputs   []TensorSpec
	outputs  []TensorSpec
	inputIDs []int
	// inputLimit is, per input, the largest value an int64 input declared
	// UINT32/UINT64 in the model may hold (0: no check; compile.go).
	inputLimit []int64
	// rounding to float16/bfloat16 of inputs and outputs declared so (nil:
	// none); float16 is tensor.Half in the signature, bfloat16 float32
	inputRound, outputRound []func([]float32)
	outputIDs               []int
	inputIndex              map[string]int
	outputIndex             map[string]int
	nodes                   []*node
	consts                  []*value // by value id; nil for values computed at run time
	nvals                   int
	nscratch                int
	pool                    sync.Pool
}

// maxPooledElements bounds the scratch memory a pooled run state may keep:
// one huge request should not pin gigabytes for the life of the process.
const maxPooledElements = 16 << 20

// Options tune how a model runs. The zero value is the default.
// LoadFile reads and loads an ONNX model file with default options.
func LoadFile(path string) (*Model, error) { return LoadFileWithOptions(path, LoadOptions{}) }

// LoadFileWithOptions reads and loads an ONNX model file.
func LoadFileWithOptions(path string, o LoadOptions) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	m, err := LoadWithOptions(b, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Load parses an ONNX model, validates it and prepares it for Run. Errors name
// what is wrong: a file that is not an ONNX model, an operator or data type the
// runtime does not support (with the node's name), a dangling value.
func Load(onnxBytes []byte) (*Model, error) {
	return LoadWithOptions(onnxBytes, LoadOptions{})
}

// DefaultMaxFoldedBytes is LoadOptions.MaxFoldedBytes when it is 0.
const DefaultMaxFoldedBytes = 256 << 20

// LoadOptions tune Load.
type LoadOptions struct {
	// MaxFoldedBytes bounds the constants computed while loading (constant
	// folding), all together: each is already at most 16 Mi elements, but
	// a file of a few hundred bytes can chain many of them. A model over
	// the bound fails to load. 0: DefaultMaxFoldedBytes.
	MaxFoldedBytes int64
	// Threads is how many goroutines one Run may use for a large operator
	// (convolution, a big matrix product); 0 means runtime.GOMAXPROCS(0).
	Threads int
}

// LoadWithOptions is Load with options.
func LoadWithOptions(onnxBytes []byte, o LoadOptions) (*Model, error) {
	if o.MaxFoldedBytes <= 0 {
		o.MaxFoldedBytes = DefaultMaxFoldedBytes
	}
	if o.Threads < 0 {
		return nil, fmt.Errorf("runtime: LoadOptions.Threads is %d, want 0 (all cores) or more", o.Threads)
	}
	if o.Threads == 0 {
		o.Threads = defaultThreads()
	}
	m, err := compile(onnxBytes, o)
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	return m, nil
}

// Inputs returns the graph's inputs that the caller must feed (initializers
// listed as inputs are excluded), in graph order.
func (m *Model) Inputs() []TensorSpec { return cloneSpecs(m.inputs) }

// Outputs returns the graph's outputs, in graph order.
func (m *Model) Outputs() []TensorSpec { return cloneSpecs(m.outputs) }

func cloneSpecs(s []TensorSpec) []TensorSpec {
	out := make([]TensorSpec, len(s))
	for i, sp := range s {
		out[i] = sp
		if sp.Shape != nil {
			out[i].Shape = append([]int64{}, sp.Shape...)
		}
	}
	return out
}

// Run executes the model. Every input of Inputs() must be given, with its
// dtype and a shape that fits its spec; input data is read, never written or
// kept. outputs names the outputs wanted (nil means all). The returned tensors
// are freshly allocated and belong to the caller.
func (m *Model) Run(inputs map[string]*tensor.Tensor, outputs []string) (map[string]*tensor.Tensor, error) {
	for _, name := range outputs {
		if _, ok := m.outputIndex[name]; !ok {
			return nil, fmt.Errorf("%w: model has no output %q (outputs: %s)", ErrInvalidInput, name, specNames(m.outputs))
		}
	}
	for name := range inputs {
		if _, ok := m.inputIndex[name]; !ok {
			return nil, fmt.Errorf("%w: model has no input %q (inputs: %s)", ErrInvalidInput, name, specNames(m.inputs))
		}
	}
	st := m.getState()
	defer m.putState(st)
	for i, spec := range m.inputs {
		t, ok := inputs[spec.Name]
		if !ok || t == nil {
			return nil, fmt.Errorf("%w: missing input %q", ErrInvalidInput, spec.Name)
		}
		// A float16 input also takes float32 (rounded below), as it did
		// before the signature said DT_HALF.
		if t.DType != spec.DType && !(spec.DType == tensor.Half && t.DType == tensor.Float) {
			return nil, fmt.Errorf("%w: input %q is %s, the model expects %s", ErrInvalidInput, spec.Name, t.DType, spec.DType)
		}
		if !tensor.Compatible(spec.Shape, t.Shape) {
			return nil, fmt.Errorf("%w: input %q has shape %s, the model expects %s",
				ErrInvalidInput, spec.Name, tensor.ShapeString(t.Shape), tensor.ShapeString(spec.Shape))
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", ErrInvalidInput, spec.Name, err)
		}
		if lim := m.inputLimit[i]; lim != 0 {
			if err := checkUnsigned(t, lim); err != nil {
				return nil, fmt.Errorf("%w: input %q: %w", ErrInvalidInput, spec.Name, err)
			}
		}
		if err := st.setInput(m.inputIDs[i], t); err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", ErrInvalidInput, spec.Name, err)
		}
		if round := m.inputRound[i]; round != nil {
			// The caller's data is used in place: round a copy.
			src := st.vals[m.inputIDs[i]].f
			f, err := st.allocF(m.inputIDs[i])
			if err != nil {
				return nil, fmt.Errorf("%w: input %q: %w", ErrInvalidInput, spec.Name, err)
			}
			copy(f, src)
			round(f)
		}
	}
	if err := m.exec(st); err != nil {
		return nil, err
	}
	if outputs == nil {
		res := make(map[string]*tensor.Tensor, len(m.outputs))
		for i, spec := range m.outputs {
			res[spec.Name] = m.export(st, i)
		}
		return res, nil
	}
	res := make(map[string]*tensor.Tensor, len(outputs))
	for _, name := range outputs {
		res[name] = m.export(st, m.outputIndex[name])
	}
	return res, nil
}

// checkUnsigned checks that an int64 tensor fed to an input declared UINT32
// or UINT64 holds only values in [0, limit].
func checkUnsigned(t *tensor.Tensor, limit int64) error {
	v, _ := t.Data.([]int64)
	for i, x := range v {
		if x < 0 || x > limit {
			typ := "UINT64"
			if limit == math.MaxUint32 {
				typ = "UINT32"
			}
			return fmt.Errorf("element %d is %d, out of range for the model's %s (0 to %d)", i, x, typ, limit)
		}
	}
	return nil
}

func specNames(specs []TensorSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// exec runs the nodes. A panic in a kernel is a bug, not a reason to take the
// whole server down, so it is returned as an error.
func (m *Model) exec(st *state) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("runtime: internal error: %v", r)
		}
	}()
	for _, nd := range m.nodes {
		if err := nd.k.run(st, nd); err != nil {
			return fmt.Errorf("%w: node %q (%s): %w", ErrInvalidInput, nd.name, nd.op, err)
		}
	}
	return nil
}

func (m *Model) getState() *state {
	if st, ok := m.pool.Get().(*state); ok {
		return st
	}
	return newState(m.nvals, m.nscratch, m.consts, tensor.MaxElements)
}

func (m *Model) putState(st *state) {
	// Inputs belong to the caller, and views (Identity, Reshape, …) may point
	// into them: drop every reference to data the state does not own, so a
	// pooled state keeps no caller memory alive.
	for id, c := range m.consts {
		if c == nil {
			st.vals[id].f, st.vals[id].i = nil, nil
		}
	}
	if st.held() <= maxPooledElements {
		m.pool.Put(st)
	}
}

// export copies output i out of the state, rounded to float16/bfloat16 if
// it is declared so.
func (m *Model) export(st *state, i int) *tensor.Tensor {
	t := st.vals[m.outputIDs[i]].export(m.outputs[i].DType)
	if round := m.outputRound[i]; round != nil {
		if f, ok := t.Data.([]float32); ok {
			round(f)
		}
	}
	return t
}
