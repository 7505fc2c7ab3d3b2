package modelserver

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
)

// Config configures a Server. The zero value is not usable; start from
// DefaultConfig (or set the listen addresses yourself: "" turns a listener off).
type Config struct {
	// GRPCListen is the TF Serving gRPC address. "" serves no gRPC listener
	// (in-process calls only).
	GRPCListen string
	// RESTListen is the TF Serving REST address. "" turns REST (and the
	// Prometheus path) off.
	RESTListen string
	// Models served. Mutually exclusive with ModelConfigFile.
	Models []ModelConfig
	// ModelConfigFile is a TF text-format ModelServerConfig
	// (model_config_list { config { ... } }).
	ModelConfigFile string
	// ModelConfigFilePoll re-reads ModelConfigFile this often and applies it
	// when it changed; 0 reads it once.
	ModelConfigFilePoll time.Duration
	// FileSystemPoll is how often model base paths are scanned for new or
	// removed versions. Default (0) 1s; negative scans only at start, on
	// reloads and on uploads.
	FileSystemPoll time.Duration
	// Threads is how many goroutines one call of an embedded (ONNX) model may
	// use for a large operator (convolution, large matrix products); 0 means
	// every core (GOMAXPROCS).
	Threads int
	// Batching turns on server-side batching of concurrent Predict calls
	// (per model version), with TF's parameters. nil = off.
	Batching *BatchingConfig
	// MonitoringPath serves Prometheus metrics with TF Serving's names on the
	// REST listener at this path ("" = off), e.g. /monitoring/prometheus/metrics.
	// Without a REST listener it has no effect.
	MonitoringPath string
	// RESTTimeout bounds each REST request (TF's rest_api_timeout_in_ms).
	// 0 = no limit.
	RESTTimeout time.Duration
	// ListenAfterReady opens the listeners only once every configured model
	// has an AVAILABLE version, as tensorflow_model_server does; a model whose
	// first load fails then makes Run return an error. ModelServerMain sets it.
	ListenAfterReady bool
	// AllowLabelsForUnavailable lets labels point at versions that are not
	// AVAILABLE (TF's --allow_version_labels_for_unavailable_models).
	AllowLabelsForUnavailable bool
	// MaxMessageSize bounds gRPC messages both ways. Default 2 GiB - 1, as TF.
	MaxMessageSize int
	// REST connections: the time a request's headers, then its body, may take to arrive,
	// and how long an idle keep-alive connection stays open. 0 = 10s, 1m, 2m.
	RESTReadHeaderTimeout, RESTReadTimeout, RESTIdleTimeout time.Duration
	// ReloadRPC says who may call HandleReloadConfigRequest over gRPC, which
	// can unload every model or load any file the process can read. The zero
	// value, ReloadRPCOff, refuses every call (PERMISSION_DENIED);
	// ReloadRPCToken needs the gRPC metadata "authorization: Bearer
	// <AdminToken>" (UNAUTHENTICATED otherwise); ReloadRPCOpen lets anyone
	// call it, as tensorflow_model_server does (ModelServerMain keeps that:
	// a sidecar supervisor reloads it). Server.Reload in process is not
	// affected.
	ReloadRPC ReloadRPCMode
	// Limits bound the memory one gRPC or REST request, and one model's
	// constant folding, may take. DefaultConfig sets DefaultLimits; the
	// zero value has none (TF's behaviour).
	Limits Limits
	// AdminToken is the token ReloadRPCToken asks for.
	AdminToken string
	// CurrentAdminToken, when set, is asked for the token on each call instead of
	// AdminToken, so a token rotated from the dashboard takes effect at once.
	CurrentAdminToken func() string
	// Audit, if set, is called for every HandleReloadConfigRequest call,
	// allowed or refused, with the caller's address and the outcome.
	Audit func(action, detail string)
}

// ReloadRPCMode is Config.ReloadRPC.
type ReloadRPCMode int

const (
	ReloadRPCOff   ReloadRPCMode = iota // refused
	ReloadRPCToken                      // needs the admin token
	ReloadRPCOpen                       // anyone (TF's behaviour)
)

// ModelConfig is one served model: TF's ModelConfig.
type ModelConfig struct {
	Name string
	// BasePath holds one directory per version: BasePath/<version>/model.onnx.
	BasePath string
	// Policy picks the versions to serve. Zero value = Latest 1.
	Policy VersionPolicy
	// Labels map a label (e.g. "stable", "canary") to a version.
	Labels map[string]int64
}

// VersionPolicy is TF's ServableVersionPolicy: exactly one of Latest,
// Specific or All is set; the zero value means Latest 1.
type VersionPolicy struct {
	Latest   uint32  // serve the N highest versions
	Specific []int64 // serve exactly these versions
	All      bool    // serve every version
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

// BatchingConfig has TF Serving's batching parameters and meanings.
type BatchingConfig struct {
	// MaxBatchSize is the most rows (dim 0) one batch holds. Default 1000.
	MaxBatchSize int
	// BatchTimeout is how long a batch may wait to fill up. Default 0: run
	// whatever is queued as soon as a thread is free.
	BatchTimeout time.Duration
	// MaxEnqueuedBatches bounds the queue per model version; a request that
	// would exceed it fails with UNAVAILABLE. Default 10.
	MaxEnqueuedBatches int
	// NumBatchThreads batches run at once per model version. Default: CPUs.
	NumBatchThreads int
	// AllowedBatchSizes, if set, pads every batch up to the next allowed size;
	// increasing, the last equal to MaxBatchSize.
	AllowedBatchSizes []int
}

// DefaultConfig returns the defaults: gRPC on 127.0.0.1:8500, REST on
// 127.0.0.1:8501, scanning model directories every second, no models.
func DefaultConfig() Config {
	return Config{
		GRPCListen:     "127.0.0.1:8500",
		RESTListen:     "127.0.0.1:8501",
		FileSystemPoll: time.Second,
		RESTTimeout:    30 * time.Second,
		Limits:         DefaultLimits,
	}
}

const defaultMaxMessageSize = 1<<31 - 1

func (c *Config) applyDefaults() {
	if c.FileSystemPoll == 0 {
		c.FileSystemPoll = time.Second
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = defaultMaxMessageSize
	}
	if c.Batching != nil {
		b := *c.Batching
		b.applyDefaults()
		c.Batching = &b
	}
}

func (b *BatchingConfig) applyDefaults() {
	if b.MaxBatchSize == 0 {
		b.MaxBatchSize = 1000
	}
	if b.MaxEnqueuedBatches == 0 {
		b.MaxEnqueuedBatches = 10
	}
	if b.NumBatchThreads == 0 {
		b.NumBatchThreads = max(1, numCPU())
	}
}

// Validate checks the configuration; errors name the setting at fault.
func (c Config) Validate() error {
	if c.GRPCListen != "" && c.GRPCListen == c.RESTListen && !strings.HasSuffix(c.GRPCListen, ":0") {
		return fmt.Errorf("modelserver: GRPCListen and RESTListen are both %q: they must differ", c.GRPCListen)
	}
	if c.Threads < 0 {
		return fmt.Errorf("modelserver: Threads %d is negative", c.Threads)
	}
	if c.ModelConfigFilePoll < 0 {
		return fmt.Errorf("modelserver: ModelConfigFilePoll %v is negative", c.ModelConfigFilePoll)
	}
	if c.RESTTimeout < 0 {
		return fmt.Errorf("modelserver: RESTTimeout %v is negative", c.RESTTimeout)
	}
	if c.MaxMessageSize < 0 {
		return fmt.Errorf("modelserver: MaxMessageSize %d is negative", c.MaxMessageSize)
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if c.ReloadRPC < ReloadRPCOff || c.ReloadRPC > ReloadRPCOpen {
		return fmt.Errorf("modelserver: ReloadRPC %d is not one of ReloadRPCOff, ReloadRPCToken, ReloadRPCOpen", c.ReloadRPC)
	}
	if c.ReloadRPC == ReloadRPCToken && c.AdminToken == "" && c.CurrentAdminToken == nil {
		return errors.New("modelserver: ReloadRPC is ReloadRPCToken but AdminToken is empty")
	}
	if c.ModelConfigFile != "" && len(c.Models) > 0 {
		return errors.New("modelserver: Models and ModelConfigFile are both set: use one")
	}
	if c.ModelConfigFilePoll > 0 && c.ModelConfigFile == "" {
		return errors.New("modelserver: ModelConfigFilePoll is set without ModelConfigFile")
	}
	if c.MonitoringPath != "" {
		if c.MonitoringPath[0] != '/' || c.MonitoringPath == "/" || strings.HasPrefix(c.MonitoringPath, "/v1/") {
			return fmt.Errorf("modelserver: MonitoringPath %q must start with / and not be / or under /v1/ (the REST API's paths)", c.MonitoringPath)
		}
	}
	if err := validateModels("Models", c.Models); err != nil {
		return err
	}
	if c.Batching != nil {
		b := *c.Batching
		b.applyDefaults()
		if err := b.validate(); err != nil {
			return err
		}
	}
	return nil
}

func validateModels(setting string, models []ModelConfig) error {
	seen := map[string]bool{}
	for i, m := range models {
		if m.Name == "" {
			return fmt.Errorf("modelserver: %s[%d].Name is empty", setting, i)
		}
		if seen[m.Name] {
			return fmt.Errorf("modelserver: %s: model name %q is used twice", setting, m.Name)
		}
		seen[m.Name] = true
		if m.BasePath == "" {
			return fmt.Errorf("modelserver: %s[%q].BasePath is empty", setting, m.Name)
		}
		if err := m.Policy.validate(); err != nil {
			return fmt.Errorf("modelserver: %s[%q].Policy: %w", setting, m.Name, err)
		}
		for l := range m.Labels {
			if l == "" {
				return fmt.Errorf("modelserver: %s[%q].Labels has an empty label", setting, m.Name)
			}
		}
	}
	return nil
}

func (p VersionPolicy) validate() error {
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

func (b BatchingConfig) validate() error {
	if b.MaxBatchSize < 0 {
		return fmt.Errorf("modelserver: Batching.MaxBatchSize %d is negative", b.MaxBatchSize)
	}
	if b.BatchTimeout < 0 {
		return fmt.Errorf("modelserver: Batching.BatchTimeout %v is negative", b.BatchTimeout)
	}
	if b.MaxEnqueuedBatches < 0 {
		return fmt.Errorf("modelserver: Batching.MaxEnqueuedBatches %d is negative", b.MaxEnqueuedBatches)
	}
	if b.NumBatchThreads < 0 {
		return fmt.Errorf("modelserver: Batching.NumBatchThreads %d is negative", b.NumBatchThreads)
	}
	if len(b.AllowedBatchSizes) > 0 {
		prev := 0
		for _, s := range b.AllowedBatchSizes {
			if s <= prev {
				return fmt.Errorf("modelserver: Batching.AllowedBatchSizes %v must be positive and increasing", b.AllowedBatchSizes)
			}
			prev = s
		}
		if prev != b.MaxBatchSize {
			return fmt.Errorf("modelserver: Batching.AllowedBatchSizes: the last entry (%d) must equal MaxBatchSize (%d)", prev, b.MaxBatchSize)
		}
	}
	return nil
}

// ModelsFromProto converts TF's ModelServerConfig (model_config_list only) to
// ModelConfigs. Relative base paths are made absolute against the working
// directory.
func ModelsFromProto(cfg *servingpb.ModelServerConfig) ([]ModelConfig, error) {
	if cfg == nil {
		return nil, errors.New("no ModelServerConfig")
	}
	if cfg.GetCustomModelConfig() != nil {
		return nil, errors.New("custom_model_config is not supported: use model_config_list")
	}
	var out []ModelConfig
	for _, mc := range cfg.GetModelConfigList().GetConfig() {
		m := ModelConfig{Name: mc.GetName(), BasePath: mc.GetBasePath()}
		if m.BasePath != "" && !filepath.IsAbs(m.BasePath) {
			abs, err := filepath.Abs(m.BasePath)
			if err != nil {
				return nil, fmt.Errorf("model %q: base_path: %w", m.Name, err)
			}
			m.BasePath = abs
		}
		if p := mc.GetModelVersionPolicy(); p != nil {
			switch {
			case p.GetLatest() != nil:
				m.Policy.Latest = max(p.GetLatest().GetNumVersions(), 1)
			case p.GetSpecific() != nil:
				m.Policy.Specific = slices.Clone(p.GetSpecific().GetVersions())
				if len(m.Policy.Specific) == 0 {
					return nil, fmt.Errorf("model %q: model_version_policy specific lists no versions", m.Name)
				}
			case p.GetAll() != nil:
				m.Policy.All = true
			}
		}
		if len(mc.GetVersionLabels()) > 0 {
			m.Labels = make(map[string]int64, len(mc.GetVersionLabels()))
			for k, v := range mc.GetVersionLabels() {
				m.Labels[k] = v
			}
		}
		out = append(out, m)
	}
	if err := validateModels("model_config_list", out); err != nil {
		return nil, err
	}
	return out, nil
}

// ModelsToProto is the inverse of ModelsFromProto.
func ModelsToProto(models []ModelConfig) *servingpb.ModelServerConfig {
	list := &servingpb.ModelConfigList{}
	for _, m := range models {
		list.Config = append(list.Config, tfserving.ModelConfigToProto(m.Name, m.BasePath, "onnx",
			m.Policy.Latest, m.Policy.Specific, m.Policy.All, m.Labels))
	}
	return &servingpb.ModelServerConfig{Config: &servingpb.ModelServerConfig_ModelConfigList{ModelConfigList: list}}
}

// ParseModelConfigText parses TF's text format of ModelServerConfig (the
// --model_config_file format).
func ParseModelConfigText(data []byte) ([]ModelConfig, error) {
	var cfg servingpb.ModelServerConfig
	if err := prototext.Unmarshal(data, &cfg); err != nil {
		return nil, err
	}
	return ModelsFromProto(&cfg)
}

// BatchingFromProto converts TF's BatchingParameters; unset fields keep TF's
// defaults.
func BatchingFromProto(p *servingpb.BatchingParameters) *BatchingConfig {
	b := &BatchingConfig{}
	if p == nil {
		return b
	}
	if v := p.GetMaxBatchSize(); v != nil {
		b.MaxBatchSize = int(v.GetValue())
	}
	if v := p.GetBatchTimeoutMicros(); v != nil {
		b.BatchTimeout = time.Duration(v.GetValue()) * time.Microsecond
	}
	if v := p.GetMaxEnqueuedBatches(); v != nil {
		b.MaxEnqueuedBatches = int(v.GetValue())
	}
	if v := p.GetNumBatchThreads(); v != nil {
		b.NumBatchThreads = int(v.GetValue())
	}
	for _, s := range p.GetAllowedBatchSizes() {
		b.AllowedBatchSizes = append(b.AllowedBatchSizes, int(s))
	}
	return b
}

// fallsBack reports whether the policy serves the highest versions that load
// (Latest), rather than versions named or all of them.
func (p VersionPolicy) fallsBack() bool { return !p.All && len(p.Specific) == 0 }

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
