package tfserving

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// SignatureDefField is the only metadata_field GetModelMetadata knows.
const SignatureDefField = "signature_def"

// SpecToProto converts a model.Spec. Version 0 leaves the version out (TF's
// "latest"); otherwise the version wins over a label, so callers that may set
// both should reject that first (ValidateSpec). An empty signature stays
// empty: the server applies serving_default.
func SpecToProto(s model.Spec) *servingpb.ModelSpec {
	p := &servingpb.ModelSpec{Name: s.Name, SignatureName: s.Signature}
	switch {
	case s.Version != 0:
		p.VersionChoice = &servingpb.ModelSpec_Version{Version: wrapperspb.Int64(s.Version)}
	case s.Label != "":
		p.VersionChoice = &servingpb.ModelSpec_VersionLabel{VersionLabel: s.Label}
	}
	return p
}

// SpecFromProto is SpecToProto's inverse. A nil spec is the zero Spec.
func SpecFromProto(p *servingpb.ModelSpec) model.Spec {
	return model.Spec{
		Name:      p.GetName(),
		Version:   p.GetVersion().GetValue(),
		Label:     p.GetVersionLabel(),
		Signature: p.GetSignatureName(),
	}
}

// ValidateSpec reports what TF Serving would reject before any network hop:
// no name, a negative version, or a version and a label together.
func ValidateSpec(s model.Spec) error {
	switch {
	case s.Name == "":
		return fmt.Errorf("model spec has no model name")
	case s.Version < 0:
		return fmt.Errorf("model spec version %d is negative", s.Version)
	case s.Version != 0 && s.Label != "":
		return fmt.Errorf("model spec sets both version %d and label %q", s.Version, s.Label)
	}
	return nil
}

// SignatureToProto converts a signature; a nil Shape (unknown rank) becomes
// unknown_rank, -1 dims stay -1. TensorInfo.name carries the alias, which for
// ONNX models is also the graph's tensor name.
func SignatureToProto(s *model.Signature) *tfpb.SignatureDef {
	return &tfpb.SignatureDef{
		MethodName: s.Method,
		Inputs:     tensorInfos(s.Inputs),
		Outputs:    tensorInfos(s.Outputs),
	}
}

func tensorInfos(specs []model.TensorSpec) map[string]*tfpb.TensorInfo {
	m := make(map[string]*tfpb.TensorInfo, len(specs))
	for _, ts := range specs {
		shape := tensor.ShapeToProto(ts.Shape)
		if ts.Shape == nil {
			shape = &tfpb.TensorShapeProto{UnknownRank: true}
		}
		m[ts.Name] = &tfpb.TensorInfo{
			Encoding:    &tfpb.TensorInfo_Name{Name: ts.Name},
			Dtype:       tfpb.DataType(ts.DType),
			TensorShape: shape,
		}
	}
	return m
}

// SignatureFromProto converts a SignatureDef. Inputs and outputs are sorted
// by alias because protobuf maps have no order and callers compare them.
// A missing tensor_shape is a scalar (the proto default), unknown_rank is a
// nil Shape, and -1 dims are kept.
func SignatureFromProto(p *tfpb.SignatureDef) *model.Signature {
	return &model.Signature{
		Method:  p.GetMethodName(),
		Inputs:  tensorSpecs(p.GetInputs()),
		Outputs: tensorSpecs(p.GetOutputs()),
	}
}

func tensorSpecs(m map[string]*tfpb.TensorInfo) []model.TensorSpec {
	specs := make([]model.TensorSpec, 0, len(m))
	for alias, ti := range m {
		ts := model.TensorSpec{Name: alias, DType: tensor.DType(ti.GetDtype())}
		if !ti.GetTensorShape().GetUnknownRank() {
			dims := ti.GetTensorShape().GetDim()
			ts.Shape = make([]int64, len(dims))
			for i, d := range dims {
				ts.Shape[i] = d.GetSize()
			}
		}
		specs = append(specs, ts)
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs
}

// MetadataToProto builds the GetModelMetadataResponse a server sends for md:
// model_spec with the answering version, and metadata["signature_def"]
// holding a SignatureDefMap in an Any, as TF Serving does.
func MetadataToProto(md *model.Metadata) (*servingpb.GetModelMetadataResponse, error) {
	sdm := &servingpb.SignatureDefMap{SignatureDef: make(map[string]*tfpb.SignatureDef, len(md.Signatures))}
	for name, sig := range md.Signatures {
		sdm.SignatureDef[name] = SignatureToProto(sig)
	}
	a, err := anypb.New(sdm)
	if err != nil {
		return nil, fmt.Errorf("pack signature_def: %w", err)
	}
	return &servingpb.GetModelMetadataResponse{
		ModelSpec: SpecToProto(model.Spec{Name: md.Name, Version: md.Version}),
		Metadata:  map[string]*anypb.Any{SignatureDefField: a},
	}, nil
}

// MetadataFromProto unpacks a GetModelMetadataResponse.
func MetadataFromProto(resp *servingpb.GetModelMetadataResponse) (*model.Metadata, error) {
	a, ok := resp.GetMetadata()[SignatureDefField]
	if !ok {
		return nil, fmt.Errorf("metadata response has no %q entry", SignatureDefField)
	}
	var sdm servingpb.SignatureDefMap
	if err := a.UnmarshalTo(&sdm); err != nil {
		return nil, fmt.Errorf("metadata %q holds %s, not a SignatureDefMap: %w", SignatureDefField, a.GetTypeUrl(), err)
	}
	md := &model.Metadata{
		Name:       resp.GetModelSpec().GetName(),
		Version:    resp.GetModelSpec().GetVersion().GetValue(),
		Signatures: make(map[string]*model.Signature, len(sdm.SignatureDef)),
	}
	for name, sd := range sdm.SignatureDef {
		md.Signatures[name] = SignatureFromProto(sd)
	}
	return md, nil
}
