package sidecar

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/infergate/infergate/inference/tfserving"
)

// DefaultBinary is looked up on PATH when Config.Binary is empty.
const DefaultBinary = "tensorflow_model_server"

// Defaults of Config, filled in by DefaultConfig only.
const (
	// DefaultReadyTimeout is generous because TF Serving opens its ports only
	// after every model is loaded, and a large SavedModel (plus warm-up)
	// takes minutes on an edge box.
	DefaultReadyTimeout   = 10 * time.Minute
	DefaultGracePeriod    = 10 * time.Second
	DefaultLogMaxBytes    = 10 << 20
	DefaultLogTailLines   = 200
	DefaultReadyPoll      = 500 * time.Millisecond
	DefaultHealthInterval = 5 * time.Second
	DefaultReloadTimeout  = 2 * time.Minute
	DefaultCallTimeout    = 30 * time.Second
	DefaultPlatform       = "tensorflow"
	// Restarts back off from DefaultBackoffInitial, doubling up to
	// DefaultBackoffMax; DefaultCrashLoopRestarts exits within
	// DefaultCrashLoopWindow are a crash loop.
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = time.Minute
	DefaultCrashLoopRestarts = 5
	DefaultCrashLoopWindow   = 10 * time.Minute
	// DefaultFileSystemPollSeconds is TF Serving's own default.
	DefaultFileSystemPollSeconds = 1
)

// Config of a Supervisor. Start from DefaultConfig and set Models and
// DataDir: New and Validate fill in nothing, and refuse a zero timing.
type Config struct {
	// Binary is the tensorflow_model_server executable (a path, or a name
	// looked up on PATH). Empty means DefaultBinary on PATH. The appliance
	// sets it from --tfserving-bin.
	Binary string
	// Name is what the logs, states and errors call the server: "tensorflow_model_server"
	// (DefaultBinary) in DefaultConfig; the appliance's isolated mode runs
	// infergate's own model server under another name.
	Name string
	// Args come before the flags the supervisor passes: a subcommand, as in
	// `infergate model-server --port=…`. None for tensorflow_model_server.
	Args []string
	// ReloadToken, if set, is sent with HandleReloadConfigRequest as gRPC
	// metadata "authorization: Bearer <token>" (infergate's model server
	// reads the token it asks for from INFERGATE_MODEL_SERVER_RELOAD_TOKEN,
	// which Env can carry; TF Serving ignores the metadata).
	ReloadToken string
	// ExtraFlags are appended to the flags the supervisor passes (for
	// example --enable_model_warmup=false, --tensorflow_intra_op_parallelism=2).
	// The flags the supervisor manages itself are refused here.
	ExtraFlags []string
	// Env is added to the child's environment (which is infergate's).
	Env []string
	// DataDir receives models.config, batching.config, monitoring.config and
	// logs/. It is created if missing.
	DataDir string
	// Models served; at least one. Readiness waits for every one of them.
	// Platform "" means DefaultPlatform. TF accepts labels only for
	// versions already AVAILABLE: add a version first, label it in a second
	// Reload.
	Models []tfserving.ModelConfig
	// GRPCPort and RESTPort are the ports TF Serving listens on (on every
	// interface: tensorflow_model_server cannot bind one address). 0 picks
	// a free port; RESTPort -1 turns the REST API off.
	GRPCPort int
	RESTPort int
	// ConfigPollSeconds is --model_config_file_poll_wait_seconds. 0 (read
	// once) is the default because Reload pushes changes with
	// HandleReloadConfigRequest; the file on disk is kept in step so a
	// restart loads the same models.
	ConfigPollSeconds int
	// FileSystemPollSeconds is --file_system_poll_wait_seconds: how often TF
	// looks for new version directories (DefaultConfig: TF's default, 1).
	FileSystemPollSeconds int
	// Batching, if set, writes batching.config and passes --enable_batching.
	// Zero fields keep TF's defaults.
	Batching *tfserving.BatchingConfig
	// MonitoringPath, if set, writes monitoring.config so TF exports
	// Prometheus metrics at this path of the REST port.
	MonitoringPath string
	// ReadyTimeout is how long a started process may take to serve every
	// model; past it the process is killed and restarted (a load that
	// hangs). Not ready again for this long while running has the same
	// effect.
	ReadyTimeout time.Duration
	// ReadyPoll is how often readiness is polled while not ready;
	// HealthInterval how often once ready.
	ReadyPoll      time.Duration
	HealthInterval time.Duration
	// CallTimeout bounds Predict/Metadata calls whose context has no deadline.
	CallTimeout time.Duration
	// ReloadTimeout bounds Reload (the RPC plus the wait for the new models).
	ReloadTimeout time.Duration
	Backoff       Backoff
	CrashLoop     CrashLoop
	// GracePeriod is the time between SIGTERM and SIGKILL on stop. TF
	// Serving does not drain on SIGTERM: callers must drain first.
	GracePeriod time.Duration
	// LogMaxBytes bounds each of logs/stdout.log and logs/stderr.log; a full
	// file is rotated to .1 (one old file kept).
	LogMaxBytes int64
	// LogTailLines is the size of the in-memory tail LogTail serves.
	LogTailLines int
}

// Backoff between restarts: Initial, doubling up to Max.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// CrashLoop: Restarts exits within Window put the supervisor in state
// crash-loop, where it keeps retrying at Backoff.Max.
type CrashLoop struct {
	Restarts int
	Window   time.Duration
}

// DefaultConfig returns the defaults; the caller sets DataDir and Models.
func DefaultConfig() Config {
	return Config{
		Name:                  DefaultBinary,
		ReadyTimeout:          DefaultReadyTimeout,
		ReadyPoll:             DefaultReadyPoll,
		HealthInterval:        DefaultHealthInterval,
		CallTimeout:           DefaultCallTimeout,
		ReloadTimeout:         DefaultReloadTimeout,
		Backoff:               Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax},
		CrashLoop:             CrashLoop{Restarts: DefaultCrashLoopRestarts, Window: DefaultCrashLoopWindow},
		GracePeriod:           DefaultGracePeriod,
		LogMaxBytes:           DefaultLogMaxBytes,
		LogTailLines:          DefaultLogTailLines,
		FileSystemPollSeconds: DefaultFileSystemPollSeconds,
	}
}

// managedFlags are passed by the supervisor; setting them in ExtraFlags
// would make the supervisor's view (ports, files) disagree with TF's.
var managedFlags = map[string]string{
	"port":                                "GRPCPort",
	"rest_api_port":                       "RESTPort",
	"model_config_file":                   "Models",
	"model_name":                          "Models",
	"model_base_path":                     "Models",
	"model_config_file_poll_wait_seconds": "ConfigPollSeconds",
	"file_system_poll_wait_seconds":       "FileSystemPollSeconds",
	"enable_batching":                     "Batching",
	"batching_parameters_file":            "Batching",
	"monitoring_config_file":              "MonitoringPath",
}

// ManagedFlag reports whether arg (an ExtraFlags entry such as
// "--port=8500") is a flag the supervisor sets itself, and which Config
// field stands for it, so callers can refuse it before starting anything.
func ManagedFlag(arg string) (name, field string, managed bool) {
	name, _, _ = strings.Cut(strings.TrimLeft(arg, "-"), "=")
	field, managed = managedFlags[name]
	return name, field, managed
}

// Validate reports the first invalid setting, named as in Config. It does
// not look for the binary (New does).
func (c Config) Validate() error {
	if strings.TrimSpace(c.DataDir) == "" {
		return errors.New("sidecar: DataDir is empty")
	}
	if strings.TrimSpace(c.Name) == "" {
		return errors.New("sidecar: Name is empty (DefaultConfig sets tensorflow_model_server)")
	}
	if err := ValidateModels(c.Models); err != nil {
		return err
	}
	for _, f := range c.ExtraFlags {
		if !strings.HasPrefix(f, "-") {
			return fmt.Errorf("sidecar: ExtraFlags: %q is not a flag (TF Serving takes --name=value)", f)
		}
		if name, field, ok := ManagedFlag(f); ok {
			return fmt.Errorf("sidecar: ExtraFlags: --%s is set by the supervisor; use %s", name, field)
		}
	}
	switch {
	case c.GRPCPort < 0 || c.GRPCPort > 65535:
		return fmt.Errorf("sidecar: GRPCPort %d is not a TCP port (0 picks a free one)", c.GRPCPort)
	case c.RESTPort < -1 || c.RESTPort > 65535:
		return fmt.Errorf("sidecar: RESTPort %d is not a TCP port (0 picks a free one, -1 turns REST off)", c.RESTPort)
	case c.GRPCPort != 0 && c.GRPCPort == c.RESTPort:
		return fmt.Errorf("sidecar: RESTPort %d must differ from GRPCPort", c.RESTPort)
	case c.ConfigPollSeconds < 0:
		return fmt.Errorf("sidecar: ConfigPollSeconds %d is negative", c.ConfigPollSeconds)
	case c.FileSystemPollSeconds < 1:
		return fmt.Errorf("sidecar: FileSystemPollSeconds %d must be at least 1", c.FileSystemPollSeconds)
	case c.ReadyTimeout <= 0, c.ReadyPoll <= 0, c.HealthInterval <= 0, c.CallTimeout <= 0, c.ReloadTimeout <= 0, c.GracePeriod <= 0:
		return errors.New("sidecar: ReadyTimeout, ReadyPoll, HealthInterval, CallTimeout, ReloadTimeout and GracePeriod must be positive (start from DefaultConfig)")
	case c.Backoff.Initial <= 0 || c.Backoff.Max < c.Backoff.Initial:
		return fmt.Errorf("sidecar: Backoff: Initial %v must be positive and at most Max %v", c.Backoff.Initial, c.Backoff.Max)
	case c.CrashLoop.Restarts < 1 || c.CrashLoop.Window <= 0:
		return fmt.Errorf("sidecar: CrashLoop: Restarts %d must be at least 1 and Window %v positive", c.CrashLoop.Restarts, c.CrashLoop.Window)
	case c.LogMaxBytes < 1024:
		return fmt.Errorf("sidecar: LogMaxBytes %d is below 1024", c.LogMaxBytes)
	case c.LogTailLines < 1:
		return fmt.Errorf("sidecar: LogTailLines %d must be positive", c.LogTailLines)
	case c.MonitoringPath != "" && !strings.HasPrefix(c.MonitoringPath, "/"):
		return fmt.Errorf("sidecar: MonitoringPath %q must start with /", c.MonitoringPath)
	case c.MonitoringPath != "" && c.RESTPort == -1:
		return errors.New("sidecar: MonitoringPath needs the REST API (TF serves metrics on the REST port), but RESTPort is -1")
	}
	if c.Batching != nil {
		b := *c.Batching
		if err := b.Validate(); err != nil {
			return fmt.Errorf("sidecar: Batching: %w", err)
		}
	}
	return nil
}

// ValidateModels checks a model list the way TF Serving would refuse it:
// tfserving.ValidateModels, at least one model, names fit for the text
// format, and versions (specific, labelled) positive.
func ValidateModels(models []tfserving.ModelConfig) error {
	if len(models) == 0 {
		return errors.New("sidecar: Models is empty: configure at least one model")
	}
	if err := tfserving.ValidateModels(models); err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	for i, m := range models {
		if strings.ContainsAny(m.Name, "/\\ \t\n'\"") {
			return fmt.Errorf("sidecar: Models[%d]: Name %q contains a slash, quote or space", i, m.Name)
		}
		for _, v := range m.Policy.Specific {
			if v <= 0 {
				return fmt.Errorf("sidecar: Models[%d] (%s): Policy.Specific has version %d; versions are positive", i, m.Name, v)
			}
		}
		for l, v := range m.Labels {
			if v <= 0 {
				return fmt.Errorf("sidecar: Models[%d] (%s): label %q → %d: labels need a positive version", i, m.Name, l, v)
			}
		}
	}
	return nil
}

// absModels returns models with absolute base paths (TF resolves relative
// ones against its own working directory, which is a trap) unless they are
// URLs (gs://, s3://, hdfs://) that TF reads itself.
func absModels(models []tfserving.ModelConfig) ([]tfserving.ModelConfig, error) {
	out := make([]tfserving.ModelConfig, len(models))
	for i, m := range models {
		m = m.Clone()
		if !strings.Contains(m.BasePath, "://") && !filepath.IsAbs(m.BasePath) {
			abs, err := filepath.Abs(m.BasePath)
			if err != nil {
				return nil, fmt.Errorf("sidecar: model %s: BasePath: %w", m.Name, err)
			}
			m.BasePath = abs
		}
		out[i] = m
	}
	return out, nil
}

// findBinary resolves the binary to run, naming the setting when it is
// missing so an operator knows what to change.
func findBinary(bin string) (string, error) {
	setting := "set --tfserving-bin (model_server.tfserving_bin, INFERGATE_MODEL_SERVER_TFSERVING_BIN) to its path"
	if bin == "" {
		bin = DefaultBinary
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		if strings.ContainsRune(bin, filepath.Separator) {
			return "", fmt.Errorf("sidecar: tensorflow_model_server binary %s is not an executable file (%w); %s", bin, err, setting)
		}
		return "", fmt.Errorf("sidecar: %s not found on PATH (install TensorFlow Serving, see docs/sidecar.md, or %s): %w", bin, setting, err)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, nil
}
