package tfserving

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/proto/servingpb"
)

func TestSpecRoundTrip(t *testing.T) {
	for _, s := range []model.Spec{
		{Name: "demo"},
		{Name: "demo", Version: 3, Signature: "serving_default"},
		{Name: "demo", Label: "stable"},
	} {
		p := SpecToProto(s)
		b, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back servingpb.ModelSpec
		if err := proto.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if got := SpecFromProto(&back); got != s {
			t.Errorf("round trip %+v → %+v", s, got)
		}
	}
	if p := SpecToProto(model.Spec{Name: "m"}); p.VersionChoice != nil {
		t.Errorf("latest sent a version choice: %v", p)
	}
	if (SpecFromProto(nil) != model.Spec{}) {
		t.Error("SpecFromProto(nil) is not the zero spec")
	}
}

func TestValidateSpec(t *testing.T) {
	if err := ValidateSpec(model.Spec{Name: "m", Version: 1}); err != nil {
		t.Error(err)
	}
	for _, s := range []model.Spec{{}, {Name: "m", Version: -1}, {Name: "m", Version: 1, Label: "x"}} {
		if err := ValidateSpec(s); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}

func TestSignatureAndMetadataRoundTrip(t *testing.T) {
	md := &model.Metadata{Name: "demo", Version: 7, Signatures: map[string]*model.Signature{
		"serving_default": {
			Method: model.PredictMethod,
			Inputs: []model.TensorSpec{
				{Name: "input", DType: tensor.Float, Shape: []int64{-1, 16}},
				{Name: "mask", DType: tensor.Bool, Shape: nil}, // unknown rank
			},
			Outputs: []model.TensorSpec{{Name: "output", DType: tensor.Float, Shape: []int64{-1, 1}}, {Name: "scalar", DType: tensor.Int64, Shape: []int64{}}},
		},
	}}
	resp, err := MetadataToProto(md)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var back servingpb.GetModelMetadataResponse
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got, err := MetadataFromProto(&back)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, md) {
		t.Errorf("metadata round trip:\n got %+v\nwant %+v", got.Signatures["serving_default"], md.Signatures["serving_default"])
	}
	if _, err := MetadataFromProto(&servingpb.GetModelMetadataResponse{}); err == nil {
		t.Error("metadata without signature_def accepted")
	}
}
