package tfserving

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/internal/field"
)

func TestParseVersionPolicy(t *testing.T) {
	for in, want := range map[string]string{
		"latest": "latest{1}", "latest:2": "latest{2}", "all": "all", "specific:3,4": "specific[3 4]", " LATEST:3 ": "latest{3}",
	} {
		p, err := ParseVersionPolicy(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseVersionPolicy(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "latest:0", "latest:x", "all:1", "specific:", "specific:-1", "newest"} {
		if _, err := ParseVersionPolicy(bad); err == nil {
			t.Errorf("ParseVersionPolicy(%q) accepted", bad)
		}
	}
}

// The one-of is checked once, here, for the embedded server, the sidecar
// and the appliance alike.
func TestVersionPolicyValidate(t *testing.T) {
	for _, ok := range []VersionPolicy{{}, {Latest: 3}, {Specific: []int64{0, 4}}, {All: true}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range []VersionPolicy{{Latest: 1, All: true}, {Latest: 2, Specific: []int64{1}}, {Specific: []int64{1}, All: true}, {Specific: []int64{-1}}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestValidateModels(t *testing.T) {
	for _, tc := range []struct {
		models []ModelConfig
		msg    string
	}{
		{[]ModelConfig{{BasePath: "/a"}}, "Name is empty"},
		{[]ModelConfig{{Name: "a", BasePath: "/a"}, {Name: "a", BasePath: "/b"}}, "used twice"},
		{[]ModelConfig{{Name: "a"}}, "BasePath is empty"},
		{[]ModelConfig{{Name: "a", BasePath: "/a", Policy: VersionPolicy{Latest: 1, All: true}}}, "Policy"},
		{[]ModelConfig{{Name: "a", BasePath: "/a", Labels: map[string]int64{"": 1}}}, "Labels"},
		{[]ModelConfig{{Name: "a", BasePath: "/a", Labels: map[string]int64{"x": -1}}}, "Labels"},
	} {
		if err := ValidateModels(tc.models); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v, want %q", tc.models, err, tc.msg)
		}
	}
	if err := ValidateModels([]ModelConfig{{Name: "a", BasePath: "/a", Labels: map[string]int64{"stable": 3}}, {Name: "b", BasePath: "/b"}}); err != nil {
		t.Error(err)
	}
}

// ToProto and ModelConfigFromProto are inverses, policy and labels included.
func TestModelConfigProtoRoundTrip(t *testing.T) {
	for _, m := range []ModelConfig{
		{Name: "a", BasePath: "/a", Platform: "onnx", Policy: VersionPolicy{Latest: 2}, Labels: map[string]int64{"stable": 3}},
		{Name: "b", BasePath: "/b", Platform: "tensorflow", Policy: VersionPolicy{Specific: []int64{3, 4}}},
		{Name: "c", BasePath: "/c", Platform: "x", Policy: VersionPolicy{All: true}},
	} {
		back, err := ModelConfigFromProto(m.ToProto())
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(back.ToProto(), m.ToProto()) || back.Policy.String() != m.Policy.String() || back.Platform != m.Platform {
			t.Errorf("%+v came back as %+v", m, back)
		}
	}
	// A policy left zero is TF's default, the latest version.
	if got := (ModelConfig{Name: "d", BasePath: "/d"}).ToProto().GetModelVersionPolicy().GetLatest().GetNumVersions(); got != 1 {
		t.Errorf("zero policy: latest %d, want 1", got)
	}
	cfg := ModelServerConfigToProto([]ModelConfig{{Name: "e", BasePath: "/e"}, {Name: "f", BasePath: "/f", Platform: "tensorflow"}}, "onnx")
	list := cfg.GetModelConfigList().GetConfig()
	if len(list) != 2 || list[0].GetModelPlatform() != "onnx" || list[1].GetModelPlatform() != "tensorflow" {
		t.Errorf("platforms: %v", list)
	}
}

func TestBatchingValidate(t *testing.T) {
	for _, tc := range []struct {
		b    BatchingConfig
		name string
	}{
		{BatchingConfig{MaxBatchSize: -1}, "MaxBatchSize"},
		{BatchingConfig{BatchTimeout: -1}, "BatchTimeout"},
		{BatchingConfig{MaxEnqueuedBatches: -1}, "MaxEnqueuedBatches"},
		{BatchingConfig{NumBatchThreads: -1}, "NumBatchThreads"},
		{BatchingConfig{MaxBatchSize: 8, AllowedBatchSizes: []int64{4}}, "AllowedBatchSizes"},
		{BatchingConfig{MaxBatchSize: 8, AllowedBatchSizes: []int64{4, 2, 8}}, "AllowedBatchSizes"},
		{BatchingConfig{AllowedBatchSizes: []int64{8}}, "AllowedBatchSizes"}, // must end at TF's default, 1000
	} {
		err := tc.b.Validate()
		var fe *field.Error
		if !errors.As(err, &fe) || fe.Name != tc.name {
			t.Errorf("%+v: %v, want a field error on %s", tc.b, err, tc.name)
		}
	}
	for _, ok := range []BatchingConfig{{}, {MaxBatchSize: 8, AllowedBatchSizes: []int64{4, 8}}, {AllowedBatchSizes: []int64{100, DefaultMaxBatchSize}}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	// The error points at the field inside the caller's value, which is how
	// the appliance finds the setting's key.
	b := BatchingConfig{MaxBatchSize: -1}
	var fe *field.Error
	if errors.As(b.Validate(), &fe); fe == nil || fe.Ptr != &b.MaxBatchSize {
		t.Errorf("field error %+v does not point at b.MaxBatchSize", fe)
	}
}

func TestBatchingProtoRoundTrip(t *testing.T) {
	b := BatchingConfig{MaxBatchSize: 64, BatchTimeout: 2000, MaxEnqueuedBatches: 100, NumBatchThreads: 4, AllowedBatchSizes: []int64{8, 64}}
	b.BatchTimeout *= 1000 // 2ms
	back := BatchingFromProto(b.ToProto())
	if !proto.Equal(back.ToProto(), b.ToProto()) || back.BatchTimeout != b.BatchTimeout {
		t.Errorf("%+v came back as %+v", b, back)
	}
	if p := (BatchingConfig{}).ToProto(); p.MaxBatchSize != nil || p.NumBatchThreads != nil {
		t.Errorf("zero fields must stay unset (TF's defaults): %v", p)
	}
}
