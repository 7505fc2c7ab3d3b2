// Package tfservingtest is a small TF-Serving-compatible service that does
// real arithmetic on real tensors, for testing clients and gateways of TF
// Serving's API (the gRPC client, the REST handler) without a model runtime.
// It answers with TF Serving's error codes and messages.
//
// Models:
//   - "arith", versions 1 and 2 (labels "stable" → 1, "canary" → 2).
//     Signature serving_default: x, y float32 [-1,2] → sum = x+y,
//     product = x*y. Signature "scale": x float32 [-1,2] → scaled = 2x.
//     Regress: each example's float feature "x" summed. Classify: labels
//     "neg"/"pos" scored by the sign of that sum.
//   - "echo", version 1: every input comes back as the output of the same
//     name. Inputs f32, f64, i32, i64, b, s, u8, i16, i8, all [-1] of their
//     type (name says which). Signature "content" answers in tensor_content
//     instead of typed fields. Any subset of the inputs may be sent.
//   - "big", version 1: input n int64 scalar → out float32 [n] of 1s.
//   - "slow", version 1: Predict blocks until the call's context ends.
//   - "broken": version 2 AVAILABLE, version 3 END with a load error.
package tfservingtest

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
	"github.com/infergate/infergate/proto/tfpb/errorpb"
)

type version struct {
	state  servingpb.ModelVersionStatus_State
	code   errorpb.Code
	errMsg string
}

type fakeModel struct {
	versions   map[int64]version
	labels     map[string]int64
	signatures map[string]*model.Signature
}

// echoInputs names echo's inputs after their dtypes.
var echoInputs = map[string]tensor.DType{
	"f32": tensor.Float, "f64": tensor.Double, "i32": tensor.Int32, "i64": tensor.Int64, "b": tensor.Bool,
	"s": tensor.String, "u8": tensor.Uint8, "i16": tensor.Int16, "i8": tensor.Int8,
}

func models() map[string]*fakeModel {
	avail := version{state: servingpb.ModelVersionStatus_AVAILABLE}
	xy := []int64{-1, 2}
	echo := &model.Signature{Method: model.PredictMethod}
	for name, dt := range echoInputs {
		echo.Inputs = append(echo.Inputs, model.TensorSpec{Name: name, DType: dt, Shape: []int64{-1}})
		echo.Outputs = append(echo.Outputs, model.TensorSpec{Name: name, DType: dt, Shape: []int64{-1}})
	}
	sortSpecs(echo.Inputs)
	sortSpecs(echo.Outputs)
	return map[string]*fakeModel{
		"arith": {
			versions: map[int64]version{1: avail, 2: avail},
			labels:   map[string]int64{"stable": 1, "canary": 2},
			signatures: map[string]*model.Signature{
				model.DefaultSignature: {
					Method:  model.PredictMethod,
					Inputs:  []model.TensorSpec{{Name: "x", DType: tensor.Float, Shape: xy}, {Name: "y", DType: tensor.Float, Shape: xy}},
					Outputs: []model.TensorSpec{{Name: "product", DType: tensor.Float, Shape: xy}, {Name: "sum", DType: tensor.Float, Shape: xy}},
				},
				"scale": {
					Method:  model.PredictMethod,
					Inputs:  []model.TensorSpec{{Name: "x", DType: tensor.Float, Shape: xy}},
					Outputs: []model.TensorSpec{{Name: "scaled", DType: tensor.Float, Shape: xy}},
				},
			},
		},
		"echo": {
			versions:   map[int64]version{1: avail},
			signatures: map[string]*model.Signature{model.DefaultSignature: echo, "content": echo},
		},
		"big": {
			versions: map[int64]version{1: avail},
			signatures: map[string]*model.Signature{model.DefaultSignature: {
				Method:  model.PredictMethod,
				Inputs:  []model.TensorSpec{{Name: "n", DType: tensor.Int64, Shape: []int64{}}},
				Outputs: []model.TensorSpec{{Name: "out", DType: tensor.Float, Shape: []int64{-1}}},
			}},
		},
		"slow": {
			versions: map[int64]version{1: avail},
			signatures: map[string]*model.Signature{model.DefaultSignature: {
				Method:  model.PredictMethod,
				Inputs:  []model.TensorSpec{{Name: "x", DType: tensor.Float, Shape: []int64{-1}}},
				Outputs: []model.TensorSpec{{Name: "x", DType: tensor.Float, Shape: []int64{-1}}},
			}},
		},
		"broken": {
			versions: map[int64]version{
				2: avail,
				3: {state: servingpb.ModelVersionStatus_END, code: errorpb.Code_UNKNOWN, errMsg: "Failed to load: model.onnx is truncated"},
			},
			signatures: map[string]*model.Signature{model.DefaultSignature: {
				Method:  model.PredictMethod,
				Inputs:  []model.TensorSpec{{Name: "x", DType: tensor.Float, Shape: []int64{-1}}},
				Outputs: []model.TensorSpec{{Name: "x", DType: tensor.Float, Shape: []int64{-1}}},
			}},
		},
	}
}

func sortSpecs(s []model.TensorSpec) {
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
}

// Service implements servingpb.PredictionServiceServer and
// servingpb.ModelServiceServer. Its methods are safe for concurrent use.
type Service struct {
	servingpb.UnimplementedPredictionServiceServer
	servingpb.UnimplementedModelServiceServer

	models        map[string]*fakeModel
	metadataCalls atomic.Int64
	predictCalls  atomic.Int64

	mu      sync.Mutex
	reloads []*servingpb.ModelServerConfig
}

// NewService returns the service with the models in the package comment.
func NewService() *Service { return &Service{models: models()} }

// MetadataCalls counts GetModelMetadata calls, for tests of caches.
func (s *Service) MetadataCalls() int64 { return s.metadataCalls.Load() }

// PredictCalls counts Predict calls.
func (s *Service) PredictCalls() int64 { return s.predictCalls.Load() }

// Reloads returns the configs HandleReloadConfigRequest accepted.
func (s *Service) Reloads() []*servingpb.ModelServerConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*servingpb.ModelServerConfig(nil), s.reloads...)
}

// Start serves svc over gRPC on 127.0.0.1:0 until the test ends and returns
// the address. The server accepts messages up to 64 MiB.
func Start(t testing.TB, svc *Service) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	servingpb.RegisterPredictionServiceServer(srv, svc)
	servingpb.RegisterModelServiceServer(srv, svc)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

func servableID(spec *servingpb.ModelSpec) string {
	if v := spec.GetVersion(); v != nil {
		return fmt.Sprintf("Specific(%s, %d)", spec.GetName(), v.GetValue())
	}
	return fmt.Sprintf("Latest(%s)", spec.GetName())
}

// resolve finds the model and version a spec selects, with TF's errors.
func (s *Service) resolve(spec *servingpb.ModelSpec) (*fakeModel, int64, error) {
	if spec == nil {
		return nil, 0, status.Error(codes.InvalidArgument, "Missing ModelSpec")
	}
	m, ok := s.models[spec.GetName()]
	if !ok {
		return nil, 0, status.Errorf(codes.NotFound, "Servable not found for request: %s", servableID(spec))
	}
	if label := spec.GetVersionLabel(); label != "" {
		v, ok := m.labels[label]
		if !ok {
			return nil, 0, status.Errorf(codes.InvalidArgument, "Unrecognized servable version label: %s", label)
		}
		return m, v, nil
	}
	if v := spec.GetVersion(); v != nil {
		if st, ok := m.versions[v.GetValue()]; !ok || st.state != servingpb.ModelVersionStatus_AVAILABLE {
			return nil, 0, status.Errorf(codes.NotFound, "Servable not found for request: %s", servableID(spec))
		}
		return m, v.GetValue(), nil
	}
	var latest int64
	for v, st := range m.versions {
		if st.state == servingpb.ModelVersionStatus_AVAILABLE && v > latest {
			latest = v
		}
	}
	return m, latest, nil
}

func (m *fakeModel) signature(spec *servingpb.ModelSpec) (string, *model.Signature, error) {
	name := spec.GetSignatureName()
	if name == "" {
		name = model.DefaultSignature
	}
	sig, ok := m.signatures[name]
	if !ok {
		return "", nil, status.Errorf(codes.FailedPrecondition, "Serving signature key \"%s\" not found.", name)
	}
	return name, sig, nil
}

func keys[V any](m map[string]V) string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return "{" + strings.Join(k, ", ") + "}"
}

// Predict implements servingpb.PredictionServiceServer.
func (s *Service) Predict(ctx context.Context, req *servingpb.PredictRequest) (*servingpb.PredictResponse, error) {
	s.predictCalls.Add(1)
	m, v, err := s.resolve(req.GetModelSpec())
	if err != nil {
		return nil, err
	}
	sigName, sig, err := m.signature(req.GetModelSpec())
	if err != nil {
		return nil, err
	}
	in := make(map[string]*tensor.Tensor, len(req.Inputs))
	for name, p := range req.Inputs {
		spec, ok := sig.Input(name)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "input size does not match signature: %d!=%d len(%s) != len(%s). Sent extra: {%s}",
				len(req.Inputs), len(sig.Inputs), keys(req.Inputs), specNames(sig.Inputs), name)
		}
		t, err := tensor.FromProto(p)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "input %s: %v", name, err)
		}
		if t.DType != spec.DType {
			return nil, status.Errorf(codes.InvalidArgument, "Expects arg[%s] to be %s but %s is provided", name, spec.DType, t.DType)
		}
		if !tensor.Compatible(spec.Shape, t.Shape) {
			return nil, status.Errorf(codes.InvalidArgument, "input %s: shape %s does not match %s", name, tensor.ShapeString(t.Shape), tensor.ShapeString(spec.Shape))
		}
		in[name] = t
	}
	name := req.GetModelSpec().GetName()
	if name != "echo" && len(in) != len(sig.Inputs) {
		return nil, status.Errorf(codes.InvalidArgument, "input size does not match signature: %d!=%d len(%s) != len(%s)",
			len(in), len(sig.Inputs), keys(in), specNames(sig.Inputs))
	}

	var out map[string]*tensor.Tensor
	switch name {
	case "arith":
		out, err = arith(sigName, in)
	case "echo":
		out = in
	case "big":
		n := in["n"].Data.([]int64)[0]
		if n < 0 || n > 1<<24 {
			return nil, status.Errorf(codes.InvalidArgument, "n = %d is outside 0..%d", n, 1<<24)
		}
		ones := make([]float32, n)
		for i := range ones {
			ones[i] = 1
		}
		out = map[string]*tensor.Tensor{"out": tensor.FromFloat32(ones, n)}
	case "slow":
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	default:
		out = in
	}
	if err != nil {
		return nil, err
	}

	if len(req.OutputFilter) > 0 {
		filtered := make(map[string]*tensor.Tensor, len(req.OutputFilter))
		for _, alias := range req.OutputFilter {
			t, ok := out[alias]
			if !ok {
				return nil, status.Errorf(codes.InvalidArgument, "output tensor alias not found in signature: %s Outputs expected to be in the set %s.", alias, specNames(sig.Outputs))
			}
			filtered[alias] = t
		}
		out = filtered
	}
	resp := &servingpb.PredictResponse{
		ModelSpec: tfserving.SpecToProto(model.Spec{Name: name, Version: v, Signature: sigName}),
		Outputs:   make(map[string]*tfpb.TensorProto, len(out)),
	}
	for alias, t := range out {
		p, err := tensor.ToProto(t, sigName == "content")
		if err != nil {
			return nil, status.Errorf(codes.Internal, "output %s: %v", alias, err)
		}
		resp.Outputs[alias] = p
	}
	return resp, nil
}

func specNames(specs []model.TensorSpec) string {
	n := make([]string, len(specs))
	for i, s := range specs {
		n[i] = s.Name
	}
	return "{" + strings.Join(n, ", ") + "}"
}

func arith(sig string, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	x := in["x"].Float32s()
	if sig == "scale" {
		scaled := make([]float32, len(x))
		for i, v := range x {
			scaled[i] = 2 * v
		}
		return map[string]*tensor.Tensor{"scaled": tensor.FromFloat32(scaled, in["x"].Shape...)}, nil
	}
	y := in["y"].Float32s()
	if tensor.ShapeString(in["x"].Shape) != tensor.ShapeString(in["y"].Shape) {
		return nil, status.Errorf(codes.InvalidArgument, "Incompatible shapes: %s vs. %s",
			tensor.ShapeString(in["x"].Shape), tensor.ShapeString(in["y"].Shape))
	}
	sum := make([]float32, len(x))
	prod := make([]float32, len(x))
	for i := range x {
		sum[i] = x[i] + y[i]
		prod[i] = x[i] * y[i]
	}
	return map[string]*tensor.Tensor{
		"sum":     tensor.FromFloat32(sum, in["x"].Shape...),
		"product": tensor.FromFloat32(prod, in["x"].Shape...),
	}, nil
}

// GetModelMetadata implements servingpb.PredictionServiceServer.
func (s *Service) GetModelMetadata(_ context.Context, req *servingpb.GetModelMetadataRequest) (*servingpb.GetModelMetadataResponse, error) {
	s.metadataCalls.Add(1)
	if len(req.MetadataField) == 0 {
		return nil, status.Error(codes.InvalidArgument, "GetModelMetadataRequest must specify at least one metadata_field")
	}
	for _, f := range req.MetadataField {
		if f != tfserving.SignatureDefField {
			return nil, status.Errorf(codes.InvalidArgument, "Metadata field %s is not supported", f)
		}
	}
	m, v, err := s.resolve(req.GetModelSpec())
	if err != nil {
		return nil, err
	}
	return tfserving.MetadataToProto(&model.Metadata{Name: req.GetModelSpec().GetName(), Version: v, Signatures: m.signatures})
}

// exampleSums adds up the float feature "x" of each example (and of the
// context, which TF merges into every example).
func exampleSums(in *servingpb.Input) ([]float32, error) {
	var examples []*tfpb.Example
	var ctxSum float32
	switch {
	case in.GetExampleList() != nil:
		examples = in.GetExampleList().GetExamples()
	case in.GetExampleListWithContext() != nil:
		examples = in.GetExampleListWithContext().GetExamples()
		for _, v := range in.GetExampleListWithContext().GetContext().GetFeatures().GetFeature()["x"].GetFloatList().GetValue() {
			ctxSum += v
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "Input is empty")
	}
	if len(examples) == 0 {
		return nil, status.Error(codes.InvalidArgument, "Input is empty")
	}
	sums := make([]float32, len(examples))
	for i, ex := range examples {
		sums[i] = ctxSum
		for _, v := range ex.GetFeatures().GetFeature()["x"].GetFloatList().GetValue() {
			sums[i] += v
		}
	}
	return sums, nil
}

// Regress implements servingpb.PredictionServiceServer for "arith".
func (s *Service) Regress(_ context.Context, req *servingpb.RegressionRequest) (*servingpb.RegressionResponse, error) {
	_, v, err := s.resolve(req.GetModelSpec())
	if err != nil {
		return nil, err
	}
	if req.GetModelSpec().GetName() != "arith" {
		return nil, status.Error(codes.Unimplemented, "model has no regression signature")
	}
	sums, err := exampleSums(req.GetInput())
	if err != nil {
		return nil, err
	}
	res := &servingpb.RegressionResult{}
	for _, v := range sums {
		res.Regressions = append(res.Regressions, &servingpb.Regression{Value: v})
	}
	spec := proto.Clone(req.GetModelSpec()).(*servingpb.ModelSpec)
	spec.VersionChoice = tfserving.SpecToProto(model.Spec{Version: v}).VersionChoice
	return &servingpb.RegressionResponse{ModelSpec: spec, Result: res}, nil
}

// Classify implements servingpb.PredictionServiceServer for "arith".
func (s *Service) Classify(_ context.Context, req *servingpb.ClassificationRequest) (*servingpb.ClassificationResponse, error) {
	_, v, err := s.resolve(req.GetModelSpec())
	if err != nil {
		return nil, err
	}
	if req.GetModelSpec().GetName() != "arith" {
		return nil, status.Error(codes.Unimplemented, "model has no classification signature")
	}
	sums, err := exampleSums(req.GetInput())
	if err != nil {
		return nil, err
	}
	res := &servingpb.ClassificationResult{}
	for _, sum := range sums {
		pos := float32(0)
		if sum > 0 {
			pos = 1
		}
		res.Classifications = append(res.Classifications, &servingpb.Classifications{Classes: []*servingpb.Class{
			{Label: "neg", Score: 1 - pos}, {Label: "pos", Score: pos},
		}})
	}
	spec := proto.Clone(req.GetModelSpec()).(*servingpb.ModelSpec)
	spec.VersionChoice = tfserving.SpecToProto(model.Spec{Version: v}).VersionChoice
	return &servingpb.ClassificationResponse{ModelSpec: spec, Result: res}, nil
}

// GetModelStatus implements servingpb.ModelServiceServer.
func (s *Service) GetModelStatus(_ context.Context, req *servingpb.GetModelStatusRequest) (*servingpb.GetModelStatusResponse, error) {
	spec := req.GetModelSpec()
	m, ok := s.models[spec.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Could not find any versions of model %s", spec.GetName())
	}
	var want []int64
	switch {
	case spec.GetVersionLabel() != "":
		v, ok := m.labels[spec.GetVersionLabel()]
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "Unrecognized servable version label: %s", spec.GetVersionLabel())
		}
		want = []int64{v}
	case spec.GetVersion() != nil:
		v := spec.GetVersion().GetValue()
		if _, ok := m.versions[v]; !ok {
			return nil, status.Errorf(codes.NotFound, "Could not find version %d of model %s", v, spec.GetName())
		}
		want = []int64{v}
	default:
		for v := range m.versions {
			want = append(want, v)
		}
		sort.Slice(want, func(i, j int) bool { return want[i] > want[j] })
	}
	resp := &servingpb.GetModelStatusResponse{}
	for _, v := range want {
		st := m.versions[v]
		resp.ModelVersionStatus = append(resp.ModelVersionStatus, &servingpb.ModelVersionStatus{
			Version: v, State: st.state,
			Status: &servingpb.StatusProto{ErrorCode: st.code, ErrorMessage: st.errMsg},
		})
	}
	return resp, nil
}

// HandleReloadConfigRequest implements servingpb.ModelServiceServer. Like TF
// it reports a rejected config in the response's StatusProto with gRPC OK.
func (s *Service) HandleReloadConfigRequest(_ context.Context, req *servingpb.ReloadConfigRequest) (*servingpb.ReloadConfigResponse, error) {
	for _, c := range req.GetConfig().GetModelConfigList().GetConfig() {
		if c.GetName() == "" {
			return &servingpb.ReloadConfigResponse{Status: &servingpb.StatusProto{
				ErrorCode: errorpb.Code_INVALID_ARGUMENT, ErrorMessage: "model config has no name",
			}}, nil
		}
	}
	s.mu.Lock()
	s.reloads = append(s.reloads, proto.Clone(req.GetConfig()).(*servingpb.ModelServerConfig))
	s.mu.Unlock()
	return &servingpb.ReloadConfigResponse{Status: &servingpb.StatusProto{}}, nil
}
