package modelserver

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
	"github.com/infergate/infergate/proto/tfpb/errorpb"
)

// predictionService implements TF Serving's PredictionService. The gRPC
// listener and the REST handler each get one, differing only in the
// entrypoint label of the metrics.
type predictionService struct {
	servingpb.UnimplementedPredictionServiceServer
	m     *manager
	mx    *metrics
	entry string // "GRPC" or "REST"
	lim   Limits
	adm   *admission // shared by both entrypoints; nil: no bound
}

var _ servingpb.PredictionServiceServer = (*predictionService)(nil)

func (p *predictionService) record(name, api string, start time.Time, err error) {
	if p.mx == nil {
		return
	}
	// Only configured model names become label values: a client must not be
	// able to grow the metric set with made-up names.
	if _, ok := p.m.tab.Load().models[name]; !ok {
		name = ""
	}
	p.mx.request(name, api, p.entry, status.Code(err), time.Since(start))
}

// Predict answers with typed fields (TF's default) and the version used.
func (p *predictionService) Predict(ctx context.Context, req *servingpb.PredictRequest) (*servingpb.PredictResponse, error) {
	start := time.Now()
	resp, err := p.predict(ctx, req)
	p.record(req.GetModelSpec().GetName(), "Predict", start, err)
	return resp, err
}

func (p *predictionService) predict(ctx context.Context, req *servingpb.PredictRequest) (*servingpb.PredictResponse, error) {
	ms := req.GetModelSpec()
	if ms == nil {
		return nil, status.Error(codes.InvalidArgument, "Missing ModelSpec")
	}
	name, hasVersion, version, label := specFields(ms)
	serv, err := p.m.tab.Load().lookup(name, hasVersion, version, label)
	if err != nil {
		return nil, err
	}
	sig, err := serv.signature(ms.GetSignatureName())
	if err != nil {
		return nil, err
	}
	if err := checkInputNames(sig, req.GetInputs()); err != nil {
		return nil, err
	}
	outputs, err := serv.outputNames(sig, req.GetOutputFilter())
	if err != nil {
		return nil, err
	}
	// Bound the request from its shapes before decoding anything: the
	// tensors may expand far beyond the message (TF's repeat-last rule).
	est, err := p.lim.checkInputs(req.GetInputs())
	if err != nil {
		return nil, err
	}
	ctx, release, err := p.adm.admit(ctx, est)
	if err != nil {
		return nil, err
	}
	defer release()
	inputs, err := decodeInputs(req.GetInputs())
	if err != nil {
		return nil, err
	}
	if err := checkInputTensors(sig, inputs); err != nil {
		return nil, err
	}
	out, err := serv.run(ctx, inputs, outputs)
	if err != nil {
		return nil, err
	}
	resp := &servingpb.PredictResponse{
		ModelSpec: responseSpec(serv, ms.GetSignatureName()),
		Outputs:   make(map[string]*tfpb.TensorProto, len(out)),
	}
	for name, t := range out {
		tp, err := tensor.ToProto(t, false)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encoding output %q: %v", name, err)
		}
		resp.Outputs[name] = tp
	}
	return resp, nil
}

// decodeInputs decodes a request's tensors; Limits.checkInputs bounds
// them first.
func decodeInputs(in map[string]*tfpb.TensorProto) (map[string]*tensor.Tensor, error) {
	inputs := make(map[string]*tensor.Tensor, len(in))
	for alias, tp := range in {
		t, err := tensor.FromProto(tp)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "tensor parsing error: %s: %v", alias, err)
		}
		inputs[alias] = t
	}
	return inputs, nil
}

// GetModelMetadata answers the "signature_def" field, the only one TF has.
func (p *predictionService) GetModelMetadata(_ context.Context, req *servingpb.GetModelMetadataRequest) (*servingpb.GetModelMetadataResponse, error) {
	// TF counts and times only inference calls, not metadata.
	return p.metadata(req)
}

func (p *predictionService) metadata(req *servingpb.GetModelMetadataRequest) (*servingpb.GetModelMetadataResponse, error) {
	ms := req.GetModelSpec()
	if ms == nil {
		return nil, status.Error(codes.InvalidArgument, "Missing ModelSpec")
	}
	if len(req.GetMetadataField()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "GetModelMetadataRequest must specify at least one metadata_field")
	}
	for _, f := range req.GetMetadataField() {
		if f != "signature_def" {
			return nil, status.Errorf(codes.InvalidArgument, "Metadata field %s is not supported", f)
		}
	}
	name, hasVersion, version, label := specFields(ms)
	serv, err := p.m.tab.Load().lookup(name, hasVersion, version, label)
	if err != nil {
		return nil, err
	}
	return &servingpb.GetModelMetadataResponse{
		ModelSpec: &servingpb.ModelSpec{
			Name:          serv.name,
			VersionChoice: &servingpb.ModelSpec_Version{Version: wrapperspb.Int64(serv.version)},
		},
		Metadata: map[string]*anypb.Any{"signature_def": serv.sigAny},
	}, nil
}

// modelService implements TF Serving's ModelService.
type modelService struct {
	servingpb.UnimplementedModelServiceServer
	s *Server
}

var _ servingpb.ModelServiceServer = (*modelService)(nil)

func (ms *modelService) GetModelStatus(ctx context.Context, req *servingpb.GetModelStatusRequest) (*servingpb.GetModelStatusResponse, error) {
	spec := req.GetModelSpec()
	if spec == nil {
		return nil, status.Error(codes.InvalidArgument, "Missing ModelSpec")
	}
	name, hasVersion, version, label := specFields(spec)
	sts, err := ms.s.m.versionStatus(name, hasVersion, version, label)
	if err != nil {
		return nil, err
	}
	resp := &servingpb.GetModelStatusResponse{ModelVersionStatus: make([]*servingpb.ModelVersionStatus, len(sts))}
	for i, st := range sts {
		resp.ModelVersionStatus[i] = &servingpb.ModelVersionStatus{
			Version: st.Version,
			State:   servingpb.ModelVersionStatus_State(st.State),
			Status:  &servingpb.StatusProto{ErrorCode: errorpb.Code(st.Code), ErrorMessage: st.Error},
		}
	}
	return resp, nil
}

// HandleReloadConfigRequest replaces the model list and returns once the new
// models are loaded, as TF does; a failure is both the gRPC status and the
// response's status. Who may call it is Config.ReloadRPC; every call is
// audited.
func (ms *modelService) HandleReloadConfigRequest(ctx context.Context, req *servingpb.ReloadConfigRequest) (*servingpb.ReloadConfigResponse, error) {
	from := "unknown peer"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	if err := ms.s.authorizeReload(ctx); err != nil {
		ms.s.auditReload(from, "refused: "+status.Convert(err).Message())
		return nil, err
	}
	if req.GetConfig().GetModelConfigList() == nil {
		ms.s.auditReload(from, "refused: no model_config_list")
		return nil, status.Error(codes.InvalidArgument,
			"ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported")
	}
	var names []string
	for _, mc := range req.GetConfig().GetModelConfigList().GetConfig() {
		names = append(names, mc.GetName()+"="+mc.GetBasePath())
	}
	what := fmt.Sprintf("%d models [%s]", len(names), strings.Join(names, ", "))
	if err := ms.s.Reload(req.GetConfig()); err != nil {
		ms.s.auditReload(from, what+": failed: "+status.Convert(err).Message())
		return nil, err
	}
	ms.s.auditReload(from, what+": applied")
	return &servingpb.ReloadConfigResponse{Status: &servingpb.StatusProto{ErrorCode: errorpb.Code_OK}}, nil
}

// authorizeReload applies Config.ReloadRPC to a gRPC call.
func (s *Server) authorizeReload(ctx context.Context) error {
	switch s.cfg.ReloadRPC {
	case ReloadRPCOpen:
		return nil
	case ReloadRPCToken:
		want := s.cfg.AdminToken
		if s.cfg.CurrentAdminToken != nil {
			want = s.cfg.CurrentAdminToken()
		}
		md, _ := metadata.FromIncomingContext(ctx)
		for _, v := range md.Get("authorization") {
			tok, ok := strings.CutPrefix(v, "Bearer ")
			if ok && want != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1 {
				return nil
			}
		}
		return status.Error(codes.Unauthenticated,
			"HandleReloadConfigRequest needs the admin token: send gRPC metadata \"authorization: Bearer <token>\"")
	}
	return status.Error(codes.PermissionDenied,
		"HandleReloadConfigRequest is turned off on this server (model_server.reload_rpc, --reload-rpc): change models with the admin API or the model repository")
}

func (s *Server) auditReload(from, detail string) {
	level := slog.LevelInfo
	if strings.HasPrefix(detail, "refused") {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "HandleReloadConfigRequest", "from", from, "outcome", detail)
	if s.cfg.Audit != nil {
		s.cfg.Audit("models.reload_rpc", "from "+from+": "+detail)
	}
}
