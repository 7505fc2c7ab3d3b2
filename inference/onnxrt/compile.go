package onnxrt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	onnxpb "github.com/infergate/infergate/proto/onnx"

	"github.com/infergate/infergate/inference/tensor"
)

// Operator set versions the kernels implement the semantics of. Newer sets
// may change an operator's meaning, so they are refused rather than guessed.
const (
	minOpset = 1 // opsets 1 to 6 load where their meaning is unchanged (checkLegacy)
	maxOpset = 23
)

// foldLimit bounds the size of any constant computed while loading, so a
// small hostile file cannot make Load allocate gigabytes.
const foldLimit = 1 << 24

// node is one step of the compiled program.
type node struct {
	name string
	op   string
	in   []int // value ids; -1 for an absent optional input
	out  []int
	k    kernel
}

// kernel executes one node on a run state.
type kernel interface {
	run(st *state, nd *node) error
}

type compiler struct {
	opset    int64
	ids      map[string]int
	names    []string
	dtypes   []tensor.DType
	consts   []*value
	constErr []error // initializers that failed to decode; an error only if used
	nodes    []*node
	nscratch int
	fold     *state
	zipMaps  map[int]bool // values a ZipMap produced
	threads  int          // Options.Threads, resolved
	// unsigned are the graph inputs declared UINT32 or UINT64 (by id, the
	// type's name): carried as int64, so only consumers whose result does not
	// depend on unsigned wrap-around may read them (unsignedReader).
	unsigned map[int]string
}

func (c *compiler) zipMapOut(ids []int) {
	if c.zipMaps == nil {
		c.zipMaps = make(map[int]bool)
	}
	for _, id := range ids {
		if id >= 0 {
			c.zipMaps[id] = true
		}
	}
}

func compile(b []byte, o LoadOptions) (*Model, error) {
	var mp onnxpb.ModelProto
	if err := proto.Unmarshal(b, &mp); err != nil {
		return nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	g := mp.GetGraph()
	if g == nil || len(g.GetOutput()) == 0 {
		return nil, errors.New("not an ONNX model: no graph with outputs")
	}
	c := &compiler{ids: make(map[string]int), threads: o.Threads}
	mlOnly := false
	for _, o := range mp.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			c.opset = o.GetVersion()
		}
		if o.GetDomain() == mlDomain {
			mlOnly = true
		}
	}
	if c.opset == 0 && mlOnly {
		c.opset = maxOpset // an ai.onnx.ml-only model: no default-domain node may appear
		for _, p := range g.GetNode() {
			if p.GetDomain() != mlDomain {
				return nil, errors.New("the model imports no default-domain operator set but uses its operators")
			}
		}
	}
	if c.opset < minOpset || c.opset > maxOpset {
		return nil, fmt.Errorf("ONNX operator set %d is not supported (supported: %d to %d)", c.opset, minOpset, maxOpset)
	}

	// Give every value an id: initializers, then inputs, then node outputs.
	for _, t := range g.GetInitializer() {
		id, err := c.newValue(t.GetName())
		if err != nil {
			return nil, fmt.Errorf("initializer: %w", err)
		}
		v, err := decodeTensor(t)
		if err != nil {
			c.constErr[id] = fmt.Errorf("initializer %q: %w", t.GetName(), err)
			continue
		}
		c.consts[id] = v
		c.dtypes[id] = v.dt
	}
	m := &Model{inputIndex: make(map[string]int), outputIndex: make(map[string]int)}
	for _, vi := range g.GetInput() {
		name := vi.GetName()
		if _, ok := c.ids[name]; ok {
			continue // an initializer listed as an input (IR < 4 style): a constant
		}
		spec, limit, err := inputSpecOf(vi)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		internal, ok := computeType(spec.DType)
		if !ok {
			return nil, fmt.Errorf("input %q has type %s; the runtime accepts float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8 and bool", name, spec.DType)
		}
		id, err := c.newValue(name)
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		c.dtypes[id] = internal
		if limit != 0 {
			if c.unsigned == nil {
				c.unsigned = make(map[int]string)
			}
			c.unsigned[id] = onnxpb.TensorProto_DataType(vi.GetType().GetTensorType().GetElemType()).String()
		}
		m.inputLimit = append(m.inputLimit, limit)
		m.inputIndex[name] = len(m.inputs)
		m.inputs = append(m.inputs, spec)
		m.inputIDs = append(m.inputIDs, id)
		m.inputRound = append(m.inputRound, halfRounder(vi.GetType().GetTensorType().GetElemType()))
	}
	for i, p := range g.GetNode() {
		for _, out := range p.GetOutput() {
			if out == "" {
				continue
			}
			if _, err := c.newValue(out); err != nil {
				return nil, fmt.Errorf("node %q: %w", nodeName(p, i), err)
			}
		}
	}
	c.fold = newState(len(c.names), 0, c.consts, foldLimit)
	c.fold.foldBudget, c.fold.foldMax = o.MaxFoldedBytes, o.MaxFoldedBytes

	order, err := c.topoOrder(g.GetNode())
	if err != nil {
		return nil, err
	}
	for _, i := range order {
		if err := c.compileNode(g.GetNode()[i], i); err != nil {
			return nil, err
		}
	}

	used := make(map[int]bool)
	for _, vi := range g.GetOutput() {
		name := vi.GetName()
		id, ok := c.ids[name]
		if !ok {
			return nil, fmt.Errorf("graph output %q is not produced by any node, input or initializer", name)
		}
		if c.constErr[id] != nil {
			return nil, c.constErr[id]
		}
		if _, dup := m.outputIndex[name]; dup {
			return nil, fmt.Errorf("graph output %q is listed twice", name)
		}
		spec, err := specOf(vi)
		if err != nil && c.zipMaps[id] {
			// ZipMap declares a sequence of maps; it serves its scores tensor.
			spec, err = TensorSpec{Name: name, Shape: []int64{-1, -1}}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", name, err)
		}
		if spec.DType == tensor.Invalid {
			spec.DType = c.dtypes[id]
		}
		if internal, _ := computeType(spec.DType); internal != c.dtypes[id] {
			return nil, fmt.Errorf("output %q is declared %s but the graph computes %s", name, spec.DType, c.dtypes[id])
		}
		m.outputIndex[name] = len(m.outputs)
		m.outputs = append(m.outputs, spec)
		m.outputIDs = append(m.outputIDs, id)
		m.outputRound = append(m.outputRound, halfRounder(vi.GetType().GetTensorType().GetElemType()))
		used[id] = true
	}
	c.fuseLayerNorm(used)
	c.fuseGelu(used)
	c.fuseTransposes(used)
	c.fuse(used)

	m.nodes = c.nodes
	m.consts = c.consts
	m.nvals = len(c.names)
	m.nscratch = c.nscratch
	return m, nil
}

func nodeName(p *onnxpb.NodeProto, i int) string {
	if p.GetName() != "" {
		return p.GetName()
	}
	return fmt.Sprintf("#%d", i)
}

func (c *compiler) newValue(name string) (int, error) {
	if name == "" {
		return 0, errors.New("a value has an empty name")
	}
	if _, ok := c.ids[name]; ok {
		return 0, fmt.Errorf("value %q is defined more than once", name)
	}
	id := len(c.names)
	c.ids[name] = id
	c.names = append(c.names, name)
	c.dtypes = append(c.dtypes, tensor.Invalid)
	c.consts = append(c.consts, nil)
	c.constErr = append(c.constErr, nil)
	return id, nil
}

// topoOrder sorts the nodes so each runs after the nodes producing its
// inputs. ONNX requires files to be sorted already; sorting anyway costs
// little and accepts the files some tools write out of order.
func (c *compiler) topoOrder(nodes []*onnxpb.NodeProto) ([]int, error) {
	producer := make(map[string]int)
	for i, p := range nodes {
		for _, out := range p.GetOutput() {
			if out != "" {
				producer[out] = i
			}
		}
	}
	indeg := make([]int, len(nodes))
	consumers := make([][]int, len(nodes))
	for i, p := range nodes {
		for _, in := range p.GetInput() {
			if in == "" {
				continue
			}
			if _, ok := c.ids[in]; !ok {
				return nil, fmt.Errorf("node %q (%s): input %q is not produced by any node, input or initializer",
					nodeName(p, i), p.GetOpType(), in)
			}
			if j, ok := producer[in]; ok {
				indeg[i]++
				consumers[j] = append(consumers[j], i)
			}
		}
	}
	order := make([]int, 0, len(nodes))
	for i := range nodes {
		if indeg[i] == 0 {
			order = append(order, i)
		}
	}
	for k := 0; k < len(order); k++ {
		for _, j := range consumers[order[k]] {
			indeg[j]--
			if indeg[j] == 0 {
				order = append(order, j)
			}
		}
	}
	if len(order) != len(nodes) {
		return nil, errors.New("graph has a cycle")
	}
	return order, nil
}

func (c *compiler) compileNode(p *onnxpb.NodeProto, idx int) error {
	n := &node{name: nodeName(p, idx), op: p.GetOpType()}
	table := ops
	if d := p.GetDomain(); d == mlDomain {
		table = mlOps
	} else if d != "" && d != "ai.onnx" {
		return fmt.Errorf("node %q: unsupported operator %s.%s (only the default ONNX domain and ai.onnx.ml are supported)", n.name, d, n.op)
	}
	opc, ok := table[n.op]
	if !ok {
		return fmt.Errorf("node %q: unsupported operator %s (supported: %s)", n.name, n.op, supportedOps())
	}
	for i, in := range p.GetInput() {
		id := -1
		if in != "" {
			id = c.ids[in]
			if c.constErr[id] != nil {
				return fmt.Errorf("node %q (%s): %w", n.name, n.op, c.constErr[id])
			}
			if et, ok := c.unsigned[id]; ok && !unsignedReader(n.op, i) {
				return fmt.Errorf("node %q (%s): input %q is %s, which is accepted only as Pow's exponent or Cast's input (computed as int64, other operators would not wrap around as %s does)", n.name, n.op, in, et, et)
			}
		}
		n.in = append(n.in, id)
	}
	for _, out := range p.GetOutput() {
		id := -1
		if out != "" {
			id = c.ids[out]
		}
		n.out = append(n.out, id)
	}
	x := &nodeCtx{c: c, p: p, n: n, attrs: make(map[string]*onnxpb.AttributeProto)}
	for _, a := range p.GetAttribute() {
		x.attrs[a.GetName()] = a
	}
	if c.opset < 7 {
		if err := checkLegacy(x); err != nil {
			return fmt.Errorf("node %q (%s): %w", n.name, n.op, err)
		}
	}
	k, outDT, err := opc(x)
	if err != nil {
		return fmt.Errorf("node %q (%s): %w", n.name, n.op, err)
	}
	for i, id := range n.out {
		if id < 0 {
			continue
		}
		if i >= len(outDT) {
			return fmt.Errorf("node %q (%s): output %d is not supported", n.name, n.op, i)
		}
		c.dtypes[id] = outDT[i]
	}
	n.k = k

	allConst := true
	for _, id := range n.in {
		if id >= 0 && c.consts[id] == nil {
			allConst = false
			break
		}
	}
	if !allConst {
		c.nodes = append(c.nodes, n)
		return nil
	}
	// Every input is known now: compute the outputs once, here.
	if err := c.runFold(n); err != nil {
		return fmt.Errorf("node %q (%s): %w", n.name, n.op, err)
	}
	for _, id := range n.out {
		if id < 0 {
			continue
		}
		v := c.fold.vals[id]
		c.consts[id] = &value{dt: v.dt, shape: slices.Clone(v.shape), f: v.f, i: v.i}
	}
	return nil
}

func (c *compiler) runFold(n *node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	for len(c.fold.scratch) < c.nscratch {
		c.fold.scratch = append(c.fold.scratch, nil)
	}
	return n.k.run(c.fold, n)
}

// Supports reports whether the runtime implements operator op of the given
// domain ("" or "ai.onnx" for the default one). A model whose operators are all
// supported may still be refused for an attribute, data type or shape the
// kernel does not handle; Load says which.
func Supports(domain, op string) bool {
	switch domain {
	case "", "ai.onnx":
		_, ok := ops[op]
		return ok
	case mlDomain:
		_, ok := mlOps[op]
		return ok
	}
	return false
}

func supportedOps() string {
	names := make([]string, 0, len(ops))
	for k := range ops {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// fuse merges a dense layer (Gemm, or MatMul by a constant matrix) with a
// following bias Add and activation when nothing else reads the intermediate
// values: the activation then runs on rows still in cache, and the run skips
// two passes over memory and two buffers.
func (c *compiler) fuse(graphOut map[int]bool) {
	uses := make(map[int]int)
	consumer := make(map[int]int)
	for i, n := range c.nodes {
		for _, id := range n.in {
			if id >= 0 {
				uses[id]++
				consumer[id] = i
			}
		}
	}
	removed := make([]bool, len(c.nodes))
	for _, n := range c.nodes {
		g, ok := n.k.(absorber)
		if !ok {
			continue
		}
		for {
			out := n.out[0]
			if uses[out] != 1 || graphOut[out] {
				break
			}
			j := consumer[out]
			next := c.nodes[j]
			if !g.absorb(next, out, c.consts) {
				break
			}
			n.op += "+" + next.op
			n.out = next.out
			removed[j] = true
		}
	}
	kept := c.nodes[:0]
	for i, n := range c.nodes {
		if !removed[i] {
			kept = append(kept, n)
		}
	}
	c.nodes = kept
}

// absorber is a kernel that can take over the node consuming its output
// (a bias, an activation): absorb reports whether it did.
type absorber interface {
	kernel
	absorb(next *node, out int, consts []*value) bool
}

// nodeCtx is what an operator's compile function sees of its node.
type nodeCtx struct {
	c     *compiler
	p     *onnxpb.NodeProto
	n     *node
	attrs map[string]*onnxpb.AttributeProto
}

type opCompiler func(x *nodeCtx) (kernel, []tensor.DType, error)

func (x *nodeCtx) has(i int) bool { return i < len(x.n.in) && x.n.in[i] >= 0 }

// dtype of input i, Invalid if absent.
func (x *nodeCtx) dtype(i int) tensor.DType {
	if !x.has(i) {
		return tensor.Invalid
	}
	return x.c.dtypes[x.n.in[i]]
}

// konst returns input i's value if it is known at load time, else nil.
func (x *nodeCtx) konst(i int) *value {
	if !x.has(i) {
		return nil
	}
	return x.c.consts[x.n.in[i]]
}

// inputs checks that the node has between min and max inputs, the first min
// of them present.
func (x *nodeCtx) inputs(min, max int) error {
	if len(x.n.in) < min || (max >= 0 && len(x.n.in) > max) {
		if min == max {
			return fmt.Errorf("has %d inputs, want %d", len(x.n.in), min)
		}
		return fmt.Errorf("has %d inputs, want %d to %d", len(x.n.in), min, max)
	}
	for i := range min {
		if !x.has(i) {
			return fmt.Errorf("required input %d is missing", i)
		}
	}
	return nil
}

// types checks that each listed present input has one of the allowed dtypes.
func (x *nodeCtx) types(allowed []tensor.DType, idx ...int) error {
	for _, i := range idx {
		if !x.has(i) {
			continue
		}
		if dt := x.dtype(i); !slices.Contains(allowed, dt) {
			return fmt.Errorf("input %d has type %s, which this operator does not support here", i, dt)
		}
	}
	return nil
}

var (
	floatOnly  = []tensor.DType{tensor.Float}
	int64Only  = []tensor.DType{tensor.Int64}
	floatOrInt = []tensor.DType{tensor.Float, tensor.Int64}
)

func (x *nodeCtx) attr(name string, want onnxpb.AttributeProto_AttributeType) (*onnxpb.AttributeProto, error) {
	a, ok := x.attrs[name]
	if !ok {
		return nil, nil
	}
	// Old exporters leave the type unset and only fill the value field.
	if a.GetType() != want && a.GetType() != onnxpb.AttributeProto_UNDEFINED {
		return nil, fmt.Errorf("attribute %s is %s, want %s", name, a.GetType(), want)
	}
	return a, nil
}

func (x *nodeCtx) intAttr(name string, def int64) (int64, error) {
	a, err := x.attr(name, onnxpb.AttributeProto_INT)
	if a == nil || err != nil {
		return def, err
	}
	return a.GetI(), nil
}

func (x *nodeCtx) floatAttr(name string, def float32) (float32, error) {
	a, err := x.attr(name, onnxpb.AttributeProto_FLOAT)
	if a == nil || err != nil {
		return def, err
	}
	return a.GetF(), nil
}

func (x *nodeCtx) intsAttr(name string) ([]int64, bool, error) {
	a, err := x.attr(name, onnxpb.AttributeProto_INTS)
	if a == nil || err != nil {
		return nil, false, err
	}
	return a.GetInts(), true, nil
}

func (x *nodeCtx) newScratch() int {
	x.c.nscratch++
	return x.c.nscratch - 1
}

// inputSpecOf is specOf for a graph input, which may also be declared UINT32
// or UINT64: such an input is int64 in the signature (as bfloat16 is float32)
// and its values must lie in [0, limit], limit being the largest value of the
// declared type that int64 holds (0 for any other type: no check).
func inputSpecOf(vi *onnxpb.ValueInfoProto) (TensorSpec, int64, error) {
	var limit int64
	switch onnxpb.TensorProto_DataType(vi.GetType().GetTensorType().GetElemType()) {
	case onnxpb.TensorProto_UINT32:
		limit = math.MaxUint32
	case onnxpb.TensorProto_UINT64:
		limit = math.MaxInt64
	default:
		spec, err := specOf(vi)
		return spec, 0, err
	}
	vi = proto.Clone(vi).(*onnxpb.ValueInfoProto)
	vi.GetType().GetTensorType().ElemType = int32(onnxpb.TensorProto_INT64)
	spec, err := specOf(vi)
	return spec, limit, err
}

// unsignedReader reports whether input i of an op may be a UINT32/UINT64
// graph input carried as int64: where only its value matters, not unsigned
// arithmetic on it.
func unsignedReader(op string, i int) bool {
	return (op == "Pow" && i == 1) || (op == "Cast" && i == 0)
}

// specOf turns a graph input/output declaration into a TensorSpec.
func specOf(vi *onnxpb.ValueInfoProto) (TensorSpec, error) {
	spec := TensorSpec{Name: vi.GetName()}
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		if vi.GetType() != nil && vi.GetType().GetValue() != nil {
			return spec, errors.New("only tensor values are supported")
		}
		return spec, nil // undeclared type: filled in from the graph for outputs
	}
	if tt.GetElemType() != 0 {
		dt, ok := dtypeOf(tt.GetElemType())
		if !ok {
			return spec, fmt.Errorf("element type %s is not supported", onnxpb.TensorProto_DataType(tt.GetElemType()))
		}
		spec.DType = dt
		if tt.GetElemType() == int32(onnxpb.TensorProto_FLOAT16) {
			// DT_HALF to clients; bfloat16 stays float32 (half.go).
			spec.DType = tensor.Half
		}
	}
	if sh := tt.GetShape(); sh != nil {
		spec.Shape = make([]int64, len(sh.GetDim()))
		for i, d := range sh.GetDim() {
			spec.Shape[i] = -1
			if v, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && v.DimValue >= 0 {
				spec.Shape[i] = v.DimValue
			}
		}
	}
	return spec, nil
}

// dtypeOf maps ONNX element types to infergate's (TensorFlow-numbered) ones.
func dtypeOf(et int32) (tensor.DType, bool) {
	switch onnxpb.TensorProto_DataType(et) {
	case onnxpb.TensorProto_FLOAT:
		return tensor.Float, true
	case onnxpb.TensorProto_DOUBLE:
		return tensor.Double, true
	case onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
		// float32 to clients, rounded at the boundary (half.go)
		return tensor.Float, true
	case onnxpb.TensorProto_INT32:
		return tensor.Int32, true
	case onnxpb.TensorProto_INT64:
		return tensor.Int64, true
	case onnxpb.TensorProto_UINT8:
		return tensor.Uint8, true
	case onnxpb.TensorProto_INT8:
		return tensor.Int8, true
	case onnxpb.TensorProto_INT16:
		return tensor.Int16, true
	case onnxpb.TensorProto_BOOL:
		return tensor.Bool, true
	case onnxpb.TensorProto_STRING:
		return tensor.String, true
	}
	return tensor.Invalid, false
}

// computeType is the dtype the runtime computes a value of type dt in: float32
// for floating point, int64 for integers and bools. Graph inputs and outputs
// keep their declared types and are converted at the boundary.
func computeType(dt tensor.DType) (tensor.DType, bool) {
	switch dt {
	case tensor.Float, tensor.Double, tensor.Half:
		return tensor.Float, true
	case tensor.Int64, tensor.Int32, tensor.Int16, tensor.Int8, tensor.Uint8, tensor.Bool:
		return tensor.Int64, true
	}
	return tensor.Invalid, false
}

// decodeTensor reads a TensorProto into the compute types: float32 and
// float64 data as float32, integer and bool data as int64.
func decodeTensor(t *onnxpb.TensorProto) (*value, error) {
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return nil, errors.New("data stored in an external file is not supported")
	}
	if t.GetSegment() != nil {
		return nil, errors.New("segmented tensors are not supported")
	}
	n64, err := tensor.NumElements(t.GetDims())
	if err != nil {
		return nil, err
	}
	n := int(n64)
	v := &value{shape: make([]int, len(t.GetDims()))}
	for i, d := range t.GetDims() {
		v.shape[i] = int(d)
	}
	raw := t.GetRawData()
	switch dt := onnxpb.TensorProto_DataType(t.GetDataType()); dt {
	case onnxpb.TensorProto_FLOAT:
		v.dt = tensor.Float
		switch {
		case len(raw) > 0 || (n > 0 && len(t.GetFloatData()) == 0):
			if len(raw) != 4*n {
				return nil, fmt.Errorf("shape %v needs %d bytes of float32, raw_data has %d", v.shape, 4*n, len(raw))
			}
			v.f = make([]float32, n)
			for i := range v.f {
				v.f[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		default:
			if len(t.GetFloatData()) != n {
				return nil, fmt.Errorf("shape %v needs %d values, float_data has %d", v.shape, n, len(t.GetFloatData()))
			}
			v.f = slices.Clone(t.GetFloatData())
			if v.f == nil {
				v.f = []float32{}
			}
		}
	case onnxpb.TensorProto_INT64:
		v.dt = tensor.Int64
		switch {
		case len(raw) > 0 || (n > 0 && len(t.GetInt64Data()) == 0):
			if len(raw) != 8*n {
				return nil, fmt.Errorf("shape %v needs %d bytes of int64, raw_data has %d", v.shape, 8*n, len(raw))
			}
			v.i = make([]int64, n)
			for i := range v.i {
				v.i[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
			}
		default:
			if len(t.GetInt64Data()) != n {
				return nil, fmt.Errorf("shape %v needs %d values, int64_data has %d", v.shape, n, len(t.GetInt64Data()))
			}
			v.i = slices.Clone(t.GetInt64Data())
			if v.i == nil {
				v.i = []int64{}
			}
		}
	case onnxpb.TensorProto_DOUBLE:
		v.dt = tensor.Float
		// Allocate only once the data is known to be there: the dims alone
		// (a few bytes) may ask for gigabytes.
		switch {
		case len(raw) > 0 || (n > 0 && len(t.GetDoubleData()) == 0):
			if len(raw) != 8*n {
				return nil, fmt.Errorf("shape %v needs %d bytes of float64, raw_data has %d", v.shape, 8*n, len(raw))
			}
			v.f = make([]float32, n)
			for i := range v.f {
				v.f[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
			}
		default:
			if len(t.GetDoubleData()) != n {
				return nil, fmt.Errorf("shape %v needs %d values, double_data has %d", v.shape, n, len(t.GetDoubleData()))
			}
			v.f = make([]float32, n)
			for i, x := range t.GetDoubleData() {
				v.f[i] = float32(x)
			}
		}
	case onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
		// Widened exactly; the 16-bit patterns are in raw_data or, one per
		// element, in int32_data.
		widen := tensor.HalfFromBits
		if dt == onnxpb.TensorProto_BFLOAT16 {
			widen = bfloat16ToFloat32
		}
		v.dt = tensor.Float
		switch {
		case len(raw) > 0 || (n > 0 && len(t.GetInt32Data()) == 0):
			if len(raw) != 2*n {
				return nil, fmt.Errorf("shape %v needs %d bytes of %s, raw_data has %d", v.shape, 2*n, dt, len(raw))
			}
			v.f = make([]float32, n)
			for i := range v.f {
				v.f[i] = widen(binary.LittleEndian.Uint16(raw[2*i:]))
			}
		default:
			if len(t.GetInt32Data()) != n {
				return nil, fmt.Errorf("shape %v needs %d values, int32_data has %d", v.shape, n, len(t.GetInt32Data()))
			}
			v.f = make([]float32, n)
			for i, x := range t.GetInt32Data() {
				v.f[i] = widen(uint16(x))
			}
		}
	case onnxpb.TensorProto_INT32, onnxpb.TensorProto_INT16, onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL:
		size := 1
		switch dt {
		case onnxpb.TensorProto_INT32:
			size = 4
		case onnxpb.TensorProto_INT16:
			size = 2
		}
		v.dt = tensor.Int64
		switch {
		case len(raw) > 0 || (n > 0 && len(t.GetInt32Data()) == 0):
			if len(raw) != size*n {
				return nil, fmt.Errorf("shape %v needs %d bytes of %s, raw_data has %d", v.shape, size*n, dt, len(raw))
			}
			v.i = make([]int64, n)
			for i := range v.i {
				switch {
				case size == 4:
					v.i[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
				case size == 2:
					v.i[i] = int64(int16(binary.LittleEndian.Uint16(raw[2*i:])))
				case dt == onnxpb.TensorProto_INT8:
					v.i[i] = int64(int8(raw[i]))
				default:
					v.i[i] = int64(raw[i])
				}
			}
		default:
			if len(t.GetInt32Data()) != n {
				return nil, fmt.Errorf("shape %v needs %d values, int32_data has %d", v.shape, n, len(t.GetInt32Data()))
			}
			v.i = make([]int64, n)
			for i, x := range t.GetInt32Data() {
				v.i[i] = int64(x)
			}
		}
	default:
		return nil, fmt.Errorf("element type %s is not supported (float32, float64, float16, bfloat16, integers and bool only)", dt)
	}
	return v, nil
}
