package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/clihelp"
)

// UsageError is a mistake in the command line (exit code 2). Printed
// means the flag package already reported it.
type UsageError struct {
	Err     error
	Printed bool
}

func (u *UsageError) Error() string { return u.Err.Error() }
func (u *UsageError) Unwrap() error { return u.Err }

// ErrFailed is returned by Main after a run that lost requests or met
// errors; the report has been written.
var ErrFailed = errors.New("bench failed")

const usageLine = `bench [--brokers HOST:PORT,...] [--rate N|max] [--duration D] [--warmup D]
       [--mode pipeline|baseline] [--model-path inprocess|grpc] [--compare]
       [--model FILE.onnx|FILE.json] [--shadow] [--json] [--plot FILE.svg] [--cpuprofile FILE] [--mutexprofile FILE] [--blockprofile FILE]
       [--partitions N] [flags]`

// Main is `infergate bench`: it parses args, runs, writes the report to
// stdout (a table, or JSON with --json) and progress to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("infergate bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: infergate %s\n\n", usageLine)
		fmt.Fprint(stderr, "Open-loop load generator: sends requests on a fixed schedule (or as fast as a window of\n"+
			"outstanding requests allows) and measures each from its intended send time to its result.\n"+
			"Without --brokers it starts a self-contained appliance in this process.\n\nFlags:\n\n")
		clihelp.PrintFlags(stderr, fs)
	}
	brokers := fs.String("brokers", "", "bootstrap brokers of a running appliance (HOST:PORT,...); empty starts a self-contained one in process")
	rate := fs.String("rate", "1000", "requests per second on a fixed schedule, or max (as fast as --window allows)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured time, after the warmup")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "time sent but left out of the figures")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "how long to wait for the broker to answer before the run (connecting, listing offsets) before giving up with an error")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "longest wait after sending for the last outputs; what has not arrived by then is lost")
	fs.StringVar(&cfg.Mode, "mode", cfg.Mode, "pipeline (infergate's) or baseline (one Predict over gRPC and one synchronous commit per message)")
	fs.StringVar(&cfg.ModelPath, "model-path", cfg.ModelPath, "self-contained: inprocess, or grpc (the pipeline calls a model server over loopback gRPC, as it would a sidecar)")
	fs.StringVar(&cfg.Model, "model", "", "self-contained pipeline: serve this ONNX file (or XGBoost JSON model, .json) as the default model instead of the demo model, with random inputs fitting its signature")
	fs.BoolVar(&cfg.Shadow, "shadow", false, "self-contained pipeline: serve a copy of the model as version 2 and shadow it on every request (rollout mode shadow, sample 1), to measure what shadowing costs the results' latency")
	compare := fs.Bool("compare", false, "run the pipeline, then the baseline, with the same settings, and print the throughput ratio")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	plotFile := fs.String("plot", "", "write a latency plot (SVG) to this file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file")
	mutexProfile := fs.String("mutexprofile", "", "write a mutex contention profile (pprof, every contention event) of the whole run to this file")
	blockProfile := fs.String("blockprofile", "", "write a blocking profile (pprof, blocking events of 10µs and more) of the whole run to this file")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the self-contained appliance's topics (and the baseline's)")
	window := fs.Int("window", 0, "with --rate max: most requests outstanding (default 20000 for the pipeline, 100 for the baseline)")
	fs.DurationVar(&cfg.Linger, "linger", cfg.Linger, "the generator's producer linger (default: 0 below 10000 req/s, else 1ms)")
	fs.IntVar(&cfg.BadEvery, "bad-every", 0, "make every N-th distinct request undecodable, to exercise the DLQ (0: none)")
	fs.IntVar(&cfg.Payloads, "payloads", cfg.Payloads, "distinct request values encoded before the run")
	fs.StringVar(&cfg.RequestsTopic, "requests-topic", cfg.RequestsTopic, "with --brokers: the appliance's requests topic")
	fs.StringVar(&cfg.ResultsTopic, "results-topic", cfg.ResultsTopic, "with --brokers: the appliance's results topic")
	fs.StringVar(&cfg.DLQTopic, "dlq-topic", cfg.DLQTopic, "with --brokers: the appliance's DLQ topic")
	fs.StringVar(&cfg.TFServing, "tfserving", "", "with --brokers --mode baseline: the TF Serving gRPC endpoint the baseline calls")
	fs.IntVar(&cfg.PID, "pid", 0, "with --brokers: process id of the appliance, to sample its CPU and memory")
	fs.StringVar(&cfg.Durability, "durability", "", "self-contained: broker durability fsync or os (default: the appliance's, fsync)")
	fs.StringVar(&cfg.Compression, "compression", "", "self-contained: compression of what the appliance produces (default: the appliance's)")
	fs.IntVar(&cfg.MaxBatch, "max-batch", 0, "self-contained: pipeline max batch size (default: the appliance's)")
	fs.DurationVar(&cfg.MaxWait, "max-wait", cfg.MaxWait, "self-contained: pipeline max batch wait (default: the appliance's)")
	fs.IntVar(&cfg.InFlight, "in-flight", 0, "self-contained: pipeline batches in flight (default: the appliance's)")
	ingressProto := fs.String("ingress", "", "mqtt or nats: measure devices publishing durable requests (MQTT QoS 1, JetStream) to the ingress and receiving the predictions (self-contained only)")
	devices := fs.Int("devices", 8, "with --ingress: device connections, each publishing its share of --rate")
	answerQoS := fs.Int("answer-qos", 1, "with --ingress mqtt: QoS of the answers (ingress.answer_qos) and of the devices' subscriptions, 0 or 1")
	fs.StringVar(&cfg.NATSOnly, "nats-only", "", "with --ingress mqtt: no infergate, a bare embedded nats-server and a relay that answers every request at --answer-qos: mqtt (an MQTT client subscribed at QoS 1) or js (an in-process JetStream consumer, as the ingress's minus Kafka)")
	fs.Float64Var(&cfg.KafkaLoad, "kafka-load", 0, "with --ingress: also produce this many requests per second straight to the requests topic (bulk Kafka traffic sharing the pipeline with the devices)")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	logLevel := fs.String("log-level", "error", "log level of the appliance and the bench (debug, info, warn, error), on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &UsageError{Err: err, Printed: true}
	}
	if fs.NArg() > 0 {
		return &UsageError{Err: fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if *brokers != "" {
		for _, b := range strings.Split(*brokers, ",") {
			if b = strings.TrimSpace(b); b != "" {
				cfg.Brokers = append(cfg.Brokers, b)
			}
		}
	}
	if *rate == "max" {
		cfg.Rate = 0
	} else {
		r, err := strconv.ParseFloat(*rate, 64)
		if err != nil || !(r > 0) || math.IsInf(r, 0) {
			return &UsageError{Err: fmt.Errorf("--rate: %q is neither a positive number nor max", *rate)}
		}
		cfg.Rate = r
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return &UsageError{Err: fmt.Errorf("--log-level: %w", err)}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if !*quiet {
		cfg.Progress = stderr
	}
	windowFor := func(mode string) int {
		if *window > 0 {
			return *window
		}
		if mode == ModeBaseline {
			// The baseline handles one request at a time: a deep queue
			// only lengthens the drain.
			return 100
		}
		return 20000
	}
	cfg.Window = windowFor(cfg.Mode)
	if *compare {
		if cfg.Shadow {
			return &UsageError{Err: errors.New("--shadow: --compare runs the baseline, which has no shadow; run with and without --shadow instead")}
		}
		if cfg.Model != "" {
			return &UsageError{Err: errors.New("--model: --compare runs the baseline, which sends the demo model's flat rows; use --model without --compare")}
		}
		cfg.Mode = ModePipeline
	}
	if err := cfg.Validate(); err != nil {
		return &UsageError{Err: err}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("--cpuprofile: %w", err)}
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	for _, p := range []struct{ flag, file, name string }{
		{"--mutexprofile", *mutexProfile, "mutex"}, {"--blockprofile", *blockProfile, "block"},
	} {
		if p.file == "" {
			continue
		}
		f, err := os.Create(p.file)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("%s: %w", p.flag, err)}
		}
		defer f.Close()
		if p.name == "mutex" {
			runtime.SetMutexProfileFraction(1)
			defer runtime.SetMutexProfileFraction(0)
		} else {
			runtime.SetBlockProfileRate(int((10 * time.Microsecond).Nanoseconds()))
			defer runtime.SetBlockProfileRate(0)
		}
		// Deferred before the rate is reset, so it runs first.
		defer func() { _ = pprof.Lookup(p.name).WriteTo(f, 0) }()
	}

	if *ingressProto != "" {
		if *answerQoS != 0 && *answerQoS != 1 {
			return &UsageError{Err: fmt.Errorf("--answer-qos %d: want 0 or 1", *answerQoS)}
		}
		cfg.AnswerQoS0 = *answerQoS == 0
		if *window == 0 {
			cfg.Window = 4096
		}
		rep, err := RunIngress(ctx, cfg, *ingressProto, *devices)
		if err != nil {
			return err
		}
		if err := rep.print(stdout, *asJSON); err != nil {
			return err
		}
		if !rep.OK() {
			return errors.New("bench: the ingress run lost requests or had errors (see the report)")
		}
		return nil
	}

	if *compare {
		var reps []*Report
		for _, mode := range []string{ModePipeline, ModeBaseline} {
			c := cfg
			c.Mode = mode
			c.Window = windowFor(mode)
			if c.Progress != nil {
				fmt.Fprintf(c.Progress, "== %s\n", mode)
			}
			rep, err := Run(ctx, c)
			if err != nil {
				return err
			}
			reps = append(reps, rep)
		}
		cmp := &Comparison{Pipeline: reps[0], Baseline: reps[1]}
		if reps[1].ThroughputRPS > 0 {
			cmp.Ratio = reps[0].ThroughputRPS / reps[1].ThroughputRPS
		}
		if err := output(stdout, *asJSON, cmp, *plotFile, reps...); err != nil {
			return err
		}
		for _, r := range reps {
			if !r.OK() {
				return fmt.Errorf("%w: %s: %s", ErrFailed, r.Mode, strings.Join(r.Errors, "; "))
			}
		}
		return nil
	}

	rep, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := output(stdout, *asJSON, rep, *plotFile, rep); err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("%w: %s", ErrFailed, strings.Join(rep.Errors, "; "))
	}
	return nil
}

type writable interface {
	WriteJSON(io.Writer) error
	WriteTable(io.Writer) error
}

func output(stdout io.Writer, asJSON bool, what writable, plotFile string, reps ...*Report) error {
	if plotFile != "" {
		if err := WritePlot(plotFile, reps...); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
	}
	if asJSON {
		return what.WriteJSON(stdout)
	}
	return what.WriteTable(stdout)
}
