package modelserver

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

type halfCase struct {
	shape   []int64
	x, want []float32
}

// halfCases reads the float16 MLP's cases (testdata/export_half.py): half
// inputs and numpy's outputs for the float16 model, batch 1 and 5.
func halfCases(t *testing.T) []halfCase {
	t.Helper()
	b, err := os.ReadFile("../onnxrt/testdata/mlp64_fp16.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []struct {
			Inputs, Outputs map[string]struct {
				Shape []int64
				Data  []float32
			}
		}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []halfCase
	for _, c := range f.Cases {
		in := c.Inputs["input"]
		out = append(out, halfCase{in.Shape, in.Data, c.Outputs["output"].Data})
	}
	return out
}

// halfULP is the spacing of halves around w.
func halfULP(w float32) float64 {
	a := math.Abs(float64(w))
	if a < 0x1p-14 {
		return 0x1p-24
	}
	return math.Ldexp(1, int(math.Floor(math.Log2(a)))-10)
}

func halfProto(shape []int64, vals []float32, content bool) *tfpb.TensorProto {
	tp := &tfpb.TensorProto{Dtype: tfpb.DataType_DT_HALF, TensorShape: tensor.ShapeToProto(shape)}
	if content {
		tp.TensorContent = make([]byte, 2*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint16(tp.TensorContent[2*i:], tensor.HalfBits(v))
		}
		return tp
	}
	for _, v := range vals {
		tp.HalfVal = append(tp.HalfVal, int32(tensor.HalfBits(v)))
	}
	return tp
}

// TestFloat16OverTFServingAPI serves the float16 MLP (mlp64_fp16.onnx:
// FLOAT16 weights, input and output) next to its float32 original
// (mlp64.onnx) and predicts over gRPC — half_val and tensor_content — and
// REST, as a TF Serving client of a half-precision model would. The
// signature says DT_HALF, gRPC answers in half_val (tensor_content is the
// same halves), REST in numbers; all three give the same halves, numpy's
// float16-model outputs within a half ulp, and the float32 model's outputs
// (same inputs) within a half ulp too: the weights' rounding to halves moves
// the outputs by less than the outputs' own rounding (0.43 ulp at most).
func TestFloat16OverTFServingAPI(t *testing.T) {
	base16, base32 := t.TempDir(), t.TempDir()
	for _, m := range []struct{ base, file string }{{base16, "mlp64_fp16.onnx"}, {base32, "mlp64.onnx"}} {
		b, err := os.ReadFile("../onnxrt/testdata/" + m.file)
		if err != nil {
			t.Fatal(err)
		}
		writeVersion(t, m.base, 1, b)
	}
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "mlp16", BasePath: base16}, tfserving.ModelConfig{Name: "mlp32", BasePath: base32}))
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()
	rest := "http://" + s.RESTAddr() + "/v1/models/mlp16:predict"

	md, err := c.pred.GetModelMetadata(ctx, &servingpb.GetModelMetadataRequest{ModelSpec: specFor("mlp16"), MetadataField: []string{"signature_def"}})
	if err != nil {
		t.Fatal(err)
	}
	var sdm servingpb.SignatureDefMap
	if err := md.Metadata["signature_def"].UnmarshalTo(&sdm); err != nil {
		t.Fatal(err)
	}
	sd := sdm.SignatureDef["serving_default"]
	if sd.Inputs["input"].GetDtype() != tfpb.DataType_DT_HALF || sd.Outputs["output"].GetDtype() != tfpb.DataType_DT_HALF {
		t.Fatalf("signature %v: want DT_HALF input and output", sd)
	}

	predict := func(model string, in *tfpb.TensorProto) (*tfpb.TensorProto, error) {
		resp, err := c.pred.Predict(ctx, &servingpb.PredictRequest{ModelSpec: specFor(model), Inputs: map[string]*tfpb.TensorProto{"input": in}})
		if err != nil {
			return nil, err
		}
		return resp.Outputs["output"], nil
	}
	worst := 0.0 // half ulps between the float16 and float32 models
	for ci, tc := range halfCases(t) {
		out32, err := predict("mlp32", floatProto(tc.shape, tc.x, false))
		if err != nil {
			t.Fatal(err)
		}
		ref32 := out32.FloatVal
		var got []float32 // the halves of the first answer; every other must equal them
		check := func(how string, vals []float32) {
			t.Helper()
			if len(vals) != len(tc.want) {
				t.Fatalf("case %d %s: %d values, want %d", ci, how, len(vals), len(tc.want))
			}
			for i, v := range vals {
				if h := tensor.HalfFromBits(tensor.HalfBits(v)); h != v {
					t.Fatalf("case %d %s: value %d = %v is not a half", ci, how, i, v)
				}
				if d := math.Abs(float64(v - tc.want[i])); d > halfULP(tc.want[i]) {
					t.Fatalf("case %d %s: value %d = %v, numpy's float16 model %v", ci, how, i, v, tc.want[i])
				}
				// The float32 model, from the same (half) inputs: the
				// difference is the weights' rounding to halves.
				worst = max(worst, math.Abs(float64(v-ref32[i]))/halfULP(ref32[i]))
				if d := math.Abs(float64(v - ref32[i])); d > halfULP(ref32[i]) {
					t.Fatalf("case %d %s: value %d = %v, the float32 model %v (%.1f half ulps apart)", ci, how, i, v, ref32[i], d/halfULP(ref32[i]))
				}
			}
			if got == nil {
				got = vals
			} else if !slices.Equal(vals, got) {
				t.Fatalf("case %d %s: %v, other encodings gave %v", ci, how, vals, got)
			}
		}

		for _, content := range []bool{false, true} {
			how := fmt.Sprintf("gRPC content=%v", content)
			out, err := predict("mlp16", halfProto(tc.shape, tc.x, content))
			if err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			// TF Serving answers in typed fields: half_val, bit patterns.
			if out.Dtype != tfpb.DataType_DT_HALF || len(out.HalfVal) != len(tc.want) || len(out.FloatVal) != 0 || len(out.TensorContent) != 0 {
				t.Fatalf("%s: output %v, want DT_HALF in half_val", how, out)
			}
			vals := make([]float32, len(out.HalfVal))
			for i, h := range out.HalfVal {
				if h < 0 || h > 0xffff {
					t.Fatalf("%s: half_val %d is %#x, not a 16-bit pattern", how, i, h)
				}
				vals[i] = tensor.HalfFromBits(uint16(h))
			}
			check(how, vals)
		}

		// A DT_FLOAT request to the DT_HALF input: accepted (an extension;
		// TF Serving refuses it) and rounded.
		out, err := predict("mlp16", floatProto(tc.shape, tc.x, false))
		if err != nil {
			t.Fatalf("DT_FLOAT request: %v", err)
		}
		if out.Dtype != tfpb.DataType_DT_HALF {
			t.Fatalf("DT_FLOAT request: output %v", out)
		}
		dec, err := tensor.FromProto(out)
		if err != nil {
			t.Fatal(err)
		}
		check("DT_FLOAT request", dec.Float32s())

		// REST: numbers in, numbers out, row and columnar.
		rows := make([][]float32, tc.shape[0])
		for r := range rows {
			rows[r] = tc.x[r*16 : (r+1)*16]
		}
		code, body, _ := httpDo(t, "POST", rest, `{"instances": `+jsonRows(rows)+`}`)
		if code != 200 {
			t.Fatalf("REST row: %d %s", code, body)
		}
		var row struct{ Predictions [][]float32 }
		if err := json.Unmarshal(body, &row); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		check("REST instances", slices.Concat(row.Predictions...))
		code, body, _ = httpDo(t, "POST", rest, `{"inputs": {"input": `+jsonRows(rows)+`}}`)
		if code != 200 {
			t.Fatalf("REST columnar: %d %s", code, body)
		}
		var col struct{ Outputs [][]float32 }
		if err := json.Unmarshal(body, &col); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		check("REST inputs", slices.Concat(col.Outputs...))
	}

	t.Logf("float16 model vs float32 model: at most %.2f half ulps apart", worst)

	// Content that is not 2 bytes per value is refused, as TF does.
	bad := halfProto([]int64{1, 16}, make([]float32, 16), true)
	bad.TensorContent = bad.TensorContent[:31]
	if _, err := predict("mlp16", bad); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("31 bytes of DT_HALF content for 16 values: %v", err)
	}
	// A DT_HALF request to a DT_FLOAT input is refused.
	if _, err := predict("mlp32", halfProto([]int64{1, 16}, make([]float32, 16), false)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("DT_HALF request to a DT_FLOAT input: %v", err)
	}
}
