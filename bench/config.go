package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Modes and model paths.
const (
	ModePipeline = "pipeline"
	ModeBaseline = "baseline"

	ModelPathInProcess = "inprocess"
	ModelPathGRPC      = "grpc"
)

// Config is one bench run. Start from DefaultConfig.
type Config struct {
	// Brokers of a running appliance; empty starts a self-contained one in
	// this process (temporary data dir, embedded broker, demo model).
	Brokers []string
	// Rate is requests per second on a fixed schedule; 0 sends as fast as
	// Window allows.
	Rate float64
	// Duration is how long requests are measured, after Warmup.
	Duration time.Duration
	// Warmup is sent like the rest but left out of the latency figures
	// and the throughput window.
	Warmup time.Duration
	// Drain is how long to wait after sending for the last outputs.
	Drain time.Duration
	// Timeout bounds each wait for the broker before the run (connecting,
	// listing offsets), as --timeout does for the other client commands.
	Timeout time.Duration
	// Window bounds requests outstanding (sent, output not seen) when
	// Rate is 0.
	Window int
	// Mode is ModePipeline or ModeBaseline.
	Mode string
	// ModelPath (self-contained only) is how the pipeline reaches the model:
	// in process, or over loopback gRPC to a model server of its own.
	ModelPath string
	// Model (self-contained, pipeline mode only) is an ONNX file, or an
	// XGBoost JSON model (.json), served as the default model instead of
	// the demo model; requests are random rows that fit its signature.
	Model string
	// Partitions of the self-contained appliance's topics.
	Partitions int
	// BadEvery makes every n-th distinct payload undecodable, to exercise
	// the DLQ (0: none).
	BadEvery int
	// Payloads is how many distinct request values are pre-encoded.
	Payloads int
	// Linger of the generator's producer; negative picks one for the rate
	// (see linger).
	Linger time.Duration

	// Topics of an external appliance (self-contained: its own).
	RequestsTopic, ResultsTopic, DLQTopic string
	// TFServing is the gRPC endpoint the baseline calls when Brokers is
	// set (self-contained: the appliance's model server).
	TFServing string
	// PID of an external appliance, to sample its CPU and memory.
	PID int
	// Ingress (RunIngress) turns the self-contained appliance's ingress
	// on: mqtt or nats.
	Ingress string
	// AnswerQoS0 (with Ingress): the appliance answers at MQTT QoS 0
	// (ingress.answer_qos 0) and the MQTT devices subscribe at QoS 0.
	AnswerQoS0 bool
	// NATSOnly (with Ingress mqtt): measure a bare nats-server with a relay
	// client instead of the appliance (startNATSOnly).
	NATSOnly string
	// KafkaLoad (with Ingress): requests per second produced straight to
	// the requests topic beside the devices (startKafkaLoad).
	KafkaLoad float64

	// Shadow (self-contained pipeline) serves a second version of the model
	// (a copy of the first) and shadows it on every request during the run,
	// so the run measures what shadowing costs the results' latency.
	Shadow bool

	// Self-contained appliance settings; zero values keep the appliance's
	// defaults (MaxWait: negative keeps it).
	Durability  string
	Compression string
	MaxBatch    int
	MaxWait     time.Duration
	InFlight    int

	// Progress receives a line per second while the run lasts (nil: none).
	Progress io.Writer
	Logger   *slog.Logger
}

// DefaultConfig is a ten-second run at 1,000 requests/s against a
// self-contained appliance.
func DefaultConfig() Config {
	return Config{
		Rate:          1000,
		Duration:      10 * time.Second,
		Warmup:        2 * time.Second,
		Drain:         30 * time.Second,
		Timeout:       10 * time.Second,
		Window:        20000,
		Mode:          ModePipeline,
		ModelPath:     ModelPathInProcess,
		Partitions:    6,
		Payloads:      4096,
		Linger:        -1,
		RequestsTopic: "inference_requests",
		ResultsTopic:  "inference_results",
		DLQTopic:      "inference_dlq",
		MaxWait:       -1,
	}
}

// Validate reports every invalid setting, named by its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if c.Rate < 0 {
		bad("rate", "must be a positive number or max, got %g", c.Rate)
	}
	if c.Duration <= 0 {
		bad("duration", "must be > 0, got %s", c.Duration)
	}
	if c.Warmup < 0 {
		bad("warmup", "must be >= 0, got %s", c.Warmup)
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be > 0, got %s", c.Timeout)
	}
	if c.Drain <= 0 {
		bad("drain", "must be > 0, got %s", c.Drain)
	}
	if c.Rate == 0 && c.Window < 1 {
		bad("window", "must be >= 1, got %d", c.Window)
	}
	if c.Mode != ModePipeline && c.Mode != ModeBaseline {
		bad("mode", "must be %s or %s, got %q", ModePipeline, ModeBaseline, c.Mode)
	}
	if c.ModelPath != ModelPathInProcess && c.ModelPath != ModelPathGRPC {
		bad("model-path", "must be %s or %s, got %q", ModelPathInProcess, ModelPathGRPC, c.ModelPath)
	}
	if len(c.Brokers) > 0 && c.ModelPath == ModelPathGRPC {
		bad("model-path", "grpc selects how a self-contained appliance calls its model; a running appliance (--brokers) uses its own configuration")
	}
	if len(c.Brokers) > 0 && c.Mode == ModeBaseline && c.TFServing == "" {
		bad("tfserving", "the baseline against --brokers needs a TF Serving gRPC endpoint (HOST:PORT)")
	}
	if c.Model != "" && len(c.Brokers) > 0 {
		bad("model", "serves the file in a self-contained appliance; a running appliance (--brokers) serves its own models")
	}
	if c.Model != "" && c.Mode == ModeBaseline {
		bad("model", "the baseline sends the demo model's flat rows; --model works with --mode pipeline only")
	}
	if c.Model != "" && c.ModelPath == ModelPathGRPC {
		bad("model", "the loopback gRPC model server serves the demo model only; use --model-path inprocess")
	}
	if c.Shadow && (len(c.Brokers) > 0 || c.Mode != ModePipeline || c.ModelPath != ModelPathInProcess || c.Ingress != "") {
		bad("shadow", "shadows a second model version in a self-contained pipeline run (no --brokers, --mode pipeline, --model-path inprocess, no --ingress)")
	}
	if c.Partitions < 1 || c.Partitions > 1000 {
		bad("partitions", "must be 1..1000, got %d", c.Partitions)
	}
	if c.BadEvery < 0 {
		bad("bad-every", "must be >= 0, got %d", c.BadEvery)
	}
	if c.Payloads < 1 {
		bad("payloads", "must be >= 1, got %d", c.Payloads)
	}
	if c.RequestsTopic == "" || c.ResultsTopic == "" || c.DLQTopic == "" {
		bad("requests-topic", "the requests, results and DLQ topics must be named")
	}
	if c.PID < 0 {
		bad("pid", "must be a process id, got %d", c.PID)
	}
	if c.PID > 0 && len(c.Brokers) == 0 {
		bad("pid", "samples an external appliance (with --brokers); a self-contained one is this process")
	}
	return errors.Join(errs...)
}

// lowRate is the rate below which the generator does not linger: clients
// sending a few thousand requests a second send each on its own, and a
// millisecond of linger would be most of the latency being measured. Above
// it, and as fast as possible, records are batched as busy producers do.
const lowRate = 10000

// linger is the generator's producer linger.
func (c *Config) linger() time.Duration {
	switch {
	case c.Linger >= 0:
		return c.Linger
	case c.Rate > 0 && c.Rate < lowRate:
		return 0
	}
	return time.Millisecond
}
