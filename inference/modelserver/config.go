package modelserver

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
)

// Config configures a Server. Start from DefaultConfig: New and Validate
// fill in nothing ("" listen addresses turn a listener off).
type Config struct {
	// GRPCListen is the TF Serving gRPC address. "" serves no gRPC listener
	// (in-process calls only).
	GRPCListen string
	// RESTListen is the TF Serving REST address. "" turns REST (and the
	// Prometheus path) off.
	RESTListen string
	// Models served. Mutually exclusive with ModelConfigFile.
	Models []tfserving.ModelConfig
	// ModelConfigFile is a TF text-format ModelServerConfig
	// (model_config_list { config { ... } }).
	ModelConfigFile string
	// ModelConfigFilePoll re-reads ModelConfigFile this often and applies it
	// when it changed; 0 reads it once.
	ModelConfigFilePoll time.Duration
	// FileSystemPoll is how often model base paths are scanned for new or
	// removed versions (DefaultConfig: 1s); negative scans only at start,
	// on reloads and on uploads. 0 is refused.
	FileSystemPoll time.Duration
	// Threads is how many goroutines one call of an embedded (ONNX) model may
	// use for a large operator (convolution, large matrix products); 0 means
	// every core (GOMAXPROCS).
	Threads int
	// Batching turns on server-side batching of concurrent Predict calls
	// (per model version), with TF's parameters. nil = off.
	Batching *tfserving.BatchingConfig
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
	// MaxMessageSize bounds gRPC messages both ways (DefaultConfig: 2 GiB - 1, as TF).
	MaxMessageSize int
	// REST connections: the time a request's headers, then its body, may take to arrive,
	// and how long an idle keep-alive connection stays open (DefaultConfig: 10s, 1m, 2m).
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

// Defaults of DefaultConfig, the one place they are filled in.
const (
	DefaultFileSystemPoll        = time.Second
	DefaultRESTTimeout           = 30 * time.Second
	DefaultMaxMessageSize        = 1<<31 - 1
	DefaultRESTReadHeaderTimeout = 10 * time.Second
	DefaultRESTReadTimeout       = time.Minute
	DefaultRESTIdleTimeout       = 2 * time.Minute
)

// DefaultConfig returns the defaults: gRPC on 127.0.0.1:8500, REST on
// 127.0.0.1:8501, scanning model directories every second, no models.
func DefaultConfig() Config {
	return Config{
		GRPCListen:            "127.0.0.1:8500",
		RESTListen:            "127.0.0.1:8501",
		FileSystemPoll:        DefaultFileSystemPoll,
		RESTTimeout:           DefaultRESTTimeout,
		MaxMessageSize:        DefaultMaxMessageSize,
		RESTReadHeaderTimeout: DefaultRESTReadHeaderTimeout,
		RESTReadTimeout:       DefaultRESTReadTimeout,
		RESTIdleTimeout:       DefaultRESTIdleTimeout,
		Limits:                DefaultLimits,
	}
}

// batchingWithDefaults fills in TF's defaults for the zero fields. This is
// not a second way of filling Config's defaults: a zero field of TF's
// BatchingParameters means TF's default in TF's own format, which the
// batching file and model_server.sidecar.* keep (docs/configuration.md:
// "0: TF's default"), so the embedded server reads them the same way.
func batchingWithDefaults(b tfserving.BatchingConfig) tfserving.BatchingConfig {
	if b.MaxBatchSize == 0 {
		b.MaxBatchSize = tfserving.DefaultMaxBatchSize
	}
	if b.MaxEnqueuedBatches == 0 {
		b.MaxEnqueuedBatches = tfserving.DefaultMaxEnqueuedBatches
	}
	if b.NumBatchThreads == 0 {
		b.NumBatchThreads = int64(max(1, numCPU()))
	}
	return b
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
	if c.MaxMessageSize <= 0 {
		return fmt.Errorf("modelserver: MaxMessageSize %d must be positive", c.MaxMessageSize)
	}
	if c.FileSystemPoll == 0 {
		return errors.New("modelserver: FileSystemPoll is 0: positive to scan that often, negative to scan only at start")
	}
	if c.RESTReadHeaderTimeout <= 0 || c.RESTReadTimeout <= 0 || c.RESTIdleTimeout <= 0 {
		return fmt.Errorf("modelserver: RESTReadHeaderTimeout %v, RESTReadTimeout %v and RESTIdleTimeout %v must be positive",
			c.RESTReadHeaderTimeout, c.RESTReadTimeout, c.RESTIdleTimeout)
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
		if err := b.Validate(); err != nil {
			return fmt.Errorf("modelserver: Batching: %w", err)
		}
	}
	return nil
}

func validateModels(setting string, models []tfserving.ModelConfig) error {
	if err := tfserving.ValidateModels(models); err != nil {
		return fmt.Errorf("modelserver: %s: %w", setting, err)
	}
	return nil
}

// ModelsFromProto converts TF's ModelServerConfig (model_config_list only) to
// ModelConfigs. Relative base paths are made absolute against the working
// directory.
func ModelsFromProto(cfg *servingpb.ModelServerConfig) ([]tfserving.ModelConfig, error) {
	if cfg == nil {
		return nil, errors.New("no ModelServerConfig")
	}
	if cfg.GetCustomModelConfig() != nil {
		return nil, errors.New("custom_model_config is not supported: use model_config_list")
	}
	var out []tfserving.ModelConfig
	for _, mc := range cfg.GetModelConfigList().GetConfig() {
		m, err := tfserving.ModelConfigFromProto(mc)
		if err != nil {
			return nil, err
		}
		if m.BasePath != "" && !filepath.IsAbs(m.BasePath) {
			abs, err := filepath.Abs(m.BasePath)
			if err != nil {
				return nil, fmt.Errorf("model %q: base_path: %w", m.Name, err)
			}
			m.BasePath = abs
		}
		out = append(out, m)
	}
	if err := validateModels("model_config_list", out); err != nil {
		return nil, err
	}
	return out, nil
}

// Platform is the model_platform the embedded server writes for models
// that name none.
const Platform = "onnx"

// ModelsToProto is the inverse of ModelsFromProto.
func ModelsToProto(models []tfserving.ModelConfig) *servingpb.ModelServerConfig {
	return tfserving.ModelServerConfigToProto(models, Platform)
}

// ParseModelConfigText parses TF's text format of ModelServerConfig (the
// --model_config_file format).
func ParseModelConfigText(data []byte) ([]tfserving.ModelConfig, error) {
	var cfg servingpb.ModelServerConfig
	if err := prototext.Unmarshal(data, &cfg); err != nil {
		return nil, err
	}
	return ModelsFromProto(&cfg)
}

// fallsBack reports whether the policy serves the highest versions that load
// (Latest), rather than versions named or all of them.
func fallsBack(p tfserving.VersionPolicy) bool { return !p.All && len(p.Specific) == 0 }
