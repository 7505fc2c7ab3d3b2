// Package tensor is infergate's in-memory tensor: a dtype, a shape and a flat
// row-major slice of Go values. It is what the pipeline builds from requests,
// what the model runtime consumes and produces, and what the TensorProto codec
// (codec.go) converts to and from TensorFlow's wire form.
package tensor

import (
	"fmt"
	"strings"
	"unsafe"
)

// DType numbers are TensorFlow's DataType numbers, so a DType converts to and
// from tensorflow.DataType without a table.
type DType int32

const (
	Invalid DType = 0
	Float   DType = 1  // float32
	Double  DType = 2  // float64
	Int32   DType = 3  // int32
	Uint8   DType = 4  // carried as []int32 on the wire, []uint8 here
	Int16   DType = 5  // carried as []int32
	Int8    DType = 6  // carried as []int32
	String  DType = 7  // [][]byte
	Int64   DType = 9  // int64
	Bool    DType = 10 // bool
	Half    DType = 19 // IEEE half, held as []float32 (half.go)
)

var dtypeNames = map[DType]string{
	Invalid: "DT_INVALID", Float: "DT_FLOAT", Double: "DT_DOUBLE", Int32: "DT_INT32",
	Uint8: "DT_UINT8", Int16: "DT_INT16", Int8: "DT_INT8", String: "DT_STRING",
	Int64: "DT_INT64", Bool: "DT_BOOL", Half: "DT_HALF",
}

// String returns TensorFlow's name for the type, e.g. DT_FLOAT.
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("DT_%d", int32(d))
}

// Supported reports whether infergate can hold values of this type.
func (d DType) Supported() bool {
	switch d {
	case Float, Double, Int32, Int64, Bool, String, Uint8, Int16, Int8, Half:
		return true
	}
	return false
}

// Size is the size in bytes of one element in tensor_content, 0 for String.
func (d DType) Size() int {
	switch d {
	case Float, Int32:
		return 4
	case Double, Int64:
		return 8
	case Bool, Uint8, Int8:
		return 1
	case Int16, Half:
		return 2
	}
	return 0
}

// GoSize is the memory one element takes in Tensor.Data: Size, except for
// Half (a float32) and String (a slice header, without its bytes).
func (d DType) GoSize() int {
	switch d {
	case Half:
		return 4
	case String:
		return int(unsafe.Sizeof([]byte(nil)))
	}
	return d.Size()
}

// Tensor is a dense tensor. Data holds exactly one of []float32, []float64,
// []int32, []int64, []bool, [][]byte, []uint8, []int16, []int8, matching DType
// ([]float32 for Float and Half), with NumElements(Shape) values in row-major
// order. The values of a Half tensor should be halves; they are rounded to
// halves wherever they are encoded (ToProto) or enter a model.
type Tensor struct {
	DType DType
	Shape []int64
	Data  any
}

// New returns a zero-filled tensor of the given type and shape.
func New(dt DType, shape ...int64) (*Tensor, error) {
	n, err := NumElements(shape)
	if err != nil {
		return nil, err
	}
	t := &Tensor{DType: dt, Shape: append([]int64(nil), shape...)}
	switch dt {
	case Float, Half:
		t.Data = make([]float32, n)
	case Double:
		t.Data = make([]float64, n)
	case Int32:
		t.Data = make([]int32, n)
	case Int64:
		t.Data = make([]int64, n)
	case Bool:
		t.Data = make([]bool, n)
	case String:
		t.Data = make([][]byte, n)
	case Uint8:
		t.Data = make([]uint8, n)
	case Int16:
		t.Data = make([]int16, n)
	case Int8:
		t.Data = make([]int8, n)
	default:
		return nil, fmt.Errorf("unsupported dtype %s", dt)
	}
	return t, nil
}

// FromFloat32 wraps data (not copied) as a float32 tensor of the given shape.
func FromFloat32(data []float32, shape ...int64) *Tensor {
	return &Tensor{DType: Float, Shape: shape, Data: data}
}

// Float32s returns the data as []float32, or nil if the tensor is neither
// DT_FLOAT nor DT_HALF.
func (t *Tensor) Float32s() []float32 { v, _ := t.Data.([]float32); return v }

// Len is the number of values in Data.
func (t *Tensor) Len() int {
	switch d := t.Data.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []int32:
		return len(d)
	case []int64:
		return len(d)
	case []bool:
		return len(d)
	case [][]byte:
		return len(d)
	case []uint8:
		return len(d)
	case []int16:
		return len(d)
	case []int8:
		return len(d)
	}
	return 0
}

// Validate checks that Data's Go type matches DType and its length matches Shape.
func (t *Tensor) Validate() error {
	if t == nil {
		return fmt.Errorf("nil tensor")
	}
	n, err := NumElements(t.Shape)
	if err != nil {
		return err
	}
	ok := false
	switch t.Data.(type) {
	case []float32:
		ok = t.DType == Float || t.DType == Half
	case []float64:
		ok = t.DType == Double
	case []int32:
		ok = t.DType == Int32
	case []int64:
		ok = t.DType == Int64
	case []bool:
		ok = t.DType == Bool
	case [][]byte:
		ok = t.DType == String
	case []uint8:
		ok = t.DType == Uint8
	case []int16:
		ok = t.DType == Int16
	case []int8:
		ok = t.DType == Int8
	}
	if !ok {
		return fmt.Errorf("tensor of %s holds %T", t.DType, t.Data)
	}
	if int64(t.Len()) != n {
		return fmt.Errorf("tensor of shape %s needs %d values, has %d", ShapeString(t.Shape), n, t.Len())
	}
	return nil
}

// MaxElements bounds the size of any tensor infergate builds from outside
// input, so a hostile shape cannot make it allocate without limit.
const MaxElements = 1 << 28

// NumElements is the product of the dims. Negative dims and products above
// MaxElements are errors.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %s has a negative dimension", ShapeString(shape))
		}
		if d != 0 && n > MaxElements/d {
			return 0, fmt.Errorf("shape %s has more than %d elements", ShapeString(shape), MaxElements)
		}
		n *= d
	}
	return n, nil
}

// ShapeString formats a shape as TF prints it: [2,16], with -1 for unknown dims.
func ShapeString(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d", d)
	}
	b.WriteByte(']')
	return b.String()
}

// Compatible reports whether a concrete shape fits a signature shape in which
// -1 marks a dimension of any size. A nil pattern (unknown rank) fits anything.
func Compatible(pattern, shape []int64) bool {
	if pattern == nil {
		return true
	}
	if len(pattern) != len(shape) {
		return false
	}
	for i, p := range pattern {
		if p >= 0 && p != shape[i] {
			return false
		}
	}
	return true
}
