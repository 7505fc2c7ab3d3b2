package pipeline_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
)

var demoSig = &model.Signature{
	Method:  model.PredictMethod,
	Inputs:  []model.TensorSpec{{Name: "input", DType: tensor.Float, Shape: []int64{-1, 4}}},
	Outputs: []model.TensorSpec{{Name: "output", DType: tensor.Float, Shape: []int64{-1, 1}}},
}

// halfSig is a float16 model's signature (DT_HALF input and output).
var halfSig = &model.Signature{
	Method:  model.PredictMethod,
	Inputs:  []model.TensorSpec{{Name: "input", DType: tensor.Half, Shape: []int64{-1, 4}}},
	Outputs: []model.TensorSpec{{Name: "output", DType: tensor.Half, Shape: []int64{-1, 1}}},
}

var mixedSig = &model.Signature{
	Method: model.PredictMethod,
	Inputs: []model.TensorSpec{
		{Name: "ids", DType: tensor.Int32, Shape: []int64{-1, 2}},
		{Name: "text", DType: tensor.String, Shape: []int64{-1}},
		{Name: "flag", DType: tensor.Bool, Shape: []int64{-1}},
		{Name: "px", DType: tensor.Uint8, Shape: []int64{-1, -1}},
	},
	Outputs: []model.TensorSpec{{Name: "out", DType: tensor.Double, Shape: []int64{-1}}},
}

func TestDecodeRequest(t *testing.T) {
	f32 := func(shape []int64, v ...float32) map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{"input": {DType: tensor.Float, Shape: shape, Data: v}}
	}
	for _, tc := range []struct {
		name, in string
		sig      *model.Signature
		want     map[string]*tensor.Tensor
		rows     int64
		id       string
		spec     model.Spec
	}{
		{name: "short form", in: `{"request_id": "r-1", "features": [0.5, -1, 2e3, 0]}`,
			want: f32([]int64{1, 4}, 0.5, -1, 2000, 0), rows: 1, id: `"r-1"`},
		{name: "numeric id, whitespace", in: " {\n\"features\":[1,2,3,4] ,\"request_id\":42}\t",
			want: f32([]int64{1, 4}, 1, 2, 3, 4), rows: 1, id: `42`},
		{name: "escaped id", in: `{"request_id":"a\"\u00e9\ud83d\ude00","features":[1,2,3,4]}`,
			want: f32([]int64{1, 4}, 1, 2, 3, 4), rows: 1, id: `"a\"\u00e9\ud83d\ude00"`},
		{name: "instances", in: `{"model":"m","version":3,"signature_name":"s","instances":[[1,2,3,4],[5,6,7,8]]}`,
			want: f32([]int64{2, 4}, 1, 2, 3, 4, 5, 6, 7, 8), rows: 2, spec: model.Spec{Name: "m", Version: 3, Signature: "s"}},
		{name: "named instances", in: `{"instances":[{"input":[1,2,3,4]}],"version_label":"stable"}`,
			want: f32([]int64{1, 4}, 1, 2, 3, 4), rows: 1, spec: model.Spec{Label: "stable"}},
		{name: "columnar", in: `{"inputs":{"input":[[1,2,3,4]]},"version":"12"}`,
			want: f32([]int64{1, 4}, 1, 2, 3, 4), rows: 1, spec: model.Spec{Version: 12}},
		{name: "columnar single tensor", in: `{"inputs":[[1,2,3,4],[0,0,0,0]]}`,
			want: f32([]int64{2, 4}, 1, 2, 3, 4, 0, 0, 0, 0), rows: 2},
		{name: "unknown fields ignored", in: `{"x":{"y":[1,{"z":null}]},"features":[1,2,3,4],"model":null}`,
			want: f32([]int64{1, 4}, 1, 2, 3, 4), rows: 1},
		{name: "mixed dtypes", sig: mixedSig,
			in: `{"instances":[{"ids":[1,2.0],"text":"héllo","flag":true,"px":[0,255,7]},{"ids":[-3,4],"text":{"b64":"AP8="},"flag":false,"px":[1,2,3]}]}`,
			want: map[string]*tensor.Tensor{
				"ids":  {DType: tensor.Int32, Shape: []int64{2, 2}, Data: []int32{1, 2, -3, 4}},
				"text": {DType: tensor.String, Shape: []int64{2}, Data: [][]byte{[]byte("héllo"), {0, 255}}},
				"flag": {DType: tensor.Bool, Shape: []int64{2}, Data: []bool{true, false}},
				"px":   {DType: tensor.Uint8, Shape: []int64{2, 3}, Data: []uint8{0, 255, 7, 1, 2, 3}},
			}, rows: 2},
		{name: "half, rounded to the nearest half", sig: halfSig, in: `{"features":[0.1,65504,-1e-8,2.9802322387695312e-08]}`,
			want: map[string]*tensor.Tensor{"input": {DType: tensor.Half, Shape: []int64{1, 4},
				Data: []float32{0.0999755859375, 65504, float32(math.Copysign(0, -1)), 0}}}, rows: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig := tc.sig
			if sig == nil {
				sig = demoSig
			}
			d, class, err := pipeline.DecodeRequest([]byte(tc.in), sig, "")
			if err != nil {
				t.Fatalf("%s error: %v", class, err)
			}
			if !reflect.DeepEqual(d.Inputs, tc.want) {
				t.Errorf("inputs %v, want %v", show(d.Inputs), show(tc.want))
			}
			if d.Rows != tc.rows || d.ID != tc.id || d.Spec != tc.spec {
				t.Errorf("rows %d id %s spec %+v, want %d %s %+v", d.Rows, d.ID, d.Spec, tc.rows, tc.id, tc.spec)
			}
		})
	}
}

func show(m map[string]*tensor.Tensor) string {
	var b strings.Builder
	for k, v := range m {
		b.WriteString(k + ":" + tensor.ShapeString(v.Shape))
		j, _ := json.Marshal(v.Data)
		b.Write(j)
		b.WriteByte(' ')
	}
	return b.String()
}

func TestDecodeRequestErrors(t *testing.T) {
	const dec, val = pipeline.ClassDecode, pipeline.ClassValidation
	for _, tc := range []struct {
		in, class string
		sig       *model.Signature
	}{
		{`not json`, dec, nil},
		{`{"features":[65520,0,0,0]}`, val, halfSig}, // rounds past the largest half
		{`{"features":[1e39,0,0,0]}`, val, halfSig},
		{``, dec, nil},
		{`[1,2]`, dec, nil},
		{`{}`, dec, nil},
		{`{"features":[1,2,3,4]`, dec, nil},
		{`{"features":[1,2,3,4]} x`, dec, nil},
		{`{"features":[1,2,3,4],}`, dec, nil},
		{`{"features":[1,2,3,4,]}`, dec, nil},
		{`{"features":[01,2,3,4]}`, dec, nil},
		{`{"features":[1.,2,3,4]}`, dec, nil},
		{`{"features":[NaN,2,3,4]}`, dec, nil},
		{`{"features":[1,2,3,4],"instances":[[1,2,3,4]]}`, dec, nil},
		{`{"features":[1,2,3,4],"version":1,"version_label":"x"}`, dec, nil},
		{`{"features":[1,2,3,4],"version":-1}`, dec, nil},
		{`{"features":[1,2,3,4],"version":"abc"}`, dec, nil},
		{`{"features":[1,2,3,4],"model":5}`, dec, nil},
		{`{"features":[1,2,3,4],"request_id":{}}`, dec, nil},
		{`{"features":[1,2,3,4],"request_id":"\x"}`, dec, nil},
		{"{\"features\":[1,2,3,4],\"request_id\":\"\xff\"}", dec, nil},
		{"{\"features\":[1,2,3,4],\"request_id\":\"a\nb\"}", dec, nil},
		{`{"features":[[1,2],[3]]}`, dec, nil},
		{`{"features":[[1,2],3]}`, dec, nil},
		{`{"features":[1,[2]]}`, dec, nil},
		{`{"instances":{"input":[1,2,3,4]}}`, dec, nil},
		{`{"inputs":{"input":[[1,2,3,4]],"input":[[1,2,3,4]]}}`, dec, nil},
		{`{"features":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, dec, nil},
		{`{"features":"abc"}`, val, nil},
		{`{"features":[1,2,3]}`, val, nil},
		{`{"features":[[1,2,3,4]]}`, val, nil},
		{`{"features":[1,2,3,true]}`, val, nil},
		{`{"features":[1,2,3,1e39]}`, val, nil},
		{`{"features":[]}`, val, nil},
		{`{"instances":[]}`, val, nil},
		{`{"inputs":{"other":[[1,2,3,4]]}}`, val, nil},
		{`{"inputs":{}}`, val, nil},
		{`{"instances":[{"input":[1,2,3,4],"x":1}]}`, val, nil},
		{`{"features":[1,2]}`, val, mixedSig},
		{`{"instances":[{"ids":[1,2.5],"text":"a","flag":true,"px":[1]}]}`, val, mixedSig},
		{`{"instances":[{"ids":[1,2],"text":"a","flag":true,"px":[256]}]}`, val, mixedSig},
		{`{"instances":[{"ids":[1,2],"text":"a","flag":1,"px":[1]}]}`, val, mixedSig},
		{`{"instances":[{"ids":[1,2],"text":5,"flag":true,"px":[1]}]}`, val, mixedSig},
		{`{"instances":[{"ids":[1,2],"text":"a","flag":true}]}`, val, mixedSig},
		{`{"instances":[{"ids":[1,2],"text":{"b64":"!!"},"flag":true,"px":[1]}]}`, dec, mixedSig},
		{`{"instances":[{"ids":[1,2],"text":"a","flag":true,"px":[1]},{"ids":[1,2],"text":"a","flag":true,"px":[1,2]}]}`, dec, mixedSig},
	} {
		sig := tc.sig
		if sig == nil {
			sig = demoSig
		}
		_, class, err := pipeline.DecodeRequest([]byte(tc.in), sig, "")
		if err == nil || class != tc.class {
			t.Errorf("%s: class %q err %v, want class %s", tc.in, class, err, tc.class)
		}
	}
}

func TestDefaultInput(t *testing.T) {
	two := &model.Signature{Inputs: []model.TensorSpec{
		{Name: "a", DType: tensor.Float, Shape: []int64{-1, 2}}, {Name: "b", DType: tensor.Float, Shape: []int64{-1, 2}}}}
	if _, class, err := pipeline.DecodeRequest([]byte(`{"features":[1,2]}`), two, ""); class != pipeline.ClassValidation {
		t.Errorf("ambiguous features: %s %v", class, err)
	}
	// With a default input, the short form feeds it; the other input is then
	// missing, which is a validation error too.
	_, class, err := pipeline.DecodeRequest([]byte(`{"features":[1,2]}`), two, "b")
	if class != pipeline.ClassValidation || !strings.Contains(err.Error(), `"a" is missing`) {
		t.Errorf("default input: %s %v", class, err)
	}
}

// FuzzDecodeRequest: the decoder reads records from anyone who can write to
// the requests topic. Whatever the bytes, it must not panic; it must accept
// only valid JSON; what it accepts must be well-formed tensors that fit the
// signature; and the short form's numbers must be what encoding/json reads.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"request_id":"r-1","features":[0.1,0.2,0.3,0.4]}`,
		`{"request_id":7,"model":"demo","version":"2","instances":[[1,2,3,4],[5,6,7,8]]}`,
		`{"inputs":{"input":[[1,2,3,4]]},"signature_name":"serving_default"}`,
		`{"instances":[{"ids":[1,2],"text":{"b64":"AP8="},"flag":true,"px":[1,2]}]}`,
		`{"inputs":{"ids":[[1,2]],"text":["a"],"flag":[false],"px":[[]]}}`,
		`{"features":[[1,2],[3]]}`,
		`{"features":[1e39,-0,1E-7,123456789012345678901234567890]}`,
		`{"request_id":"\ud83d\ude00\u0000","features":[1,2,3,4]}`,
		`{"features":[1,2,3,4],"x":[{"a":[true,false,null]}]}`,
		`{"features":[0.1,65504,65519.99,-5.960464477539063e-08]}`,
		`{"instances":[[65520,0,0,0]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, sig := range []*model.Signature{demoSig, mixedSig, halfSig} {
			d, class, err := pipeline.DecodeRequest(b, sig, "")
			if err != nil {
				if class != pipeline.ClassDecode && class != pipeline.ClassValidation {
					t.Fatalf("error of class %q: %v", class, err)
				}
				continue
			}
			if !json.Valid(b) {
				t.Fatalf("accepted invalid JSON %q", b)
			}
			if d.ID != "" && !json.Valid([]byte(d.ID)) {
				t.Fatalf("request id %q is not JSON", d.ID)
			}
			if !utf8.ValidString(d.ID) {
				t.Fatalf("request id %q is not UTF-8", d.ID)
			}
			for _, in := range sig.Inputs {
				tt := d.Inputs[in.Name]
				if err := tt.Validate(); err != nil {
					t.Fatalf("input %s: %v", in.Name, err)
				}
				if !tensor.Compatible(in.Shape, tt.Shape) || tt.Shape[0] != d.Rows {
					t.Fatalf("input %s shape %v for %v, rows %d", in.Name, tt.Shape, in.Shape, d.Rows)
				}
				if tt.DType != in.DType {
					t.Fatalf("input %s is %s, the signature says %s", in.Name, tt.DType, in.DType)
				}
				if in.DType == tensor.Half {
					for i, v := range tt.Float32s() {
						if h := tensor.HalfFromBits(tensor.HalfBits(v)); h != v || math.IsInf(float64(v), 0) {
							t.Fatalf("input %s value %d = %v is not a finite half", in.Name, i, v)
						}
					}
				}
			}
			var std struct {
				Features []float32 `json:"features"`
			}
			if sig == demoSig && json.Unmarshal(b, &std) == nil && len(std.Features) == 4 {
				if got := d.Inputs["input"].Float32s(); !reflect.DeepEqual(got, std.Features) {
					t.Fatalf("features %v, encoding/json reads %v", got, std.Features)
				}
			}
		}
	})
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "quo\"te\\", "ctl\x00\x1f\n\t\r", "héllo ✓ 😀", "bad\xffutf8"} {
		b := pipeline.AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Errorf("%q -> %s -> %q", s, b, back)
		}
	}
}

// TestFloatsLikeStrconv checks the decoder's float fast path against
// strconv.ParseFloat on random decimals, including float32 halfway cases.
func TestFloatsLikeStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	num := func() string {
		switch rng.IntN(4) {
		case 0: // a float32 written with all its digits
			return strconv.FormatFloat(float64(float32(rng.NormFloat64()*math.Pow(10, float64(rng.IntN(20)-10)))), 'g', -1, 64)
		case 1: // halfway between two float32s, exactly
			f := float32(rng.Float64() * 1000)
			next := math.Nextafter32(f, float32(math.Inf(1)))
			return strconv.FormatFloat((float64(f)+float64(next))/2, 'g', -1, 64)
		case 2: // random digits and exponent
			var b strings.Builder
			if rng.IntN(2) == 0 {
				b.WriteByte('-')
			}
			b.WriteString(strconv.Itoa(rng.IntN(100000)))
			if rng.IntN(2) == 0 {
				b.WriteString("." + strconv.Itoa(rng.IntN(1e9)))
			}
			if rng.IntN(2) == 0 {
				b.WriteString("e" + strconv.Itoa(rng.IntN(90)-45))
			}
			return b.String()
		default: // many digits
			return "0." + strconv.FormatUint(rng.Uint64(), 10) + strconv.FormatUint(rng.Uint64(), 10)
		}
	}
	for range 100000 {
		x := [4]string{num(), num(), num(), num()}
		d, class, err := pipeline.DecodeRequest([]byte(`{"features":[`+strings.Join(x[:], ",")+`]}`), demoSig, "")
		var want [4]float32
		inRange := true
		for i, s := range x {
			f, perr := strconv.ParseFloat(s, 32)
			if perr != nil {
				inRange = false
			}
			want[i] = float32(f)
		}
		if !inRange {
			if class != pipeline.ClassValidation {
				t.Fatalf("%v: class %q err %v, want a validation error", x, class, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", x, err)
		}
		for i, g := range d.Inputs["input"].Float32s() {
			if math.Float32bits(g) != math.Float32bits(want[i]) {
				t.Fatalf("%s: %v, strconv says %v", x[i], g, want[i])
			}
		}
	}
}
