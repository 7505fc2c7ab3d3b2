package modelserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/infergate/infergate/buildinfo"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/bytesize"
	"github.com/infergate/infergate/internal/clihelp"
	"github.com/infergate/infergate/proto/servingpb"
)

// DefaultPrometheusPath is TF Serving's default metrics path.
const DefaultPrometheusPath = "/monitoring/prometheus/metrics"

// ignoredFlags are tensorflow_model_server flags accepted for compatibility
// with supervisors and scripts; they change nothing here. bool says whether
// the flag is boolean (so "--flag" alone parses).
var ignoredFlags = []struct {
	name   string
	isBool bool
	why    string
}{
	{"grpc_channel_arguments", false, "gRPC channel arguments are not configurable"},
	{"enable_model_warmup", true, "ONNX models need no warm-up"},
	{"max_num_load_retries", false, "a failed version is retried when its files change"},
	{"load_retry_interval_micros", false, "a failed version is retried when its files change"},
	{"num_load_threads", false, "versions load one at a time"},
	{"num_unload_threads", false, "unloading is immediate"},
	{"tensorflow_inter_op_parallelism", false, "there is no TensorFlow runtime"},
	{"tensorflow_intra_op_parallelism", false, "there is no TensorFlow runtime (see --model_threads)"},
	{"tensorflow_session_parallelism", false, "there is no TensorFlow runtime"},
	{"tensorflow_session_config_file", false, "there is no TensorFlow runtime"},
	{"enable_grpc_healthcheck_service", true, "the gRPC health service is always on"},
	{"rest_api_num_threads", false, "REST uses Go's HTTP server"},
	{"rest_api_enable_cors_support", true, "CORS is not supported"},
	{"grpc_max_threads", false, "gRPC uses goroutines"},
	{"grpc_socket_path", false, "UNIX sockets are not supported"},
	{"ssl_config_file", false, "TLS is not supported; put a proxy in front"},
	{"platform_config_file", false, "every model is ONNX"},
	{"per_process_gpu_memory_fraction", false, "there is no GPU support"},
	{"saved_model_tags", false, "models are ONNX files, not SavedModels"},
	{"xla_cpu_compilation_enabled", true, "there is no XLA"},
	{"enable_signature_method_name_check", true, "signatures are derived from the ONNX graph"},
	{"flush_filesystem_caches", true, "not needed"},
	{"remove_unused_fields_from_bundle_metagraph", true, "not needed"},
	{"prefer_tflite_model", true, "TFLite is not supported"},
	{"use_tflite_model", true, "TFLite is not supported"},
	{"enable_profiler", true, "there is no profiler"},
	{"thread_pool_factory_config_file", false, "not needed"},
	{"mixed_precision", false, "not supported"},
	{"skip_initialize_tpu", true, "there is no TPU support"},
}

// ReloadTokenEnv, when set in the environment of `infergate model-server`,
// is the token HandleReloadConfigRequest asks for (gRPC metadata
// authorization: Bearer <token>); unset, anyone who reaches the port may
// reload, as with tensorflow_model_server.
const ReloadTokenEnv = "INFERGATE_MODEL_SERVER_RELOAD_TOKEN"

// ModelServerMain is `infergate model-server`: it takes tensorflow_model_server's
// flags (args without the program name, --name=value form), serves until
// ctx ends (the caller cancels it on SIGTERM/SIGINT) and returns nil after a
// clean stop. Like tensorflow_model_server it listens on all interfaces and
// opens its ports only once every model is AVAILABLE; a model whose first load
// fails makes it return an error. Flags with no effect here are accepted with
// a warning on stderr; unknown flags are an error.
func ModelServerMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("model-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		clihelp.Usage(stderr, "model-server [--name=value ...]", "Serves ONNX models over TF Serving's gRPC and REST APIs and takes tensorflow_model_server's\n"+
			"flags (--port=8500 --rest_api_port=8501 --model_name=NAME --model_base_path=DIR, or --model_config_file=FILE).", fs)
	}
	port := fs.Int("port", 8500, "TCP port of the gRPC API (0 picks a free one)")
	restPort := fs.Int("rest_api_port", 0, "TCP port of the REST API (0 = off); must differ from --port")
	restTimeout := fs.Int("rest_api_timeout_in_ms", 30000, "timeout of a REST request in milliseconds")
	modelName := fs.String("model_name", "default", "name of the model (ignored with --model_config_file)")
	basePath := fs.String("model_base_path", "", "directory of the model's versions, <base>/<version>/model.onnx (ignored with --model_config_file)")
	configFile := fs.String("model_config_file", "", "ModelServerConfig in text format; overrides --model_name/--model_base_path")
	configPoll := fs.Int("model_config_file_poll_wait_seconds", 0, "re-read --model_config_file this often (0 = read once)")
	fsPoll := fs.Int("file_system_poll_wait_seconds", 1, "scan model directories this often (0 = once at start, negative = never after start)")
	enableBatching := fs.Bool("enable_batching", false, "batch concurrent Predict calls per model version")
	batchingFile := fs.String("batching_parameters_file", "", "BatchingParameters in text format (needs --enable_batching)")
	monitoringFile := fs.String("monitoring_config_file", "", "MonitoringConfig in text format (Prometheus on the REST port)")
	allowUnavailableLabels := fs.Bool("allow_version_labels_for_unavailable_models", false, "let labels point at versions that are not loaded")
	showVersion := fs.Bool("version", false, "print the version and exit")
	// Not TF flags: infergate's bounds on what one request may allocate.
	maxElements := fs.Int64("max_request_elements", DefaultLimits.MaxRequestElements, "most tensor elements one gRPC/REST request may decode to (0 = no limit)")
	maxRows := fs.Int64("max_request_rows", DefaultLimits.MaxRequestRows, "most rows (dim 0) one gRPC/REST request may have (0 = no limit)")
	maxInflight := DefaultLimits.MaxInflightBytes
	fs.Var(sizeFlag{&maxInflight}, "max_inflight_request_bytes", "estimated memory of the requests served at once, in bytes or with a unit such as 512MiB (0 = no limit)")
	threads := fs.Int("model_threads", 0, "goroutines one model call may use for a large operator, such as a convolution (0 = all cores)")
	listenHost := fs.String("listen_host", "0.0.0.0", "interface both ports bind (0.0.0.0, as tensorflow_model_server; 127.0.0.1 keeps them on this machine)")
	maxFolded := DefaultLimits.MaxFoldedConstantBytes
	fs.Var(sizeFlag{&maxFolded}, "max_folded_constant_bytes", "most bytes of constants one model may fold into while loading, in bytes or with a unit such as 256MiB")
	ignored := map[string]string{}
	for _, f := range ignoredFlags {
		ignored[f.name] = f.why
		if f.isBool {
			fs.Bool(f.name, false, "accepted for compatibility; no effect ("+f.why+")")
		} else {
			fs.String(f.name, "", "accepted for compatibility; no effect ("+f.why+")")
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("model-server: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("model-server: unexpected argument %q (flags are --name=value)", fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintf(stdout, "TensorFlow ModelServer: infergate-%s\nTensorFlow Library: none (ONNX models on infergate's pure-Go runtime)\n", buildinfo.Get().Version)
		return nil
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	fs.Visit(func(f *flag.Flag) {
		if why, ok := ignored[f.Name]; ok {
			fmt.Fprintf(stderr, "warning: --%s has no effect in infergate's model server: %s\n", f.Name, why)
		}
	})

	cfg := DefaultConfig()
	if net.ParseIP(*listenHost) == nil {
		return fmt.Errorf("model-server: --listen_host=%q is not an IP address", *listenHost)
	}
	cfg.GRPCListen = net.JoinHostPort(*listenHost, strconv.Itoa(*port))
	cfg.RESTListen = "" // unless --rest_api_port
	cfg.ListenAfterReady = true
	cfg.AllowLabelsForUnavailable = *allowUnavailableLabels
	// As tensorflow_model_server: anyone who reaches the port may reload
	// (the sidecar supervisor does); protect the port instead
	// (docs/sidecar.md).
	cfg.ReloadRPC = ReloadRPCOpen
	if tok := os.Getenv(ReloadTokenEnv); tok != "" {
		// The appliance's isolated mode: only its supervisor, which
		// knows the token, may reload.
		cfg.ReloadRPC, cfg.AdminToken = ReloadRPCToken, tok
	}
	switch {
	case *port < 0 || *port > 65535:
		return fmt.Errorf("model-server: --port=%d is not a TCP port", *port)
	case *restPort < 0 || *restPort > 65535:
		return fmt.Errorf("model-server: --rest_api_port=%d is not a TCP port", *restPort)
	case *restPort != 0 && *restPort == *port:
		return fmt.Errorf("model-server: --rest_api_port=%d must differ from --port", *restPort)
	case *restTimeout < 0:
		return fmt.Errorf("model-server: --rest_api_timeout_in_ms=%d is negative", *restTimeout)
	case *threads < 0:
		return fmt.Errorf("model-server: --model_threads=%d is negative", *threads)
	case *batchingFile != "" && !*enableBatching:
		return errors.New("model-server: --batching_parameters_file requires --enable_batching")
	}
	cfg.Threads = *threads
	cfg.Limits = Limits{MaxRequestElements: *maxElements, MaxRequestRows: *maxRows, MaxInflightBytes: maxInflight, MaxFoldedConstantBytes: maxFolded}
	if err := cfg.Limits.validate(); err != nil {
		return fmt.Errorf("model-server: --max_*: %w", err)
	}
	if *restPort != 0 {
		cfg.RESTListen = net.JoinHostPort(*listenHost, strconv.Itoa(*restPort))
	}
	cfg.RESTTimeout = time.Duration(*restTimeout) * time.Millisecond
	switch {
	case *fsPoll > 0:
		cfg.FileSystemPoll = time.Duration(*fsPoll) * time.Second
	default:
		cfg.FileSystemPoll = -1 // TF: 0 polls once, negative never; both mean "scan at start only"
	}
	if *configFile != "" {
		cfg.ModelConfigFile = *configFile
		if *configPoll > 0 {
			cfg.ModelConfigFilePoll = time.Duration(*configPoll) * time.Second
		}
	} else {
		if *basePath == "" {
			return errors.New("model-server: set --model_base_path (with --model_name) or --model_config_file")
		}
		cfg.Models = []tfserving.ModelConfig{{Name: *modelName, BasePath: *basePath}}
	}
	if *enableBatching {
		var bp servingpb.BatchingParameters
		if *batchingFile != "" {
			data, err := os.ReadFile(*batchingFile)
			if err != nil {
				return fmt.Errorf("model-server: --batching_parameters_file: %w", err)
			}
			if err := prototext.Unmarshal(data, &bp); err != nil {
				return fmt.Errorf("model-server: --batching_parameters_file %s: %w", *batchingFile, err)
			}
		}
		b := tfserving.BatchingFromProto(&bp)
		cfg.Batching = &b
	}
	if *monitoringFile != "" {
		data, err := os.ReadFile(*monitoringFile)
		if err != nil {
			return fmt.Errorf("model-server: --monitoring_config_file: %w", err)
		}
		var mc servingpb.MonitoringConfig
		if err := prototext.Unmarshal(data, &mc); err != nil {
			return fmt.Errorf("model-server: --monitoring_config_file %s: %w", *monitoringFile, err)
		}
		if pc := mc.GetPrometheusConfig(); pc.GetEnable() {
			cfg.MonitoringPath = pc.GetPath()
			if cfg.MonitoringPath == "" {
				cfg.MonitoringPath = DefaultPrometheusPath
			}
			if cfg.RESTListen == "" {
				fmt.Fprintln(stderr, "warning: Prometheus monitoring is served on the REST port, and --rest_api_port is 0 (off)")
			}
		}
	}

	srv, err := New(cfg, logger)
	if err != nil {
		return fmt.Errorf("model-server: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	if err := srv.WaitReady(ctx); err == nil {
		// tensorflow_model_server's wording, which scripts wait for.
		logger.Info("Running gRPC ModelServer at " + srv.GRPCAddr() + " ...")
		if a := srv.RESTAddr(); a != "" {
			logger.Info("Exporting HTTP/REST API at:" + a + " ...")
		}
	}
	err = <-done
	if err != nil {
		return fmt.Errorf("model-server: %w", err)
	}
	return nil
}

// sizeFlag is a byte-size flag of infergate's own that takes units ("512MiB",
// "1.5GiB") as every other size of infergate does, or a plain number of bytes.
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil {
		return "0"
	}
	return bytesize.Format(*f.n)
}

func (f sizeFlag) Set(s string) error {
	n, err := bytesize.Parse(s)
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("%s is negative", s)
	}
	*f.n = n
	return nil
}
