package tensor

import (
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/proto/tfpb"
)

// samples holds one tensor of every supported dtype, with values that would
// expose byte-order, sign and truncation mistakes.
func samples() []*Tensor {
	return []*Tensor{
		{DType: Float, Shape: []int64{2, 3}, Data: []float32{1.5, -2, 0, float32(math.Inf(1)), float32(math.NaN()), math.MaxFloat32}},
		{DType: Double, Shape: []int64{3}, Data: []float64{math.Pi, -1e300, math.SmallestNonzeroFloat64}},
		{DType: Int32, Shape: []int64{2, 2}, Data: []int32{1, -1, math.MaxInt32, math.MinInt32}},
		{DType: Int64, Shape: []int64{3, 1}, Data: []int64{math.MaxInt64, math.MinInt64, 42}},
		{DType: Bool, Shape: []int64{4}, Data: []bool{true, false, false, true}},
		{DType: String, Shape: []int64{2}, Data: [][]byte{[]byte("héllo"), {0, 1, 2}}},
		{DType: Uint8, Shape: []int64{3}, Data: []uint8{0, 200, 255}},
		{DType: Int16, Shape: []int64{3}, Data: []int16{-32768, 32767, 7}},
		{DType: Int8, Shape: []int64{3}, Data: []int8{-128, 127, -1}},
		// halves: the largest, the smallest subnormal, -0, ±Inf, NaN
		{DType: Half, Shape: []int64{2, 4}, Data: []float32{1.5, 65504, 0x1p-24, float32(math.Copysign(0, -1)),
			float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -0.333251953125}},
		{DType: Float, Shape: []int64{}, Data: []float32{3}},      // scalar
		{DType: Int64, Shape: []int64{0, 4}, Data: []int64{}},     // empty batch
		{DType: String, Shape: []int64{1, 1}, Data: [][]byte{{}}}, // empty string
	}
}

func TestRoundTripEveryDTypeBothEncodings(t *testing.T) {
	for _, content := range []bool{false, true} {
		for _, in := range samples() {
			p, err := ToProto(in, content)
			if err != nil {
				t.Fatalf("ToProto(%s, content=%v): %v", in.DType, content, err)
			}
			// Through the wire, as a server would see it.
			b, err := proto.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var back tfpb.TensorProto
			if err := proto.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			usesContent := len(back.TensorContent) > 0
			if wantContent := content && in.DType != String && in.Len() > 0; usesContent != wantContent {
				t.Errorf("%s content=%v: tensor_content used = %v", in.DType, content, usesContent)
			}
			out, err := FromProto(&back)
			if err != nil {
				t.Fatalf("FromProto(%s, content=%v): %v", in.DType, content, err)
			}
			if err := out.Validate(); err != nil {
				t.Fatal(err)
			}
			if !Equal(in, out) {
				t.Errorf("%s content=%v: got %v %v, want %v %v", in.DType, content, out.Shape, out.Data, in.Shape, in.Data)
			}
		}
	}
}

func TestToProtoFields(t *testing.T) {
	// Small integer types travel in int_val, as TF expects.
	p, err := ToProto(&Tensor{DType: Int8, Shape: []int64{2}, Data: []int8{-3, 4}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Dtype != tfpb.DataType_DT_INT8 || len(p.IntVal) != 2 || p.IntVal[0] != -3 {
		t.Errorf("int8 proto = %v", p)
	}
	// Halves travel as bit patterns, zero-extended into half_val's int32s
	// (TensorFlow's tensor_util), or as 2-byte little-endian content; values
	// that are not halves are rounded on the way out.
	h := &Tensor{DType: Half, Shape: []int64{3}, Data: []float32{1, -2, 1.0001}}
	p, err = ToProto(h, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Dtype != tfpb.DataType_DT_HALF || len(p.FloatVal) != 0 || len(p.HalfVal) != 3 ||
		p.HalfVal[0] != 0x3c00 || p.HalfVal[1] != 0xc000 || p.HalfVal[2] != 0x3c00 {
		t.Errorf("half proto = %v", p)
	}
	p, err = ToProto(h, true)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.TensorContent) != "\x00\x3c\x00\xc0\x00\x3c" || len(p.HalfVal) != 0 {
		t.Errorf("half content = % x", p.TensorContent)
	}
	// Little-endian content, checked byte by byte.
	p, err = ToProto(&Tensor{DType: Int32, Shape: []int64{1}, Data: []int32{0x01020304}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.TensorContent) != "\x04\x03\x02\x01" {
		t.Errorf("content = % x", p.TensorContent)
	}
	// The proto must not alias the tensor.
	data := []float32{1, 2}
	p, _ = ToProto(FromFloat32(data, 2), false)
	data[0] = 9
	if p.FloatVal[0] != 1 {
		t.Error("ToProto aliases the tensor's data")
	}
	if _, err := ToProto(&Tensor{DType: Float, Shape: []int64{3}, Data: []float32{1}}, false); err == nil {
		t.Error("ToProto accepted a tensor whose data does not fill its shape")
	}
}

func shape(dims ...int64) *tfpb.TensorShapeProto { return ShapeToProto(dims) }

func TestTypedFieldRules(t *testing.T) {
	cases := []struct {
		name string
		p    *tfpb.TensorProto
		want *Tensor
	}{
		{"no values → zeros", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_FLOAT, TensorShape: shape(2, 2)},
			&Tensor{DType: Float, Shape: []int64{2, 2}, Data: []float32{0, 0, 0, 0}}},
		{"fewer → last repeats", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_FLOAT, TensorShape: shape(5), FloatVal: []float32{1, 2}},
			&Tensor{DType: Float, Shape: []int64{5}, Data: []float32{1, 2, 2, 2, 2}}},
		{"extra ignored", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_INT64, TensorShape: shape(2), Int64Val: []int64{7, 8, 9}},
			&Tensor{DType: Int64, Shape: []int64{2}, Data: []int64{7, 8}}},
		{"one value fills a matrix", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_DOUBLE, TensorShape: shape(3, 3), DoubleVal: []float64{0.5}},
			&Tensor{DType: Double, Shape: []int64{3, 3}, Data: []float64{.5, .5, .5, .5, .5, .5, .5, .5, .5}}},
		{"bool repeat", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_BOOL, TensorShape: shape(3), BoolVal: []bool{false, true}},
			&Tensor{DType: Bool, Shape: []int64{3}, Data: []bool{false, true, true}}},
		{"string zeros are empty", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_STRING, TensorShape: shape(2)},
			&Tensor{DType: String, Shape: []int64{2}, Data: [][]byte{nil, nil}}},
		{"string repeat", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_STRING, TensorShape: shape(3), StringVal: [][]byte{[]byte("a"), []byte("b")}},
			&Tensor{DType: String, Shape: []int64{3}, Data: [][]byte{[]byte("a"), []byte("b"), []byte("b")}}},
		{"string ignores tensor_content", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_STRING, TensorShape: shape(1), TensorContent: []byte("xyz"), StringVal: [][]byte{[]byte("s")}},
			&Tensor{DType: String, Shape: []int64{1}, Data: [][]byte{[]byte("s")}}},
		{"uint8 wraps and repeats", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_UINT8, TensorShape: shape(3), IntVal: []int32{256 + 5}},
			&Tensor{DType: Uint8, Shape: []int64{3}, Data: []uint8{5, 5, 5}}},
		{"int16 extra ignored", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_INT16, TensorShape: shape(1), IntVal: []int32{-9, 1}},
			&Tensor{DType: Int16, Shape: []int64{1}, Data: []int16{-9}}},
		{"missing shape is a scalar", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_INT32, IntVal: []int32{4}},
			&Tensor{DType: Int32, Shape: []int64{}, Data: []int32{4}}},
		{"content wins over typed", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_INT32, TensorShape: shape(1), IntVal: []int32{4}, TensorContent: []byte{9, 0, 0, 0}},
			&Tensor{DType: Int32, Shape: []int64{1}, Data: []int32{9}}},
		{"half_val bit patterns, last repeats", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_HALF, TensorShape: shape(4), HalfVal: []int32{0x3c00, 0x3555}},
			&Tensor{DType: Half, Shape: []int64{4}, Data: []float32{1, 0.333251953125, 0.333251953125, 0.333251953125}}},
		{"half_val keeps the low 16 bits", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_HALF, TensorShape: shape(3), HalfVal: []int32{0x1c000, -1 << 16, 0x7c00}},
			&Tensor{DType: Half, Shape: []int64{3}, Data: []float32{-2, 0, float32(math.Inf(1))}}},
		{"half_val sign-extended is the same half", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_HALF, TensorShape: shape(1), HalfVal: []int32{-0x4000}},
			&Tensor{DType: Half, Shape: []int64{1}, Data: []float32{-2}}},
		{"half no values → zeros", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_HALF, TensorShape: shape(2)},
			&Tensor{DType: Half, Shape: []int64{2}, Data: []float32{0, 0}}},
		{"half content little-endian, wins over half_val", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_HALF, TensorShape: shape(2),
			TensorContent: []byte{0x00, 0x3c, 0x01, 0x00}, HalfVal: []int32{0x4000}},
			&Tensor{DType: Half, Shape: []int64{2}, Data: []float32{1, 0x1p-24}}},
		{"half float_val ignored", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_HALF, TensorShape: shape(1), FloatVal: []float32{3}},
			&Tensor{DType: Half, Shape: []int64{1}, Data: []float32{0}}},
		{"bool content nonzero is true", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_BOOL, TensorShape: shape(3), TensorContent: []byte{0, 1, 7}},
			&Tensor{DType: Bool, Shape: []int64{3}, Data: []bool{false, true, true}}},
	}
	for _, c := range cases {
		got, err := FromProto(c.p)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !Equal(got, c.want) {
			t.Errorf("%s: got %v %v, want %v %v", c.name, got.Shape, got.Data, c.want.Shape, c.want.Data)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestFromProtoErrors(t *testing.T) {
	cases := []struct {
		name string
		p    *tfpb.TensorProto
		want []string // substrings of the message
	}{
		{"nil", nil, []string{"nil"}},
		{"content too short", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_FLOAT, TensorShape: shape(2, 2), TensorContent: make([]byte, 12)},
			[]string{"12 bytes", "needs 16"}},
		{"content too long", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_INT64, TensorShape: shape(1), TensorContent: make([]byte, 9)},
			[]string{"9 bytes", "needs 8"}},
		{"unknown rank", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_FLOAT, TensorShape: &tfpb.TensorShapeProto{UnknownRank: true}},
			[]string{"unknown_rank"}},
		{"negative dim", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_FLOAT, TensorShape: shape(-1, 16)},
			[]string{"dim 0 is -1"}},
		{"unsupported dtype", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_BFLOAT16, TensorShape: shape(1)},
			[]string{"DT_BFLOAT16"}},
		{"half content odd length", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_HALF, TensorShape: shape(2), TensorContent: make([]byte, 3)},
			[]string{"3 bytes", "needs 4", "× 2 bytes"}},
		{"half content as float32", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_HALF, TensorShape: shape(2), TensorContent: make([]byte, 8)},
			[]string{"8 bytes", "needs 4"}},
		{"invalid dtype", &tfpb.TensorProto{TensorShape: shape(1)}, []string{"DT_INVALID"}},
		{"too many elements", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_FLOAT, TensorShape: shape(1<<20, 1<<20), FloatVal: []float32{1}},
			[]string{"more than"}},
		{"overflowing shape", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_FLOAT, TensorShape: shape(math.MaxInt64, math.MaxInt64)},
			[]string{"more than"}},
		{"too many bytes", &tfpb.TensorProto{Dtype: tfpb.DataType_DT_STRING, TensorShape: shape(MaxElements), StringVal: [][]byte{[]byte("x")}},
			[]string{"bytes"}},
	}
	for _, c := range cases {
		_, err := FromProto(c.p)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !errors.Is(err, ErrDecode) {
			t.Errorf("%s: %v does not wrap ErrDecode", c.name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
	}
}

func TestShapeProto(t *testing.T) {
	p := ShapeToProto([]int64{-1, 16})
	if len(p.Dim) != 2 || p.Dim[0].Size != -1 || p.Dim[1].Size != 16 {
		t.Errorf("ShapeToProto = %v", p)
	}
	if _, err := ShapeFromProto(p); err == nil {
		t.Error("ShapeFromProto accepted -1")
	}
	s, err := ShapeFromProto(ShapeToProto([]int64{4, 16}))
	if err != nil || ShapeString(s) != "[4,16]" {
		t.Errorf("ShapeFromProto = %v, %v", s, err)
	}
	if s, err := ShapeFromProto(nil); err != nil || len(s) != 0 {
		t.Errorf("ShapeFromProto(nil) = %v, %v", s, err)
	}
}

func FuzzFromProto(f *testing.F) {
	// A low limit keeps each iteration fast while still crossing the
	// allocation bound; the bound's logic is the same at 1 GiB.
	old := maxDecodeBytes
	maxDecodeBytes = 1 << 20
	f.Cleanup(func() { maxDecodeBytes = old })

	for _, s := range samples() {
		for _, c := range []bool{false, true} {
			p, _ := ToProto(s, c)
			b, _ := proto.Marshal(p)
			f.Add(b)
		}
	}
	b, _ := proto.Marshal(&tfpb.TensorProto{Dtype: tfpb.DataType_DT_FLOAT, TensorShape: shape(1000, 1000), FloatVal: []float32{1}})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p tfpb.TensorProto
		if err := proto.Unmarshal(b, &p); err != nil {
			return
		}
		got, err := FromProto(&p)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error does not wrap ErrDecode: %v", err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("FromProto returned an invalid tensor: %v", err)
		}
		// Whatever decodes must survive both encodings unchanged.
		for _, c := range []bool{false, true} {
			q, err := ToProto(got, c)
			if err != nil {
				t.Fatal(err)
			}
			again, err := FromProto(q)
			if err != nil {
				t.Fatal(err)
			}
			if !Equal(got, again) {
				t.Fatalf("round trip (content=%v) changed %v into %v", c, got.Data, again.Data)
			}
		}
	})
}

func benchTensor() *Tensor {
	data := make([]float32, 256*16)
	for i := range data {
		data[i] = float32(i) * 0.25
	}
	return FromFloat32(data, 256, 16)
}

func BenchmarkToProtoContent256x16(b *testing.B) {
	t := benchTensor()
	b.SetBytes(256 * 16 * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ToProto(t, true); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkToProtoTyped256x16(b *testing.B) {
	t := benchTensor()
	b.SetBytes(256 * 16 * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ToProto(t, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromProtoContent256x16(b *testing.B) {
	p, _ := ToProto(benchTensor(), true)
	b.SetBytes(256 * 16 * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromProto(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromProtoTyped256x16(b *testing.B) {
	p, _ := ToProto(benchTensor(), false)
	b.SetBytes(256 * 16 * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromProto(p); err != nil {
			b.Fatal(err)
		}
	}
}
