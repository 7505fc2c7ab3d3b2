package onnxrt

import (
	"fmt"
	"strconv"

	"github.com/infergate/infergate/inference/tensor"
)

// value is a tensor inside the interpreter: float32 for compute, int64 for
// shape arithmetic. Exactly one of f and i is used, as dt says.
type value struct {
	dt    tensor.DType
	shape []int
	f     []float32
	i     []int64
}

func (v *value) numel() int {
	if v.dt == tensor.Int64 {
		return len(v.i)
	}
	return len(v.f)
}

// export copies the value into a tensor of type dt (the declared type of a
// graph output, which computes as float32 or int64) that the caller owns.
func (v *value) export(dt tensor.DType) *tensor.Tensor {
	shape := make([]int64, len(v.shape))
	for i, d := range v.shape {
		shape[i] = int64(d)
	}
	t := &tensor.Tensor{DType: dt, Shape: shape}
	switch dt {
	case tensor.Int64:
		t.Data = append(make([]int64, 0, len(v.i)), v.i...)
	case tensor.Double:
		t.Data = convertSlice[float64](v.f)
	case tensor.Int32:
		t.Data = convertSlice[int32](v.i)
	case tensor.Int16:
		t.Data = convertSlice[int16](v.i)
	case tensor.Int8:
		t.Data = convertSlice[int8](v.i)
	case tensor.Uint8:
		t.Data = convertSlice[uint8](v.i)
	case tensor.Bool:
		b := make([]bool, len(v.i))
		for i, x := range v.i {
			b[i] = x != 0
		}
		t.Data = b
	default:
		t.Data = append(make([]float32, 0, len(v.f)), v.f...)
	}
	return t
}

type anyNumber interface {
	~float32 | ~float64 | ~int64 | ~int32 | ~int16 | ~int8 | ~uint8
}

func convertSlice[D, S anyNumber](s []S) []D {
	d := make([]D, len(s))
	for i, x := range s {
		d[i] = D(x)
	}
	return d
}

func convertInto[D, S anyNumber](d []D, s []S) {
	for i, x := range s {
		d[i] = D(x)
	}
}

// state is what one Run needs besides the model: a slot per value and the
// buffers behind them. States are pooled, so buffers are reused call after
// call; kernels must therefore write every element of their outputs.
type state struct {
	vals    []value
	bufF    [][]float32
	bufI    [][]int64
	scratch [][]float32
	limit   int // most elements any one value may have
	// foldBudget is the bytes constant folding may still allocate (the
	// load-time state only; foldMax > 0 turns it on): one value is bounded
	// by limit, the sum by this.
	foldBudget, foldMax int64
}

// charge takes n elements of size bytes from the folding budget.
func (st *state) charge(n, size int) error {
	if st.foldMax <= 0 {
		return nil
	}
	b := int64(n) * int64(size)
	if b > st.foldBudget {
		return fmt.Errorf("constant folding needs more than %d bytes in total (the model's constants fold into larger tensors than the limit: "+
			"LoadOptions.MaxFoldedBytes, model_server.max_folded_constant_bytes)", st.foldMax)
	}
	st.foldBudget -= b
	return nil
}

func newState(nvals, nscratch int, consts []*value, limit int) *state {
	st := &state{
		vals:    make([]value, nvals),
		bufF:    make([][]float32, nvals),
		bufI:    make([][]int64, nvals),
		scratch: make([][]float32, nscratch),
		limit:   limit,
	}
	for id, c := range consts {
		if c != nil {
			st.vals[id] = *c
		}
	}
	return st
}

// held is the number of elements the state's buffers keep.
func (st *state) held() int {
	n := 0
	for _, b := range st.bufF {
		n += cap(b)
	}
	for _, b := range st.bufI {
		n += cap(b)
	}
	for _, b := range st.scratch {
		n += cap(b)
	}
	return n
}

// in returns a node's k-th input, nil if it is absent.
func (st *state) in(nd *node, k int) *value {
	if k >= len(nd.in) || nd.in[k] < 0 {
		return nil
	}
	return &st.vals[nd.in[k]]
}

// setInput makes the caller's tensor value id: float32 and int64 data is
// used in place, other types are converted into the value's buffer.
func (st *state) setInput(id int, t *tensor.Tensor) error {
	v := &st.vals[id]
	sh := st.outShape(id, len(t.Shape))
	for i, d := range t.Shape {
		sh[i] = int(d)
	}
	v.f, v.i = nil, nil
	switch d := t.Data.(type) {
	case []float32:
		v.dt, v.f = tensor.Float, d
		return nil
	case []int64:
		v.dt, v.i = tensor.Int64, d
		return nil
	case []float64:
		f, err := st.allocF(id)
		if err != nil {
			return err
		}
		convertInto(f, d)
		return nil
	}
	o, err := st.allocI(id)
	if err != nil {
		return err
	}
	switch d := t.Data.(type) {
	case []int32:
		convertInto(o, d)
	case []int16:
		convertInto(o, d)
	case []int8:
		convertInto(o, d)
	case []uint8:
		convertInto(o, d)
	case []bool:
		for i, x := range d {
			o[i] = 0
			if x {
				o[i] = 1
			}
		}
	default:
		return fmt.Errorf("data of type %T is not supported", t.Data)
	}
	return nil
}

// outShape returns the shape of value id resized to rank, for a kernel to
// fill in before allocF/allocI/alias. The slice is the slot's own storage.
func (st *state) outShape(id, rank int) []int {
	v := &st.vals[id]
	if cap(v.shape) < rank {
		v.shape = make([]int, rank)
	}
	v.shape = v.shape[:rank]
	return v.shape
}

// setShape copies shape into value id's slot.
func (st *state) setShape(id int, shape []int) {
	copy(st.outShape(id, len(shape)), shape)
}

func (st *state) count(id int) (int, error) {
	n := 1
	for _, d := range st.vals[id].shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", st.vals[id].shape)
		}
		if d != 0 && n > st.limit/d {
			return 0, fmt.Errorf("result of shape %v has more than %d elements", st.vals[id].shape, st.limit)
		}
		n *= d
	}
	return n, nil
}

// allocF gives value id a float32 buffer sized for the shape already set.
func (st *state) allocF(id int) ([]float32, error) {
	n, err := st.count(id)
	if err != nil {
		return nil, err
	}
	if cap(st.bufF[id]) < n {
		if err := st.charge(n, 4); err != nil {
			return nil, err
		}
		st.bufF[id] = make([]float32, n)
	}
	v := &st.vals[id]
	v.dt, v.f, v.i = tensor.Float, st.bufF[id][:n], nil
	return v.f, nil
}

// allocI gives value id an int64 buffer sized for the shape already set.
func (st *state) allocI(id int) ([]int64, error) {
	n, err := st.count(id)
	if err != nil {
		return nil, err
	}
	if cap(st.bufI[id]) < n {
		if err := st.charge(n, 8); err != nil {
			return nil, err
		}
		st.bufI[id] = make([]int64, n)
	}
	v := &st.vals[id]
	v.dt, v.f, v.i = tensor.Int64, nil, st.bufI[id][:n]
	return v.i, nil
}

// alloc allocates value id with dtype dt.
func (st *state) alloc(id int, dt tensor.DType) (f []float32, i []int64, err error) {
	if dt == tensor.Int64 {
		i, err = st.allocI(id)
		return nil, i, err
	}
	f, err = st.allocF(id)
	return f, nil, err
}

// alias makes value id share src's data; the shape must already be set and
// hold the same number of elements. Kernels never write their inputs, so
// sharing is safe.
func (st *state) alias(id int, src *value) error {
	v := &st.vals[id]
	n, err := st.count(id)
	if err != nil {
		return err
	}
	if n != src.numel() {
		return fmt.Errorf("cannot view %d elements as shape %v", src.numel(), v.shape)
	}
	v.dt, v.f, v.i = src.dt, src.f, src.i
	return nil
}

// scratchF returns scratch buffer k with n elements (contents undefined).
func (st *state) scratchF(k, n int) []float32 {
	if cap(st.scratch[k]) < n {
		st.scratch[k] = make([]float32, n)
	}
	return st.scratch[k][:n]
}

// intsString formats dims as [2,3] without fmt, so formatting a shape held
// in a stack array for an error does not move the array to the heap.
func intsString(v []int) string {
	b := make([]byte, 0, 2+4*len(v))
	b = append(b, '[')
	for i, d := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(d), 10)
	}
	return string(append(b, ']'))
}
