package tfserving_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/inference/tfserving/tfservingtest"
	"github.com/infergate/infergate/proto/servingpb"
)

// with is c changed by mod: a default config with a test's own settings.
func with[C any](c C, mod func(*C)) C {
	mod(&c)
	return c
}

func dial(t testing.TB, cfg tfserving.Config) *tfserving.Client {
	t.Helper()
	c, err := tfserving.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func start(t testing.TB) (*tfservingtest.Service, *tfserving.Client) {
	t.Helper()
	svc := tfservingtest.NewService()
	return svc, dial(t, tfserving.DefaultConfig(tfservingtest.Start(t, svc)))
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	if got := status.Code(err); got != code {
		t.Fatalf("status.Code = %s, want %s (err: %v)", got, code, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not contain %q", err, msg)
	}
}

func TestPredictArithmeticAndVersions(t *testing.T) {
	_, c := start(t)
	ctx := context.Background()
	in := map[string]*tensor.Tensor{
		"x": tensor.FromFloat32([]float32{1, 2, 3, 4}, 2, 2),
		"y": tensor.FromFloat32([]float32{10, 20, 30, 40}, 2, 2),
	}
	for _, tc := range []struct {
		spec    model.Spec
		version int64
	}{
		{model.Spec{Name: "arith"}, 2},
		{model.Spec{Name: "arith", Version: 1}, 1},
		{model.Spec{Name: "arith", Label: "stable"}, 1},
		{model.Spec{Name: "arith", Label: "canary", Signature: model.DefaultSignature}, 2},
	} {
		res, err := c.Predict(ctx, tc.spec, in)
		if err != nil {
			t.Fatalf("%+v: %v", tc.spec, err)
		}
		if res.Version != tc.version {
			t.Errorf("%+v served by version %d, want %d", tc.spec, res.Version, tc.version)
		}
		want := map[string][]float32{"sum": {11, 22, 33, 44}, "product": {10, 40, 90, 160}}
		for name, w := range want {
			out := res.Outputs[name]
			if out == nil || !reflect.DeepEqual(out.Float32s(), w) || tensor.ShapeString(out.Shape) != "[2,2]" {
				t.Errorf("%s = %+v, want %v [2,2]", name, out, w)
			}
		}
	}
	res, err := c.Predict(ctx, model.Spec{Name: "arith", Signature: "scale"}, map[string]*tensor.Tensor{"x": in["x"]})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Outputs["scaled"].Float32s(); !reflect.DeepEqual(got, []float32{2, 4, 6, 8}) {
		t.Errorf("scaled = %v", got)
	}
}

// Every dtype travels to the server as the client encodes it and back in
// both of the server's encodings.
func TestPredictEveryDTypeBothEncodings(t *testing.T) {
	_, c := start(t)
	in := map[string]*tensor.Tensor{
		"f32": {DType: tensor.Float, Shape: []int64{3}, Data: []float32{1.5, -2, 3e30}},
		"f64": {DType: tensor.Double, Shape: []int64{2}, Data: []float64{1e-300, -7}},
		"i32": {DType: tensor.Int32, Shape: []int64{2}, Data: []int32{-5, 1 << 30}},
		"i64": {DType: tensor.Int64, Shape: []int64{2}, Data: []int64{-1 << 62, 3}},
		"b":   {DType: tensor.Bool, Shape: []int64{3}, Data: []bool{true, false, true}},
		"s":   {DType: tensor.String, Shape: []int64{2}, Data: [][]byte{[]byte("a"), {0xff, 0}}},
		"u8":  {DType: tensor.Uint8, Shape: []int64{2}, Data: []uint8{0, 255}},
		"i16": {DType: tensor.Int16, Shape: []int64{2}, Data: []int16{-300, 300}},
		"i8":  {DType: tensor.Int8, Shape: []int64{2}, Data: []int8{-100, 100}},
	}
	for _, sig := range []string{"", "content"} {
		res, err := c.Predict(context.Background(), model.Spec{Name: "echo", Signature: sig}, in)
		if err != nil {
			t.Fatalf("signature %q: %v", sig, err)
		}
		for name, want := range in {
			if got := res.Outputs[name]; got == nil || !tensor.Equal(got, want) {
				t.Errorf("signature %q: %s came back as %+v, want %+v", sig, name, got, want)
			}
		}
	}
}

func TestPredictErrorsKeepCodes(t *testing.T) {
	_, c := start(t)
	ctx := context.Background()
	x := tensor.FromFloat32([]float32{1, 2}, 1, 2)

	_, err := c.Predict(ctx, model.Spec{Name: "nope"}, map[string]*tensor.Tensor{"x": x})
	wantCode(t, err, codes.NotFound, "Servable not found for request: Latest(nope)")
	_, err = c.Predict(ctx, model.Spec{Name: "arith", Version: 9}, map[string]*tensor.Tensor{"x": x})
	wantCode(t, err, codes.NotFound, "Specific(arith, 9)")
	_, err = c.Predict(ctx, model.Spec{Name: "arith"}, map[string]*tensor.Tensor{"x": x})
	wantCode(t, err, codes.InvalidArgument, "input size does not match signature")
	_, err = c.Predict(ctx, model.Spec{Name: "arith"}, map[string]*tensor.Tensor{
		"x": x, "y": {DType: tensor.Double, Shape: []int64{1, 2}, Data: []float64{1, 2}},
	})
	wantCode(t, err, codes.InvalidArgument, "DT_DOUBLE")
	_, err = c.Predict(ctx, model.Spec{Name: "arith", Signature: "nosuch"}, map[string]*tensor.Tensor{"x": x})
	wantCode(t, err, codes.FailedPrecondition, "nosuch")

	// Refused locally with the code the server would have used.
	_, err = c.Predict(ctx, model.Spec{Name: "arith", Version: 1, Label: "stable"}, nil)
	wantCode(t, err, codes.InvalidArgument, "both version")
	_, err = c.Predict(ctx, model.Spec{Name: "arith"}, map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{1}, 2, 2)})
	wantCode(t, err, codes.InvalidArgument, `input "x"`)

	// The wrapped error still unwraps to the gRPC status.
	_, err = c.Predict(ctx, model.Spec{Name: "nope"}, nil)
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) || se.GRPCStatus().Code() != codes.NotFound {
		t.Errorf("error %v does not carry its gRPC status", err)
	}
}

func TestDeadlines(t *testing.T) {
	svc := tfservingtest.NewService()
	addr := tfservingtest.Start(t, svc)
	x := map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{1}, 1)}

	// No deadline on the context: Config.Timeout applies.
	c := dial(t, with(tfserving.DefaultConfig(addr), func(c *tfserving.Config) { c.Timeout = 50 * time.Millisecond }))
	_, err := c.Predict(context.Background(), model.Spec{Name: "slow"}, x)
	wantCode(t, err, codes.DeadlineExceeded, "slow")

	// The context's own deadline wins over a long Timeout.
	c = dial(t, with(tfserving.DefaultConfig(addr), func(c *tfserving.Config) { c.Timeout = time.Hour }))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Predict(ctx, model.Spec{Name: "slow"}, x)
	wantCode(t, err, codes.DeadlineExceeded, "")
}

func TestUnavailableServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	c := dial(t, with(tfserving.DefaultConfig(addr), func(c *tfserving.Config) { c.Timeout = 2 * time.Second }))
	_, err = c.Predict(context.Background(), model.Spec{Name: "arith"}, nil)
	wantCode(t, err, codes.Unavailable, addr)
}

func TestLargeResponses(t *testing.T) {
	svc := tfservingtest.NewService()
	addr := tfservingtest.Start(t, svc)
	n := map[string]*tensor.Tensor{"n": {DType: tensor.Int64, Shape: []int64{}, Data: []int64{2 << 20}}} // 8 MiB of floats

	res, err := dial(t, tfserving.DefaultConfig(addr)).Predict(context.Background(), model.Spec{Name: "big"}, n)
	if err != nil {
		t.Fatalf("an 8 MiB response failed with the default limit: %v", err)
	}
	if got := res.Outputs["out"].Len(); got != 2<<20 {
		t.Errorf("got %d values", got)
	}
	_, err = dial(t, with(tfserving.DefaultConfig(addr), func(c *tfserving.Config) { c.MaxRecvMsgSize = 1 << 20 })).Predict(context.Background(), model.Spec{Name: "big"}, n)
	wantCode(t, err, codes.ResourceExhausted, "")
}

func TestMetadata(t *testing.T) {
	_, c := start(t)
	md, err := c.Metadata(context.Background(), model.Spec{Name: "arith"})
	if err != nil {
		t.Fatal(err)
	}
	if md.Name != "arith" || md.Version != 2 || len(md.Signatures) != 2 {
		t.Fatalf("metadata = %+v", md)
	}
	want := &model.Signature{
		Method:  model.PredictMethod,
		Inputs:  []model.TensorSpec{{Name: "x", DType: tensor.Float, Shape: []int64{-1, 2}}, {Name: "y", DType: tensor.Float, Shape: []int64{-1, 2}}},
		Outputs: []model.TensorSpec{{Name: "product", DType: tensor.Float, Shape: []int64{-1, 2}}, {Name: "sum", DType: tensor.Float, Shape: []int64{-1, 2}}},
	}
	if got := md.Signatures[model.DefaultSignature]; !reflect.DeepEqual(got, want) {
		t.Errorf("serving_default = %+v, want %+v", got, want)
	}
	md, err = c.Metadata(context.Background(), model.Spec{Name: "arith", Label: "stable"})
	if err != nil || md.Version != 1 {
		t.Errorf("metadata of label stable = %+v, %v", md, err)
	}
	_, err = c.Metadata(context.Background(), model.Spec{Name: "nope"})
	wantCode(t, err, codes.NotFound, "Latest(nope)")
}

func TestStatus(t *testing.T) {
	_, c := start(t)
	ctx := context.Background()
	st, err := c.Status(ctx, "arith", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Version != 2 || st[1].Version != 1 || !st[0].Available() || st[0].ErrorCode != codes.OK {
		t.Errorf("status of arith = %+v", st)
	}
	st, err = c.Status(ctx, "broken", 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []tfserving.VersionStatus{{Version: 3, State: "END", ErrorCode: codes.Unknown, ErrorMessage: "Failed to load: model.onnx is truncated"}}; !reflect.DeepEqual(st, want) {
		t.Errorf("status of broken/3 = %+v, want %+v", st, want)
	}
	_, err = c.Status(ctx, "arith", 7)
	wantCode(t, err, codes.NotFound, "version 7")
	_, err = c.Status(ctx, "", 0)
	wantCode(t, err, codes.InvalidArgument, "no model name")
}

func TestReload(t *testing.T) {
	svc, c := start(t)
	ctx := context.Background()
	cfg := &servingpb.ModelServerConfig{Config: &servingpb.ModelServerConfig_ModelConfigList{ModelConfigList: &servingpb.ModelConfigList{
		Config: []*servingpb.ModelConfig{{Name: "demo", BasePath: "/models/demo", ModelPlatform: "tensorflow"}},
	}}}
	if err := c.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if got := svc.Reloads(); len(got) != 1 || got[0].GetModelConfigList().GetConfig()[0].GetBasePath() != "/models/demo" {
		t.Errorf("server saw %v", got)
	}
	bad := &servingpb.ModelServerConfig{Config: &servingpb.ModelServerConfig_ModelConfigList{ModelConfigList: &servingpb.ModelConfigList{
		Config: []*servingpb.ModelConfig{{BasePath: "/x"}},
	}}}
	wantCode(t, c.Reload(ctx, bad), codes.InvalidArgument, "no name")
	wantCode(t, c.Reload(ctx, nil), codes.InvalidArgument, "nil config")
}

func TestRawStubsAndClose(t *testing.T) {
	svc := tfservingtest.NewService()
	addr := tfservingtest.Start(t, svc)
	c, err := tfserving.Dial(tfserving.DefaultConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Models().GetModelStatus(context.Background(), &servingpb.GetModelStatusRequest{ModelSpec: tfserving.SpecToProto(model.Spec{Name: "echo"})})
	if err != nil || len(resp.ModelVersionStatus) != 1 {
		t.Fatalf("raw GetModelStatus = %v, %v", resp, err)
	}
	if _, err := c.Prediction().GetModelMetadata(context.Background(), &servingpb.GetModelMetadataRequest{ModelSpec: tfserving.SpecToProto(model.Spec{Name: "echo"})}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("metadata without fields: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = c.Status(context.Background(), "echo", 0)
	wantCode(t, err, codes.Canceled, "")
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg     tfserving.Config
		setting string
	}{
		{tfserving.Config{}, "Address"},
		{with(tfserving.DefaultConfig("x:1"), func(c *tfserving.Config) { c.Timeout = -1 }), "Timeout"},
		{with(tfserving.DefaultConfig("x:1"), func(c *tfserving.Config) { c.MaxRecvMsgSize = -5 }), "MaxRecvMsgSize"},
		{with(tfserving.DefaultConfig("x:1"), func(c *tfserving.Config) { c.MaxRecvMsgSize = 1 << 32 }), "MaxRecvMsgSize"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.setting) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.setting)
		}
		if _, err := tfserving.Dial(tc.cfg); err == nil {
			t.Errorf("Dial(%+v) accepted", tc.cfg)
		}
	}
	if err := (tfserving.DefaultConfig("localhost:8500")).Validate(); err != nil {
		t.Error(err)
	}
}

// BenchmarkPredictGRPC256x16 is one gRPC round trip carrying 256 rows of 16
// float32 each way (the echo model), over loopback.
func BenchmarkPredictGRPC256x16(b *testing.B) {
	_, c := start(b)
	data := make([]float32, 256*16)
	for i := range data {
		data[i] = float32(i)
	}
	in := map[string]*tensor.Tensor{"f32": tensor.FromFloat32(data, 256*16)}
	b.SetBytes(2 * 256 * 16 * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Predict(context.Background(), model.Spec{Name: "echo", Signature: "content"}, in); err != nil {
			b.Fatal(err)
		}
	}
}
