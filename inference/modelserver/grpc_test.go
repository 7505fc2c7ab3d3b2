package modelserver

import (
	"context"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

func floatProto(shape []int64, vals []float32, content bool) *tfpb.TensorProto {
	tp := &tfpb.TensorProto{Dtype: tfpb.DataType_DT_FLOAT, TensorShape: tensor.ShapeToProto(shape)}
	if content {
		b := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		tp.TensorContent = b
	} else {
		tp.FloatVal = vals
	}
	return tp
}

func specFor(name string) *servingpb.ModelSpec { return &servingpb.ModelSpec{Name: name} }

func TestPredictDemoOverGRPCAndInProcess(t *testing.T) {
	s := startServer(t, testConfig(demoRepo(t)))
	c := dial(t, s.GRPCAddr())
	ref := loadDemoCase(t)
	ctx := context.Background()

	for _, content := range []bool{false, true} {
		resp, err := c.pred.Predict(ctx, &servingpb.PredictRequest{
			ModelSpec: specFor(demo.Name),
			Inputs:    map[string]*tfpb.TensorProto{demo.InputName: floatProto([]int64{ref.Rows, 16}, ref.Input, content)},
		})
		if err != nil {
			t.Fatalf("content=%v: %v", content, err)
		}
		out := resp.Outputs[demo.OutputName]
		// Typed fields by default, as TF.
		if len(out.TensorContent) != 0 || len(out.FloatVal) != int(ref.Rows) {
			t.Fatalf("output not in float_val: %v", out)
		}
		if got := tensor.ShapeString(mustShape(t, out)); got != "["+itoa(ref.Rows)+",1]" {
			t.Fatalf("output shape %s", got)
		}
		if err := near(out.FloatVal, ref.Output, 1e-5); err != nil {
			t.Fatal(err)
		}
		ms := resp.ModelSpec
		if ms.GetName() != demo.Name || ms.GetVersion().GetValue() != 1 || ms.GetSignatureName() != "serving_default" {
			t.Fatalf("model_spec %v", ms)
		}
	}

	res, err := s.InProcess().Predict(ctx, model.Spec{Name: demo.Name},
		map[string]*tensor.Tensor{demo.InputName: tensor.FromFloat32(ref.Input, ref.Rows, 16)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 1 {
		t.Fatalf("version %d", res.Version)
	}
	if err := near(res.Outputs[demo.OutputName].Float32s(), ref.Output, 1e-5); err != nil {
		t.Fatal(err)
	}
}

func mustShape(t *testing.T, tp *tfpb.TensorProto) []int64 {
	t.Helper()
	s, err := tensor.ShapeFromProto(tp.TensorShape)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestPredictEveryDType sends each dtype the runtime computes with (float32
// and int64), in both encodings, through an Identity model and expects the
// values back; every other dtype TF has must be refused with
// INVALID_ARGUMENT naming the dtypes, decoded or not.
func TestPredictEveryDType(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, identityModel(t,
		vi{"f32", onnxFloat, []int64{-1, 2}},
		vi{"i64", onnxInt64, []int64{-1, 2}},
	))
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "id", BasePath: base}))
	c := dial(t, s.GRPCAddr())

	inputs := map[string]*tensor.Tensor{
		"f32": {DType: tensor.Float, Shape: []int64{2, 2}, Data: []float32{1.5, -2, float32(math.Inf(1)), float32(math.NaN())}},
		"i64": {DType: tensor.Int64, Shape: []int64{2, 2}, Data: []int64{math.MaxInt64, -2, math.MinInt64, 4}},
	}
	for _, content := range []bool{false, true} {
		req := &servingpb.PredictRequest{ModelSpec: specFor("id"), Inputs: map[string]*tfpb.TensorProto{}}
		for name, in := range inputs {
			tp, err := tensor.ToProto(in, content)
			if err != nil {
				t.Fatal(err)
			}
			req.Inputs[name] = tp
		}
		resp, err := c.pred.Predict(context.Background(), req)
		if err != nil {
			t.Fatalf("content=%v: %v", content, err)
		}
		for name, in := range inputs {
			tp := resp.Outputs[name+"_out"]
			if tp == nil {
				t.Fatalf("no output %s_out", name)
			}
			if tp.Dtype != tfpb.DataType(in.DType) {
				t.Errorf("%s: dtype %v", name, tp.Dtype)
			}
			if len(tp.TensorContent) != 0 {
				t.Errorf("%s: answered with tensor_content, TF answers typed fields", name)
			}
			got, err := tensor.FromProto(tp)
			if err != nil {
				t.Fatal(err)
			}
			if !tensor.Equal(got, in) {
				t.Errorf("content=%v %s: got %v, want %v", content, name, got.Data, in.Data)
			}
		}
	}

	// In-process, same model.
	res, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "id"}, inputs)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range inputs {
		if !tensor.Equal(res.Outputs[name+"_out"], in) {
			t.Errorf("in-process %s: got %v", name, res.Outputs[name+"_out"].Data)
		}
	}

	// Every other dtype, sent where float32 is expected, in both encodings.
	others := []*tensor.Tensor{
		{DType: tensor.Double, Shape: []int64{1, 2}, Data: []float64{1, 2}},
		{DType: tensor.Int32, Shape: []int64{1, 2}, Data: []int32{1, 2}},
		{DType: tensor.Uint8, Shape: []int64{1, 2}, Data: []uint8{1, 2}},
		{DType: tensor.Int16, Shape: []int64{1, 2}, Data: []int16{1, 2}},
		{DType: tensor.Int8, Shape: []int64{1, 2}, Data: []int8{1, 2}},
		{DType: tensor.Bool, Shape: []int64{1, 2}, Data: []bool{true, false}},
		{DType: tensor.String, Shape: []int64{1, 2}, Data: [][]byte{[]byte("a"), []byte("b")}},
		{DType: tensor.Int64, Shape: []int64{1, 2}, Data: []int64{1, 2}},
	}
	for _, o := range others {
		for _, content := range []bool{false, true} {
			tp, err := tensor.ToProto(o, content)
			if err != nil {
				t.Fatal(err)
			}
			i64, _ := tensor.ToProto(&tensor.Tensor{DType: tensor.Int64, Shape: []int64{1, 2}, Data: []int64{1, 2}}, false)
			_, err = c.pred.Predict(context.Background(), &servingpb.PredictRequest{ModelSpec: specFor("id"),
				Inputs: map[string]*tfpb.TensorProto{"f32": tp, "i64": i64}})
			want := `input "f32": expects dtype DT_FLOAT, got ` + o.DType.String()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), want) {
				t.Errorf("%s content=%v: got %v, want INVALID_ARGUMENT %q", o.DType, content, err, want)
			}
		}
		_, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "id"},
			map[string]*tensor.Tensor{"f32": o, "i64": inputs["i64"]})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("in-process %s: %v", o.DType, err)
		}
	}
}

// A model whose graph uses a dtype the runtime cannot compute with ends with
// a clear error instead of serving.
func TestUnsupportedModelEndsWithError(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, identityModel(t, vi{"d", onnxUint16, []int64{-1}}))
	s, err := New(testConfig(tfserving.ModelConfig{Name: "dbl", BasePath: base}), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.m.pollAll(true)
	ms := s.Models()[0]
	if len(ms.Versions) != 1 || ms.Versions[0].State != StateEnd || ms.Versions[0].Code != codes.InvalidArgument ||
		!strings.Contains(ms.Versions[0].Error, "UINT16") {
		t.Fatalf("status %+v", ms.Versions)
	}
	if s.Ready() {
		t.Fatal("ready without an available version")
	}
}

func TestMetadataAndStatusOverGRPC(t *testing.T) {
	s := startServer(t, testConfig(demoRepo(t)))
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()

	md, err := c.pred.GetModelMetadata(ctx, &servingpb.GetModelMetadataRequest{ModelSpec: specFor(demo.Name), MetadataField: []string{"signature_def"}})
	if err != nil {
		t.Fatal(err)
	}
	if md.ModelSpec.GetName() != demo.Name || md.ModelSpec.GetVersion().GetValue() != 1 {
		t.Fatalf("model_spec %v", md.ModelSpec)
	}
	var sdm servingpb.SignatureDefMap
	if err := md.Metadata["signature_def"].UnmarshalTo(&sdm); err != nil {
		t.Fatal(err)
	}
	sd := sdm.SignatureDef["serving_default"]
	if sd == nil || sd.MethodName != "tensorflow/serving/predict" {
		t.Fatalf("signature %v", sd)
	}
	in := sd.Inputs[demo.InputName]
	if in.GetDtype() != tfpb.DataType_DT_FLOAT || in.GetName() != demo.InputName ||
		!slices.Equal(dims(in.GetTensorShape()), []int64{-1, 16}) {
		t.Fatalf("input %v", in)
	}
	out := sd.Outputs[demo.OutputName]
	if out.GetDtype() != tfpb.DataType_DT_FLOAT || !slices.Equal(dims(out.GetTensorShape()), []int64{-1, 1}) {
		t.Fatalf("output %v", out)
	}

	st, err := c.models.GetModelStatus(ctx, &servingpb.GetModelStatusRequest{ModelSpec: specFor(demo.Name)})
	if err != nil {
		t.Fatal(err)
	}
	want := &servingpb.GetModelStatusResponse{ModelVersionStatus: []*servingpb.ModelVersionStatus{{
		Version: 1, State: servingpb.ModelVersionStatus_AVAILABLE, Status: &servingpb.StatusProto{},
	}}}
	if !proto.Equal(st, want) {
		t.Fatalf("status %v", st)
	}

	// In-process metadata agrees.
	lm, err := s.InProcess().Metadata(ctx, model.Spec{Name: demo.Name})
	if err != nil {
		t.Fatal(err)
	}
	sig := lm.Signatures[model.DefaultSignature]
	if lm.Version != 1 || sig == nil || sig.Inputs[0].Name != demo.InputName || !slices.Equal(sig.Inputs[0].Shape, []int64{-1, 16}) {
		t.Fatalf("in-process metadata %+v", lm)
	}

	// The health service says SERVING once ready.
	hc, err := healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health %v %v", hc, err)
	}
}

func dims(s *tfpb.TensorShapeProto) []int64 {
	var d []int64
	for _, x := range s.GetDim() {
		d = append(d, x.GetSize())
	}
	return d
}

// errCase is one bad request with TF's code and a piece of its message.
type errCase struct {
	name string
	req  *servingpb.PredictRequest
	code codes.Code
	msg  string
}

func demoErrorCases() []errCase {
	good := func() map[string]*tfpb.TensorProto {
		return map[string]*tfpb.TensorProto{"input": floatProto([]int64{1, 16}, make([]float32, 16), false)}
	}
	withSpec := func(ms *servingpb.ModelSpec, in map[string]*tfpb.TensorProto) *servingpb.PredictRequest {
		return &servingpb.PredictRequest{ModelSpec: ms, Inputs: in}
	}
	twoInputs := good()
	twoInputs["extra"] = floatProto([]int64{1}, []float32{1}, false)
	renamed := map[string]*tfpb.TensorProto{"inputz": floatProto([]int64{1, 16}, make([]float32, 16), false)}
	wrongType := map[string]*tfpb.TensorProto{"input": {Dtype: tfpb.DataType_DT_INT32, TensorShape: tensor.ShapeToProto([]int64{1, 16}), IntVal: []int32{1}}}
	badShape := map[string]*tfpb.TensorProto{"input": floatProto([]int64{2, 3}, make([]float32, 6), false)}
	badContent := map[string]*tfpb.TensorProto{"input": {Dtype: tfpb.DataType_DT_FLOAT, TensorShape: tensor.ShapeToProto([]int64{1, 16}), TensorContent: []byte{1, 2, 3}}}
	filtered := withSpec(specFor("demo"), good())
	filtered.OutputFilter = []string{"nope"}
	dup := withSpec(specFor("demo"), good())
	dup.OutputFilter = []string{"output", "output"}
	return []errCase{
		{"missing model_spec", &servingpb.PredictRequest{Inputs: good()}, codes.InvalidArgument, "Missing ModelSpec"},
		{"unknown model", withSpec(specFor("nope"), good()), codes.NotFound, "Servable not found for request: Latest(nope)"},
		{"unknown version", withSpec(&servingpb.ModelSpec{Name: "demo", VersionChoice: &servingpb.ModelSpec_Version{Version: wrapperspb.Int64(7)}}, good()),
			codes.NotFound, "Servable not found for request: Specific(demo, 7)"},
		{"unknown label", withSpec(&servingpb.ModelSpec{Name: "demo", VersionChoice: &servingpb.ModelSpec_VersionLabel{VersionLabel: "canary"}}, good()),
			codes.InvalidArgument, "Unrecognized servable version label: canary"},
		{"unknown signature", withSpec(&servingpb.ModelSpec{Name: "demo", SignatureName: "sig2"}, good()),
			codes.FailedPrecondition, `Serving signature key "sig2" not found.`},
		{"input count", withSpec(specFor("demo"), twoInputs), codes.InvalidArgument, "input size does not match signature: 2!=1 len({extra,input}) != len({input}). Sent extra: {extra}. Missing but required: {}."},
		{"no inputs", withSpec(specFor("demo"), nil), codes.InvalidArgument, "input size does not match signature"},
		{"unknown input", withSpec(specFor("demo"), renamed), codes.InvalidArgument, "input tensor alias not found in signature: inputz. Inputs expected to be in the set {input}."},
		{"wrong dtype", withSpec(specFor("demo"), wrongType), codes.InvalidArgument, `input "input": expects dtype DT_FLOAT, got DT_INT32`},
		{"bad shape", withSpec(specFor("demo"), badShape), codes.InvalidArgument, `input "input": shape [2,3] is not compatible with the signature's shape [-1,16]`},
		{"bad tensor_content", withSpec(specFor("demo"), badContent), codes.InvalidArgument, "tensor parsing error: input"},
		{"unknown output alias", filtered, codes.InvalidArgument, "output tensor alias not found in signature: nope"},
		{"duplicate output alias", dup, codes.InvalidArgument, "duplicate output tensor alias: output"},
	}
}

func TestPredictErrorsOverGRPC(t *testing.T) {
	s := startServer(t, testConfig(demoRepo(t)))
	c := dial(t, s.GRPCAddr())
	for _, tc := range demoErrorCases() {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.pred.Predict(context.Background(), tc.req)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("got %v (%v), want %v containing %q", status.Code(err), err, tc.code, tc.msg)
			}
		})
	}
	// Metadata and status errors.
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"metadata no field", func() error {
			_, err := c.pred.GetModelMetadata(ctx, &servingpb.GetModelMetadataRequest{ModelSpec: specFor("demo")})
			return err
		}, codes.InvalidArgument, "must specify at least one metadata_field"},
		{"metadata bad field", func() error {
			_, err := c.pred.GetModelMetadata(ctx, &servingpb.GetModelMetadataRequest{ModelSpec: specFor("demo"), MetadataField: []string{"x"}})
			return err
		}, codes.InvalidArgument, "Metadata field x is not supported"},
		{"metadata unknown model", func() error {
			_, err := c.pred.GetModelMetadata(ctx, &servingpb.GetModelMetadataRequest{ModelSpec: specFor("nope"), MetadataField: []string{"signature_def"}})
			return err
		}, codes.NotFound, "Servable not found for request: Latest(nope)"},
		{"status unknown model", func() error {
			_, err := c.models.GetModelStatus(ctx, &servingpb.GetModelStatusRequest{ModelSpec: specFor("nope")})
			return err
		}, codes.NotFound, "Could not find any versions of model nope"},
		{"status unknown version", func() error {
			_, err := c.models.GetModelStatus(ctx, &servingpb.GetModelStatusRequest{ModelSpec: &servingpb.ModelSpec{Name: "demo",
				VersionChoice: &servingpb.ModelSpec_Version{Version: wrapperspb.Int64(9)}}})
			return err
		}, codes.NotFound, "Could not find version 9 of model demo"},
		{"status missing spec", func() error {
			_, err := c.models.GetModelStatus(ctx, &servingpb.GetModelStatusRequest{})
			return err
		}, codes.InvalidArgument, "Missing ModelSpec"},
		{"reload custom config", func() error {
			_, err := c.models.HandleReloadConfigRequest(ctx, &servingpb.ReloadConfigRequest{Config: &servingpb.ModelServerConfig{}})
			return err
		}, codes.InvalidArgument, "Only ModelConfigList is currently supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.code, tc.msg)
			}
		})
	}

	// In-process: the same codes for the same mistakes.
	l := s.InProcess()
	for _, tc := range []struct {
		name string
		spec model.Spec
		in   map[string]*tensor.Tensor
		code codes.Code
	}{
		{"unknown model", model.Spec{Name: "nope"}, nil, codes.NotFound},
		{"unknown version", model.Spec{Name: "demo", Version: 3}, nil, codes.NotFound},
		{"unknown label", model.Spec{Name: "demo", Label: "x"}, nil, codes.InvalidArgument},
		{"unknown signature", model.Spec{Name: "demo", Signature: "x"}, nil, codes.FailedPrecondition},
		{"input count", model.Spec{Name: "demo"}, map[string]*tensor.Tensor{}, codes.InvalidArgument},
		{"wrong dtype", model.Spec{Name: "demo"}, map[string]*tensor.Tensor{"input": {DType: tensor.Int64, Shape: []int64{1, 16}, Data: make([]int64, 16)}}, codes.InvalidArgument},
		{"bad shape", model.Spec{Name: "demo"}, map[string]*tensor.Tensor{"input": tensor.FromFloat32(make([]float32, 15), 1, 15)}, codes.InvalidArgument},
		{"short data", model.Spec{Name: "demo"}, map[string]*tensor.Tensor{"input": tensor.FromFloat32(make([]float32, 15), 1, 16)}, codes.InvalidArgument},
		{"nil tensor", model.Spec{Name: "demo"}, map[string]*tensor.Tensor{"input": nil}, codes.InvalidArgument},
	} {
		t.Run("inprocess "+tc.name, func(t *testing.T) {
			_, err := l.Predict(context.Background(), tc.spec, tc.in)
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
		})
	}
	ctx2, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Predict(ctx2, model.Spec{Name: "demo"}, map[string]*tensor.Tensor{"input": tensor.FromFloat32(make([]float32, 16), 1, 16)}); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled context: %v", err)
	}
}
