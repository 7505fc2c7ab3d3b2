package recordcodec_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/recordcodec"
	"github.com/infergate/infergate/inference/tensor"
)

var (
	rowSig = &model.Signature{
		Inputs:  []model.TensorSpec{{Name: "input", DType: tensor.Float, Shape: []int64{-1, 4}}},
		Outputs: []model.TensorSpec{{Name: "score", DType: tensor.Float, Shape: []int64{-1, 1}}},
	}
	mixedSig = &model.Signature{
		Inputs: []model.TensorSpec{
			{Name: "ids", DType: tensor.Int64, Shape: []int64{-1, 2}},
			{Name: "text", DType: tensor.String, Shape: []int64{-1}},
			{Name: "flag", DType: tensor.Bool, Shape: []int64{-1}},
			{Name: "px", DType: tensor.Uint8, Shape: []int64{-1, -1}},
		},
		Outputs: []model.TensorSpec{{Name: "y", DType: tensor.Double, Shape: []int64{-1}}},
	}
)

func decode(b []byte, sig *model.Signature) (*recordcodec.Envelope, []*tensor.Tensor, int64, error) {
	env, err := recordcodec.ParseEnvelope(b)
	if err != nil {
		return nil, nil, 0, err
	}
	ins, rows, err := recordcodec.DecodeInputs(&env, recordcodec.NewSignature(model.DefaultSignature, sig, ""))
	return &env, ins, rows, err
}

// FuzzDecode: the codec alone, as the pipeline's FuzzDecodeRequest tests it
// through the pipeline. Whatever the bytes: no panic, every error has a
// class, only valid JSON is accepted, and what is accepted is well-formed
// tensors that fit the signature.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"request_id":"r-1","features":[0.1,0.2,0.3,0.4]}`,
		`{"request_id":7,"model":"m","version":"2","instances":[[1,2,3,4],[5,6,7,8]]}`,
		`{"inputs":{"input":[[1,2,3,4]]},"signature_name":"serving_default"}`,
		`{"instances":[{"ids":[1,2],"text":{"b64":"AP8="},"flag":true,"px":[1,2]}]}`,
		`{"inputs":{"ids":[[1,2]],"text":["a"],"flag":[false],"px":[[]]}}`,
		`{"features":[1e39,-0,1E-7,123456789012345678901234567890]}`,
		`{"request_id":"\ud83d\ude00\u0000","features":[1,2,3,4],"x":[{"a":[true,false,null]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, sig := range []*model.Signature{rowSig, mixedSig} {
			env, ins, rows, err := decode(b, sig)
			if err != nil {
				var ce *recordcodec.Error
				if !errors.As(err, &ce) || (ce.Class != recordcodec.ClassDecode && ce.Class != recordcodec.ClassValidation) {
					t.Fatalf("error without a class: %v", err)
				}
				continue
			}
			if !json.Valid(b) {
				t.Fatalf("accepted invalid JSON %q", b)
			}
			if env.ID != nil && !json.Valid(env.ID) {
				t.Fatalf("request id %q is not JSON", env.ID)
			}
			for i, in := range sig.Inputs {
				if err := ins[i].Validate(); err != nil {
					t.Fatalf("input %s: %v", in.Name, err)
				}
				if !tensor.Compatible(in.Shape, ins[i].Shape) || ins[i].Shape[0] != rows || ins[i].DType != in.DType {
					t.Fatalf("input %s: %s %v for %v, rows %d", in.Name, ins[i].DType, ins[i].Shape, in.Shape, rows)
				}
			}
		}
	})
}

func TestAppendResult(t *testing.T) {
	env, _, rows, err := decode([]byte(`{"request_id":"r-1","features":[1,2,3,4]}`), rowSig)
	if err != nil {
		t.Fatal(err)
	}
	res := &model.Result{Version: 3, Outputs: map[string]*tensor.Tensor{
		"score": {DType: tensor.Float, Shape: []int64{2, 1}, Data: []float32{0.5, 0.25}}}}
	sent := time.Date(2026, 12, 5, 17, 0, 0, 0, time.UTC)
	got := recordcodec.AppendResult(nil, &recordcodec.Result{Request: env, Model: "demo", Outputs: res,
		Names: recordcodec.OutputNames(rowSig, res), Off: 1, Rows: rows, Batched: true, Sent: sent, Now: sent.Add(1500 * time.Microsecond)})
	want := `{"request_id":"r-1","model":"demo","model_version":3,"prediction":[0.25],"timestamp":"2026-12-05T17:00:00.0015Z","latency_ms":1.500}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func demoRecords(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"request_id":"sensor-7-%d","features":[%.4f,%.4f,%.4f,%.4f]}`,
			i, 20+float64(i%7)/3, 0.01*float64(i%13), 50+float64(i%5), float64(i%3)/7)
	}
	return out
}

// BenchmarkDecodeRecord: parse and decode a short-form request, the hot
// path's common case.
func BenchmarkDecodeRecord(b *testing.B) {
	values := demoRecords(256)
	si := recordcodec.NewSignature(model.DefaultSignature, rowSig, "")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		env, err := recordcodec.ParseEnvelope(values[i%len(values)])
		if err == nil {
			_, _, err = recordcodec.DecodeInputs(&env, si)
		}
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkEncodeResult: one result record of a batch of 64.
func BenchmarkEncodeResult(b *testing.B) {
	env, err := recordcodec.ParseEnvelope([]byte(`{"request_id":"sensor-7-1","features":[1,2,3,4]}`))
	if err != nil {
		b.Fatal(err)
	}
	res := &model.Result{Version: 1, Outputs: map[string]*tensor.Tensor{
		"score": {DType: tensor.Float, Shape: []int64{64, 1}, Data: make([]float32, 64)}}}
	r := &recordcodec.Result{Request: &env, Model: "demo", Outputs: res, Names: recordcodec.OutputNames(rowSig, res),
		Rows: 1, Batched: true, Now: time.Now()}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		r.Off = (r.Off + 1) % 64
		buf = recordcodec.AppendResult(buf[:0], r)
	}
}

// TestEveryDTypeAndItsLimits: each dtype's values land in its Go type, an
// empty list is an empty slice of it, and a value outside the dtype's range
// or not of its kind is refused with the same words for every width.
func TestEveryDTypeAndItsLimits(t *testing.T) {
	for _, tc := range []struct {
		dt   tensor.DType
		in   string
		want any    // Data, when accepted
		err  string // else the error's text
	}{
		{tensor.Float, `[1.5,-2]`, []float32{1.5, -2}, ""},
		{tensor.Float, `[1e39]`, nil, "1e39 is out of range for DT_FLOAT"},
		{tensor.Half, `[0.5,65504]`, []float32{0.5, 65504}, ""},
		{tensor.Half, `[65520]`, nil, "65520 is out of range for DT_HALF"},
		{tensor.Double, `[1e39]`, []float64{1e39}, ""},
		{tensor.Int8, `[-128,127,3.0]`, []int8{-128, 127, 3}, ""},
		{tensor.Int8, `[128]`, nil, "128 is out of range for DT_INT8"},
		{tensor.Uint8, `[0,255]`, []uint8{0, 255}, ""},
		{tensor.Uint8, `[-1]`, nil, "-1 is out of range for DT_UINT8"},
		{tensor.Int16, `[-32769]`, nil, "-32769 is out of range for DT_INT16"},
		{tensor.Int32, `[2147483647]`, []int32{2147483647}, ""},
		{tensor.Int32, `[2147483648]`, nil, "2147483648 is out of range for DT_INT32"},
		{tensor.Int64, `[-9223372036854775808]`, []int64{-9223372036854775808}, ""},
		{tensor.Int64, `[9223372036854775808]`, nil, "9223372036854775808 is out of range for DT_INT64"},
		{tensor.Int64, `[2.5]`, nil, "2.5 is not an integer for DT_INT64"},
		{tensor.Int32, `[true]`, nil, "DT_INT32"},
		{tensor.Bool, `[true,false]`, []bool{true, false}, ""},
		{tensor.Bool, `[1]`, nil, "DT_BOOL"},
		{tensor.String, `["a",{"b64":"AP8="}]`, [][]byte{[]byte("a"), {0, 0xff}}, ""},
		{tensor.String, `[1]`, nil, "DT_STRING"},
	} {
		sig := &model.Signature{
			Inputs:  []model.TensorSpec{{Name: "x", DType: tc.dt, Shape: []int64{-1, -1}}},
			Outputs: []model.TensorSpec{{Name: "y", DType: tensor.Float, Shape: []int64{-1}}},
		}
		_, ins, _, err := decode([]byte(`{"features":`+tc.in+`}`), sig)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %s: err %v, want %q", tc.dt, tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(ins[0].Data, tc.want) {
			t.Errorf("%s %s: %v, %#v; want %#v", tc.dt, tc.in, err, ins, tc.want)
		}
	}
	// A row of no values: an empty slice of the dtype's Go type, not nil.
	for dt, want := range map[tensor.DType]any{tensor.Int16: []int16{}, tensor.String: [][]byte{}, tensor.Half: []float32{}} {
		sig := &model.Signature{
			Inputs:  []model.TensorSpec{{Name: "x", DType: dt, Shape: []int64{-1, -1}}},
			Outputs: []model.TensorSpec{{Name: "y", DType: tensor.Float, Shape: []int64{-1}}},
		}
		_, ins, _, err := decode([]byte(`{"inputs":{"x":[[]]}}`), sig)
		if err != nil || !reflect.DeepEqual(ins[0].Data, want) {
			t.Errorf("%s, no values: %v, %#v; want %#v", dt, err, ins, want)
		}
	}
}
