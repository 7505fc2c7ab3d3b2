package tensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/infergate/infergate/proto/tfpb"
)

// ErrDecode marks every error FromProto returns, so a server can answer
// INVALID_ARGUMENT for all of them with one errors.Is.
var ErrDecode = errors.New("invalid TensorProto")

// maxDecodeBytes bounds the Go memory of one decoded tensor. MaxElements alone
// is not enough: a few bytes of TensorProto (shape [268435456], one string_val)
// expand, by TF's repeat-last rule, into gigabytes of slice headers. It is a
// variable only so the fuzz test can lower it and stay fast.
var maxDecodeBytes int64 = 1 << 30

// littleEndian reports the host byte order. On little-endian hosts (amd64,
// arm64) tensor_content is the in-memory layout of the Go slice and converts
// with one memmove.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func decodeErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrDecode, fmt.Sprintf(format, args...))
}

// ShapeFromProto converts the shape of a tensor in a request: every dim known
// and non-negative, rank known. A nil shape is a scalar (TF's reading of a
// missing tensor_shape). Signature shapes, which may hold -1, are not read
// with this function.
func ShapeFromProto(p *tfpb.TensorShapeProto) ([]int64, error) {
	if p.GetUnknownRank() {
		return nil, decodeErr("tensor_shape has unknown_rank; a tensor needs a known shape")
	}
	dims := p.GetDim()
	shape := make([]int64, len(dims))
	for i, d := range dims {
		if d.GetSize() < 0 {
			return nil, decodeErr("tensor_shape dim %d is %d; a tensor needs non-negative dims", i, d.GetSize())
		}
		shape[i] = d.GetSize()
	}
	return shape, nil
}

// ShapeToProto converts dims as they are, -1 included, so it serves both
// tensors and signature shapes. Unknown rank is the caller's to mark.
func ShapeToProto(shape []int64) *tfpb.TensorShapeProto {
	p := &tfpb.TensorShapeProto{Dim: make([]*tfpb.TensorShapeProto_Dim, len(shape))}
	// One backing array for all dims instead of one allocation per dim.
	dims := make([]tfpb.TensorShapeProto_Dim, len(shape))
	for i, d := range shape {
		dims[i].Size = d
		p.Dim[i] = &dims[i]
	}
	return p
}

// FromProto decodes a TensorProto with TensorFlow's rules: a non-empty
// tensor_content wins (row-major little-endian, exactly elements × type size
// bytes); otherwise the typed field, where no values mean zeros, fewer values
// than the shape needs repeat the last one and extra values are ignored.
// DT_STRING always reads string_val. DT_HALF reads 2-byte little-endian
// content or half_val, whose int32s carry the bit patterns in their low 16
// bits (TensorFlow truncates each to uint16; so does FromProto). The result
// never shares numeric memory with p; string values do share their bytes
// with p.StringVal.
// Every error wraps ErrDecode.
func FromProto(p *tfpb.TensorProto) (*Tensor, error) {
	if p == nil {
		return nil, decodeErr("nil tensor")
	}
	dt := DType(p.Dtype)
	if !dt.Supported() {
		return nil, decodeErr("unsupported dtype %s", dtypeName(p.Dtype))
	}
	shape, err := ShapeFromProto(p.TensorShape)
	if err != nil {
		return nil, err
	}
	n64, err := NumElements(shape)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if n64 > 0 && int64(dt.GoSize()) > maxDecodeBytes/n64 {
		return nil, decodeErr("%s tensor of shape %s needs more than %d bytes", dt, ShapeString(shape), maxDecodeBytes)
	}
	n := int(n64)
	t := &Tensor{DType: dt, Shape: shape}

	if content := p.TensorContent; len(content) > 0 && dt != String {
		if want := n64 * int64(dt.Size()); int64(len(content)) != want {
			return nil, decodeErr("tensor_content has %d bytes, %s shape %s needs %d (%d elements × %d bytes)",
				len(content), dt, ShapeString(shape), want, n, dt.Size())
		}
		switch dt {
		case Float:
			t.Data = fromContent[float32](content, n)
		case Double:
			t.Data = fromContent[float64](content, n)
		case Int32:
			t.Data = fromContent[int32](content, n)
		case Int64:
			t.Data = fromContent[int64](content, n)
		case Uint8:
			t.Data = fromContent[uint8](content, n)
		case Int16:
			t.Data = fromContent[int16](content, n)
		case Int8:
			t.Data = fromContent[int8](content, n)
		case Half:
			v := make([]float32, n)
			for i := range v {
				v[i] = HalfFromBits(binary.LittleEndian.Uint16(content[2*i:]))
			}
			t.Data = v
		case Bool:
			// Not a memmove: a Go bool must hold exactly 0 or 1.
			v := make([]bool, n)
			for i, b := range content {
				v[i] = b != 0
			}
			t.Data = v
		}
		return t, nil
	}

	switch dt {
	case Float:
		t.Data = fromVals(p.FloatVal, n)
	case Double:
		t.Data = fromVals(p.DoubleVal, n)
	case Int32:
		t.Data = fromVals(p.IntVal, n)
	case Int64:
		t.Data = fromVals(p.Int64Val, n)
	case Bool:
		t.Data = fromVals(p.BoolVal, n)
	case String:
		t.Data = fromVals(p.StringVal, n)
	case Uint8:
		t.Data = fromInts[uint8](p.IntVal, n)
	case Int16:
		t.Data = fromInts[int16](p.IntVal, n)
	case Int8:
		t.Data = fromInts[int8](p.IntVal, n)
	case Half:
		v := make([]float32, n)
		k := min(len(p.HalfVal), n)
		for i := range k {
			v[i] = HalfFromBits(uint16(p.HalfVal[i]))
		}
		if k > 0 && k < n {
			fillFrom(v, k)
		}
		t.Data = v
	}
	return t, nil
}

func dtypeName(d tfpb.DataType) string {
	if s, ok := tfpb.DataType_name[int32(d)]; ok {
		return s
	}
	return fmt.Sprintf("DT_%d", int32(d))
}

// ToProto encodes t. With content, numeric types go into tensor_content (one
// bulk copy; what TF Serving clients send for speed); otherwise into the typed
// field, as TF Serving answers by default. DT_STRING always uses string_val.
// DT_HALF values are rounded to halves and sent as their bit patterns: in
// half_val (zero-extended into int32s) or 2-byte little-endian content.
// The result shares no numeric memory with t; string values share their bytes.
func ToProto(t *Tensor, content bool) (*tfpb.TensorProto, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	p := &tfpb.TensorProto{Dtype: tfpb.DataType(t.DType), TensorShape: ShapeToProto(t.Shape)}
	if t.DType == Half {
		d := t.Data.([]float32)
		if content {
			if len(d) > 0 {
				b := make([]byte, 2*len(d))
				for i, x := range d {
					binary.LittleEndian.PutUint16(b[2*i:], HalfBits(x))
				}
				p.TensorContent = b
			}
			return p, nil
		}
		p.HalfVal = make([]int32, len(d))
		for i, x := range d {
			p.HalfVal[i] = int32(HalfBits(x))
		}
		return p, nil
	}
	if content {
		switch d := t.Data.(type) {
		case []float32:
			p.TensorContent = toContent(d)
		case []float64:
			p.TensorContent = toContent(d)
		case []int32:
			p.TensorContent = toContent(d)
		case []int64:
			p.TensorContent = toContent(d)
		case []uint8:
			p.TensorContent = toContent(d)
		case []int16:
			p.TensorContent = toContent(d)
		case []int8:
			p.TensorContent = toContent(d)
		case []bool:
			b := make([]byte, len(d))
			for i, v := range d {
				if v {
					b[i] = 1
				}
			}
			p.TensorContent = b
		case [][]byte:
			p.StringVal = append([][]byte(nil), d...)
		}
		return p, nil
	}
	switch d := t.Data.(type) {
	case []float32:
		p.FloatVal = append([]float32(nil), d...)
	case []float64:
		p.DoubleVal = append([]float64(nil), d...)
	case []int32:
		p.IntVal = append([]int32(nil), d...)
	case []int64:
		p.Int64Val = append([]int64(nil), d...)
	case []bool:
		p.BoolVal = append([]bool(nil), d...)
	case [][]byte:
		p.StringVal = append([][]byte(nil), d...)
	case []uint8:
		p.IntVal = toInts(d)
	case []int16:
		p.IntVal = toInts(d)
	case []int8:
		p.IntVal = toInts(d)
	}
	return p, nil
}

type fixedSize interface {
	~float32 | ~float64 | ~int32 | ~int64 | ~uint8 | ~int16 | ~int8
}

// fromContent converts len(b)/sizeof(T) == n little-endian values.
func fromContent[T fixedSize](b []byte, n int) []T {
	out := make([]T, n)
	if n == 0 {
		return out
	}
	size := int(unsafe.Sizeof(out[0]))
	if littleEndian || size == 1 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), n*size), b)
		return out
	}
	for i := range out {
		p := unsafe.Pointer(&out[i])
		switch size {
		case 2:
			*(*uint16)(p) = binary.LittleEndian.Uint16(b[i*2:])
		case 4:
			*(*uint32)(p) = binary.LittleEndian.Uint32(b[i*4:])
		case 8:
			*(*uint64)(p) = binary.LittleEndian.Uint64(b[i*8:])
		}
	}
	return out
}

// toContent is fromContent's inverse.
func toContent[T fixedSize](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	size := int(unsafe.Sizeof(v[0]))
	if littleEndian || size == 1 {
		// append to nil skips zeroing the new buffer that make+copy would pay.
		return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*size)...)
	}
	b := make([]byte, len(v)*size)
	for i := range v {
		p := unsafe.Pointer(&v[i])
		switch size {
		case 2:
			binary.LittleEndian.PutUint16(b[i*2:], *(*uint16)(p))
		case 4:
			binary.LittleEndian.PutUint32(b[i*4:], *(*uint32)(p))
		case 8:
			binary.LittleEndian.PutUint64(b[i*8:], *(*uint64)(p))
		}
	}
	return b
}

// fromVals applies TF's typed-field rule: zeros when vals is empty, the last
// value repeated when short, extra values ignored.
func fromVals[T any](vals []T, n int) []T {
	out := make([]T, n)
	k := copy(out, vals)
	if k > 0 && k < n {
		fillFrom(out, k)
	}
	return out
}

// fromInts is fromVals for the small integer types carried in int_val; values
// out of range wrap, as TF's static_cast does.
func fromInts[T ~uint8 | ~int16 | ~int8](vals []int32, n int) []T {
	out := make([]T, n)
	k := min(len(vals), n)
	for i := range k {
		out[i] = T(vals[i])
	}
	if k > 0 && k < n {
		fillFrom(out, k)
	}
	return out
}

// fillFrom sets out[k:] to out[k-1], doubling copies so a hostile
// one-value, huge-shape tensor fills at memmove speed.
func fillFrom[T any](out []T, k int) {
	out[k] = out[k-1]
	filled := k + 1
	for filled < len(out) {
		filled += copy(out[filled:], out[k:filled])
	}
}

func toInts[T ~uint8 | ~int16 | ~int8](v []T) []int32 {
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	return out
}

// Equal reports whether a and b have the same dtype, shape and values. NaNs
// compare equal to NaNs so round-trip tests can use it on any input.
func Equal(a, b *Tensor) bool {
	if a.DType != b.DType || len(a.Shape) != len(b.Shape) || a.Len() != b.Len() {
		return false
	}
	for i := range a.Shape {
		if a.Shape[i] != b.Shape[i] {
			return false
		}
	}
	switch x := a.Data.(type) {
	case []float32:
		y, ok := b.Data.([]float32)
		if !ok {
			return false
		}
		for i := range x {
			if x[i] != y[i] && !(x[i] != x[i] && y[i] != y[i]) {
				return false
			}
		}
		return true
	case []float64:
		y, ok := b.Data.([]float64)
		if !ok {
			return false
		}
		for i := range x {
			if x[i] != y[i] && !(math.IsNaN(x[i]) && math.IsNaN(y[i])) {
				return false
			}
		}
		return true
	case []int32:
		return eqSlice(x, b.Data)
	case []int64:
		return eqSlice(x, b.Data)
	case []bool:
		return eqSlice(x, b.Data)
	case []uint8:
		return eqSlice(x, b.Data)
	case []int16:
		return eqSlice(x, b.Data)
	case []int8:
		return eqSlice(x, b.Data)
	case [][]byte:
		y, ok := b.Data.([][]byte)
		if !ok {
			return false
		}
		for i := range x {
			if string(x[i]) != string(y[i]) {
				return false
			}
		}
		return true
	}
	return false
}

func eqSlice[T comparable](x []T, other any) bool {
	y, ok := other.([]T)
	if !ok || len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}
