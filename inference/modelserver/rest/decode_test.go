package rest

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
)

func TestParseJSON(t *testing.T) {
	good := []string{
		`0`, `-0.5e+3`, `1E9`, `"a\u00e9\ud83d\ude00\n\"\\\/"`, `[]`, `{}`, ` [ 1 , [ 2 ] , {"a" : null} ] `,
		`NaN`, `[Infinity, -Infinity, Inf, -Inf]`, `true`, `false`, `null`, `"\ud800"`,
	}
	for _, s := range good {
		if _, err := parseJSON([]byte(s)); err != nil {
			t.Errorf("parseJSON(%s): %v", s, err)
		}
	}
	bad := []string{
		``, ` `, `01`, `1.`, `.5`, `1e`, `+1`, `-`, `[1,]`, `{"a":1,}`, `{"a"}`, `{a:1}`, `[1 2]`, `"abc`, "\"a\x01\"",
		`"\x"`, `"\u12"`, `nan`, `infinity`, `tru`, `[1]]`, `{} {}`, `'a'`, strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
	}
	for _, s := range bad {
		if _, err := parseJSON([]byte(s)); err == nil {
			t.Errorf("parseJSON(%q) accepted", s)
		}
	}
	v, err := parseJSON([]byte(`{"k": ["a\tb", 12, -3.5e1, NaN]}`))
	if err != nil {
		t.Fatal(err)
	}
	l := v.member("k")
	if l == nil || len(l.elems) != 4 || string(l.elems[0].raw) != "a\tb" || string(l.elems[2].raw) != "-3.5e1" || string(l.elems[3].raw) != "NaN" {
		t.Errorf("parsed %+v", v)
	}
	if s, _ := parseJSON([]byte(`"\ud83d\ude00x"`)); string(s.raw) != "😀x" {
		t.Errorf("surrogate pair decoded to %q", s.raw)
	}
}

func TestAppendFloat(t *testing.T) {
	for _, c := range []struct {
		f    float64
		bits int
		want string
	}{
		{1, 32, "1.0"}, {0.1, 32, "0.1"}, {float64(float32(0.1)), 32, "0.1"}, {1e21, 64, "1e+21"}, {-0.0, 64, "0.0"},
		{math.Copysign(0, -1), 64, "-0.0"}, {math.NaN(), 32, "NaN"}, {math.Inf(-1), 64, "-Infinity"}, {123456789, 64, "1.23456789e+08"},
	} {
		if got := string(appendFloat(nil, c.f, c.bits)); got != c.want {
			t.Errorf("appendFloat(%v, %d) = %s, want %s", c.f, c.bits, got, c.want)
		}
	}
}

// TestDecodeHalf: a DT_HALF input takes JSON numbers, rounded to the nearest
// half through float32 as TF's Eigen::half(double) does; beyond the largest
// half is infinity, as there. The answer writes the halves as numbers.
func TestDecodeHalf(t *testing.T) {
	req, err := decodePredict([]byte(`{"signature_name": "half", "instances": [[0.1, 65504], [65520, -1e-8], [1e300, 2.9802322387695312e-08]]}`), fuzzLookup)
	if err != nil {
		t.Fatal(err)
	}
	h := req.inputs["h"]
	want := []float32{0.0999755859375, 65504, float32(math.Inf(1)), float32(math.Copysign(0, -1)), float32(math.Inf(1)), 0}
	if h.DType != tensor.Half || !slices.Equal(h.Shape, []int64{3, 2}) || !slices.Equal(h.Float32s(), want) {
		t.Fatalf("decoded %s %v %v, want DT_HALF [3,2] %v", h.DType, h.Shape, h.Data, want)
	}
	if _, err := decodePredict([]byte(`{"signature_name": "half", "instances": [["a", 1]]}`), fuzzLookup); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "expected a number for DT_HALF") {
		t.Fatalf("string for DT_HALF: %v", err)
	}
	body, err := encodePredict(false, map[string]*tensor.Tensor{"y": {DType: tensor.Half, Shape: []int64{2}, Data: []float32{0.0999755859375, 65504}}})
	if err != nil || string(body) != `{"outputs":[0.099975586,65504.0]}` {
		t.Fatalf("encoded %s, %v", body, err)
	}
}

func TestEncodePredictRejectsUnbatchedRows(t *testing.T) {
	_, err := encodePredict(true, map[string]*tensor.Tensor{"s": {DType: tensor.Float, Shape: []int64{}, Data: []float32{1}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("scalar in row format: %v", err)
	}
	_, err = encodePredict(true, map[string]*tensor.Tensor{
		"a": tensor.FromFloat32([]float32{1, 2}, 2),
		"b": tensor.FromFloat32([]float32{1}, 1),
	})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "0th dimension") {
		t.Errorf("unequal batches in row format: %v", err)
	}
}

// fuzzSignatures are the signatures the fuzz target types requests with.
var fuzzSignatures = map[string]*model.Signature{
	model.DefaultSignature: {Inputs: []model.TensorSpec{
		{Name: "f32", DType: tensor.Float}, {Name: "f64", DType: tensor.Double}, {Name: "i32", DType: tensor.Int32},
		{Name: "i64", DType: tensor.Int64}, {Name: "b", DType: tensor.Bool}, {Name: "s", DType: tensor.String},
		{Name: "u8", DType: tensor.Uint8}, {Name: "i16", DType: tensor.Int16}, {Name: "i8", DType: tensor.Int8},
		{Name: "f16", DType: tensor.Half},
	}},
	"half": {Inputs: []model.TensorSpec{{Name: "h", DType: tensor.Half, Shape: []int64{-1, 2}}}},
	"one":  {Inputs: []model.TensorSpec{{Name: "x", DType: tensor.Float, Shape: []int64{-1, 2}}}},
	"strs": {Inputs: []model.TensorSpec{{Name: "s", DType: tensor.String}}},
}

func fuzzLookup(name string) (*model.Signature, error) {
	if name == "" {
		name = model.DefaultSignature
	}
	if s, ok := fuzzSignatures[name]; ok {
		return s, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "Serving signature key %q not found.", name)
}

func FuzzDecodeREST(f *testing.F) {
	for _, s := range []string{
		`{"instances": [{"f32": [1, 2], "s": "a"}, {"f32": [3, NaN], "s": {"b64": "/w=="}}]}`,
		`{"signature_name": "one", "instances": [[1, 2], [3, 4]]}`,
		`{"signature_name": "one", "inputs": [[1, 2e-3]]}`,
		`{"inputs": {"i32": [[1], [2]], "i64": 9007199254740993, "b": [true], "u8": [255], "i16": [-1], "i8": [[[-128]]], "f64": -Infinity}}`,
		`{"signature_name": "strs", "inputs": ["a\u0000", {"b64": "YWJj"}]}`,
		`{"inputs": {"f32": [[1, 2], [3]]}}`,
		`{"examples": [{"a": [1, 2], "b": "x", "c": 1.5}], "context": {"d": {"b64": "AA=="}}}`,
		`{"instances": []}`, `[]`, `{"inputs": [[[[]]]]}`,
		`{"signature_name": "half", "instances": [[0.1, 65504], [65520, -5.960464477539063e-08]]}`,
		`{"signature_name": "half", "inputs": [[NaN, -Infinity], [1e300, 2.9802322387695312e-08]]}`,
		`{"inputs": {"f16": [[0.333251953125], [-0.0]], "f32": 1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// The parser accepts everything encoding/json accepts (bar depth).
		_, perr := parseJSON(body)
		if perr != nil && json.Valid(body) && !strings.Contains(perr.Error(), "Nesting") {
			t.Fatalf("parseJSON rejected valid JSON %q: %v", body, perr)
		}

		req, err := decodePredict(body, fuzzLookup)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("decodePredict error is %s, not INVALID_ARGUMENT: %v", status.Code(err), err)
			}
		} else {
			sig, _ := fuzzLookup(req.signature)
			for name, tt := range req.inputs {
				if err := tt.Validate(); err != nil {
					t.Fatalf("input %s: %v", name, err)
				}
				if spec, ok := sig.Input(name); !ok || spec.DType != tt.DType {
					t.Fatalf("input %s has dtype %s, signature says %v", name, tt.DType, spec)
				}
				if tt.DType == tensor.Half {
					for i, v := range tt.Float32s() {
						if h := tensor.HalfFromBits(tensor.HalfBits(v)); h != v && v == v {
							t.Fatalf("input %s value %d = %v is not a half", name, i, v)
						}
					}
				}
			}
			roundTrip(t, req)
		}

		if _, _, err := decodeExamples(body); err != nil && status.Code(err) != codes.InvalidArgument {
			t.Fatalf("decodeExamples error is %s, not INVALID_ARGUMENT: %v", status.Code(err), err)
		}
	})
}

// roundTrip re-encodes decoded inputs the way responses are written and
// decodes them again: a columnar response must be a valid columnar request
// for the same tensors.
func roundTrip(t *testing.T, req *predictBody) {
	b := []byte(`{"signature_name":`)
	b = appendString(b, []byte(req.signature))
	b = append(b, `,"inputs":{`...)
	first := true
	for name, tt := range req.inputs {
		if n, _ := tensor.NumElements(tt.Shape); n == 0 {
			return // [[], []] and [] carry different shapes but no values
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, []byte(name))
		b = append(b, ':')
		b = appendTensor(b, tt, name, tt.Shape, 0)
	}
	b = append(b, "}}"...)
	again, err := decodePredict(b, fuzzLookup)
	if err != nil {
		t.Fatalf("re-encoded request %s does not decode: %v", b, err)
	}
	for name, tt := range req.inputs {
		if !tensor.Equal(tt, again.inputs[name]) {
			t.Fatalf("input %s changed in a round trip: %v → %s → %v", name, tt.Data, b, again.inputs[name].Data)
		}
	}
}

func benchBody(rows int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"signature_name":"one","instances":[`)
	for r := range rows {
		if r > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('[')
		for c := range 16 {
			if c > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, "%g", float32(r*16+c)*0.37)
		}
		sb.WriteByte(']')
	}
	sb.WriteString("]}")
	return []byte(sb.String())
}

func BenchmarkDecodePredict256x16(b *testing.B) {
	body := benchBody(256)
	sig := &model.Signature{Inputs: []model.TensorSpec{{Name: "x", DType: tensor.Float}}}
	lookup := func(string) (*model.Signature, error) { return sig, nil }
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodePredict(body, lookup); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEncodingJSON256x16 is the baseline the custom parser is
// measured against: encoding/json with UseNumber into []any, no typing.
func BenchmarkDecodeEncodingJSON256x16(b *testing.B) {
	body := benchBody(256)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		d := json.NewDecoder(strings.NewReader(string(body)))
		d.UseNumber()
		var v map[string]any
		if err := d.Decode(&v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodePredict256x1(b *testing.B) {
	data := make([]float32, 256)
	for i := range data {
		data[i] = float32(i) / 7
	}
	out := map[string]*tensor.Tensor{"output": tensor.FromFloat32(data, 256, 1)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodePredict(true, out); err != nil {
			b.Fatal(err)
		}
	}
}
