package tfserving

// TF Serving's model configuration (ModelServerConfig's model_config_list and
// the batching_parameters_file) as Go values, shared by the embedded model
// server (inference/modelserver), the sidecar supervisor (inference/sidecar)
// and the appliance: one type, one check and one conversion to the protos.

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/infergate/infergate/internal/field"
	"github.com/infergate/infergate/proto/servingpb"
)

// ModelConfig is one entry of TF Serving's model_config_list.
type ModelConfig struct {
	Name string
	// BasePath holds one directory per version: BasePath/<version>/.
	BasePath string
	// Platform is model_platform; "" lets ModelServerConfigToProto fill in
	// the server's own ("onnx" for the embedded server, "tensorflow" for
	// tensorflow_model_server).
	Platform string
	// Policy picks the versions to serve. The zero value serves the latest.
	Policy VersionPolicy
	// Labels map a label (e.g. "stable", "canary") to a version.
	Labels map[string]int64
}

// VersionPolicy is TF's ServableVersionPolicy: at most one of Latest,
// Specific or All is set; the zero value means Latest 1.
type VersionPolicy struct {
	Latest   uint32  // serve the N highest versions
	Specific []int64 // serve exactly these versions
	All      bool    // serve every version
}

// Validate checks the one-of and the versions.
func (p VersionPolicy) Validate() error {
	n := 0
	if p.Latest > 0 {
		n++
	}
	if len(p.Specific) > 0 {
		n++
	}
	if p.All {
		n++
	}
	if n > 1 {
		return errors.New("set only one of Latest, Specific and All")
	}
	for _, v := range p.Specific {
		if v < 0 {
			return fmt.Errorf("version %d is negative", v)
		}
	}
	return nil
}

func (p VersionPolicy) String() string {
	switch {
	case p.All:
		return "all"
	case len(p.Specific) > 0:
		return fmt.Sprintf("specific%v", p.Specific)
	case p.Latest > 0:
		return fmt.Sprintf("latest{%d}", p.Latest)
	}
	return "latest{1}"
}

// ParseVersionPolicy reads a policy as settings and flags write it:
// "latest:N" (or "latest", N=1), "all", or "specific:V,V,…".
func ParseVersionPolicy(s string) (VersionPolicy, error) {
	s = strings.TrimSpace(s)
	kind, arg, hasArg := strings.Cut(s, ":")
	switch strings.ToLower(kind) {
	case "latest":
		if !hasArg {
			return VersionPolicy{Latest: 1}, nil
		}
		n, err := strconv.ParseUint(strings.TrimSpace(arg), 10, 32)
		if err != nil || n == 0 {
			return VersionPolicy{}, fmt.Errorf("%q: latest:N wants N of 1 or more", s)
		}
		return VersionPolicy{Latest: uint32(n)}, nil
	case "all":
		if hasArg {
			return VersionPolicy{}, fmt.Errorf("%q: all takes no versions", s)
		}
		return VersionPolicy{All: true}, nil
	case "specific":
		var p VersionPolicy
		for f := range strings.SplitSeq(arg, ",") {
			v, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || v < 0 {
				return VersionPolicy{}, fmt.Errorf("%q: specific:V,V,… wants non-negative versions", s)
			}
			p.Specific = append(p.Specific, v)
		}
		if len(p.Specific) == 0 {
			return VersionPolicy{}, fmt.Errorf("%q: specific lists no versions", s)
		}
		return p, nil
	}
	return VersionPolicy{}, fmt.Errorf("%q: want latest:N, all or specific:V,V,…", s)
}

// ValidateModels checks a model list the way TF Serving refuses one: every
// model named once, with a base path, a valid policy and named labels on
// non-negative versions. Errors name the model as models[i] or models["name"].
func ValidateModels(models []ModelConfig) error {
	seen := map[string]bool{}
	for i, m := range models {
		switch {
		case m.Name == "":
			return fmt.Errorf("models[%d]: Name is empty", i)
		case seen[m.Name]:
			return fmt.Errorf("models: model name %q is used twice", m.Name)
		case m.BasePath == "":
			return fmt.Errorf("models[%q]: BasePath is empty", m.Name)
		}
		seen[m.Name] = true
		if err := m.Policy.Validate(); err != nil {
			return fmt.Errorf("models[%q].Policy: %w", m.Name, err)
		}
		for l, v := range m.Labels {
			if l == "" || v < 0 {
				return fmt.Errorf("models[%q].Labels: label %q → %d: labels need a name and a non-negative version", m.Name, l, v)
			}
		}
	}
	return nil
}

// Clone is a deep copy (Specific and Labels are not shared).
func (m ModelConfig) Clone() ModelConfig {
	m.Policy.Specific = slices.Clone(m.Policy.Specific)
	m.Labels = maps.Clone(m.Labels)
	return m
}

// ToProto is one entry of model_config_list. With no policy set it is TF's
// default, the latest version.
func (m ModelConfig) ToProto() *servingpb.ModelConfig {
	p := &servingpb.FileSystemStoragePathSourceConfig_ServableVersionPolicy{}
	switch {
	case m.Policy.All:
		p.PolicyChoice = &servingpb.FileSystemStoragePathSourceConfig_ServableVersionPolicy_All_{
			All: &servingpb.FileSystemStoragePathSourceConfig_ServableVersionPolicy_All{}}
	case len(m.Policy.Specific) > 0:
		p.PolicyChoice = &servingpb.FileSystemStoragePathSourceConfig_ServableVersionPolicy_Specific_{
			Specific: &servingpb.FileSystemStoragePathSourceConfig_ServableVersionPolicy_Specific{Versions: slices.Clone(m.Policy.Specific)}}
	default:
		p.PolicyChoice = &servingpb.FileSystemStoragePathSourceConfig_ServableVersionPolicy_Latest_{
			Latest: &servingpb.FileSystemStoragePathSourceConfig_ServableVersionPolicy_Latest{NumVersions: max(m.Policy.Latest, 1)}}
	}
	mc := &servingpb.ModelConfig{Name: m.Name, BasePath: m.BasePath, ModelPlatform: m.Platform, ModelVersionPolicy: p}
	if len(m.Labels) > 0 {
		mc.VersionLabels = maps.Clone(m.Labels)
	}
	return mc
}

// ModelServerConfigToProto is the ModelServerConfig behind
// --model_config_file and HandleReloadConfigRequest; models without a
// Platform get platform.
func ModelServerConfigToProto(models []ModelConfig, platform string) *servingpb.ModelServerConfig {
	list := &servingpb.ModelConfigList{}
	for _, m := range models {
		if m.Platform == "" {
			m.Platform = platform
		}
		list.Config = append(list.Config, m.ToProto())
	}
	return &servingpb.ModelServerConfig{Config: &servingpb.ModelServerConfig_ModelConfigList{ModelConfigList: list}}
}

// ModelConfigFromProto reads one model_config_list entry (base path as
// written). A specific policy listing no versions is an error.
func ModelConfigFromProto(mc *servingpb.ModelConfig) (ModelConfig, error) {
	m := ModelConfig{Name: mc.GetName(), BasePath: mc.GetBasePath(), Platform: mc.GetModelPlatform()}
	if p := mc.GetModelVersionPolicy(); p != nil {
		switch {
		case p.GetLatest() != nil:
			m.Policy.Latest = max(p.GetLatest().GetNumVersions(), 1)
		case p.GetSpecific() != nil:
			m.Policy.Specific = slices.Clone(p.GetSpecific().GetVersions())
			if len(m.Policy.Specific) == 0 {
				return ModelConfig{}, fmt.Errorf("model %q: model_version_policy specific lists no versions", m.Name)
			}
		case p.GetAll() != nil:
			m.Policy.All = true
		}
	}
	if len(mc.GetVersionLabels()) > 0 {
		m.Labels = maps.Clone(mc.GetVersionLabels())
	}
	return m, nil
}

// BatchingConfig is TF Serving's batching_parameters_file. A zero field
// means TF's default (max_batch_size 1000, batch_timeout 0,
// max_enqueued_batches 10, num_batch_threads one per CPU).
type BatchingConfig struct {
	// MaxBatchSize is the most rows (dim 0) one batch holds.
	MaxBatchSize int64
	// BatchTimeout is how long a batch may wait to fill up; 0 runs whatever
	// is queued as soon as a thread is free.
	BatchTimeout time.Duration
	// MaxEnqueuedBatches bounds the queue per model version; a request that
	// would exceed it fails with UNAVAILABLE.
	MaxEnqueuedBatches int64
	// NumBatchThreads is how many batches run at once per model version.
	NumBatchThreads int64
	// AllowedBatchSizes, if set, pads every batch up to the next allowed
	// size; increasing, the last equal to MaxBatchSize.
	AllowedBatchSizes []int64
}

// DefaultMaxBatchSize and DefaultMaxEnqueuedBatches are TF's defaults of a
// zero MaxBatchSize and MaxEnqueuedBatches.
const (
	DefaultMaxBatchSize       = 1000
	DefaultMaxEnqueuedBatches = 10
)

// Validate reports each invalid field as a *field.Error pointing into b.
// AllowedBatchSizes must end at MaxBatchSize, or at TF's default when
// MaxBatchSize is 0.
func (b *BatchingConfig) Validate() error {
	var v field.Errors
	if b.MaxBatchSize < 0 {
		v.Add(&b.MaxBatchSize, "MaxBatchSize", "%d is negative (0: TF's default)", b.MaxBatchSize)
	}
	if b.BatchTimeout < 0 {
		v.Add(&b.BatchTimeout, "BatchTimeout", "%s is negative", b.BatchTimeout)
	}
	if b.MaxEnqueuedBatches < 0 {
		v.Add(&b.MaxEnqueuedBatches, "MaxEnqueuedBatches", "%d is negative (0: TF's default)", b.MaxEnqueuedBatches)
	}
	if b.NumBatchThreads < 0 {
		v.Add(&b.NumBatchThreads, "NumBatchThreads", "%d is negative (0: TF's default)", b.NumBatchThreads)
	}
	if sizes := b.AllowedBatchSizes; len(sizes) > 0 {
		prev := int64(0)
		for _, s := range sizes {
			if s <= prev {
				v.Add(&b.AllowedBatchSizes, "AllowedBatchSizes", "%v: sizes must be positive and increasing", sizes)
				break
			}
			prev = s
		}
		maxSize := b.MaxBatchSize
		if maxSize == 0 {
			maxSize = DefaultMaxBatchSize
		}
		if last := sizes[len(sizes)-1]; last != maxSize && b.MaxBatchSize >= 0 {
			v.Add(&b.AllowedBatchSizes, "AllowedBatchSizes", "%v must end at the maximum batch size (%d)", sizes, maxSize)
		}
	}
	return v.Err()
}

// ToProto is the batching_parameters_file message; zero fields are left
// unset, so TF applies its defaults.
func (b BatchingConfig) ToProto() *servingpb.BatchingParameters {
	p := &servingpb.BatchingParameters{AllowedBatchSizes: slices.Clone(b.AllowedBatchSizes)}
	if b.MaxBatchSize > 0 {
		p.MaxBatchSize = wrapperspb.Int64(b.MaxBatchSize)
	}
	if b.BatchTimeout > 0 {
		p.BatchTimeoutMicros = wrapperspb.Int64(b.BatchTimeout.Microseconds())
	}
	if b.MaxEnqueuedBatches > 0 {
		p.MaxEnqueuedBatches = wrapperspb.Int64(b.MaxEnqueuedBatches)
	}
	if b.NumBatchThreads > 0 {
		p.NumBatchThreads = wrapperspb.Int64(b.NumBatchThreads)
	}
	return p
}

// BatchingFromProto reads TF's BatchingParameters; unset fields stay zero
// (TF's defaults).
func BatchingFromProto(p *servingpb.BatchingParameters) BatchingConfig {
	var b BatchingConfig
	if v := p.GetMaxBatchSize(); v != nil {
		b.MaxBatchSize = v.GetValue()
	}
	if v := p.GetBatchTimeoutMicros(); v != nil {
		b.BatchTimeout = time.Duration(v.GetValue()) * time.Microsecond
	}
	if v := p.GetMaxEnqueuedBatches(); v != nil {
		b.MaxEnqueuedBatches = v.GetValue()
	}
	if v := p.GetNumBatchThreads(); v != nil {
		b.NumBatchThreads = v.GetValue()
	}
	b.AllowedBatchSizes = slices.Clone(p.GetAllowedBatchSizes())
	return b
}
