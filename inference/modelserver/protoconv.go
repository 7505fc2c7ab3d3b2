package modelserver

import (
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

func signatureDefMapAny(sigs map[string]*model.Signature) (*anypb.Any, error) {
	m := &servingpb.SignatureDefMap{SignatureDef: make(map[string]*tfpb.SignatureDef, len(sigs))}
	for name, sig := range sigs {
		m.SignatureDef[name] = tfserving.SignatureToProto(sig)
	}
	return anypb.New(m)
}

// specFields reads a request's ModelSpec; hasVersion tells an explicit
// version (0 included) from "latest".
func specFields(ms *servingpb.ModelSpec) (name string, hasVersion bool, version int64, label string) {
	name = ms.GetName()
	switch vc := ms.GetVersionChoice().(type) {
	case *servingpb.ModelSpec_Version:
		if vc.Version != nil {
			hasVersion, version = true, vc.Version.GetValue()
		}
	case *servingpb.ModelSpec_VersionLabel:
		label = vc.VersionLabel
	}
	return
}

// responseSpec is the model_spec of a response: the model, the version that
// served and the signature used.
func responseSpec(s *servable, signature string) *servingpb.ModelSpec {
	if signature == "" {
		signature = model.DefaultSignature
	}
	return &servingpb.ModelSpec{
		Name:          s.name,
		VersionChoice: &servingpb.ModelSpec_Version{Version: wrapperspb.Int64(s.version)},
		SignatureName: signature,
	}
}
