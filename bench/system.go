package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tfserving"
)

// system is what the bench sends to: a self-contained appliance it started
// in this process, or an appliance (or cluster) somewhere else.
type system struct {
	brokers []string
	// requests, results and dlq are the topics the generator writes and the
	// collector reads. In baseline mode they are the baseline's own topics.
	requests, results, dlq string
	// grpcAddr is a TF Serving gRPC endpoint serving the demo model: the
	// baseline's model server.
	grpcAddr string
	// ready is how long the self-contained appliance took from New to ready
	// (0 when external).
	ready time.Duration
	// proc samples the appliance's CPU and memory (nil: not measured).
	proc procSource
	// stop shuts down what setup started and removes its data.
	stop func() error
	// cfg is the self-contained appliance's configuration (nil: external).
	cfg *appliance.Config
	// metrics are the self-contained appliance's Prometheus metrics (nil:
	// external).
	metrics prometheus.Gatherer
	// mqttAddr and natsAddr are the ingress's listeners (Config.Ingress).
	mqttAddr, natsAddr string
	// natsOnly: a bare nats-server with a relay client, no appliance
	// (startNATSOnly).
	natsOnly bool
	// shadow reads what the shadow did (Config.Shadow; nil: none).
	shadow func() *ShadowFigures
}

// startSystem starts a self-contained appliance (no brokers configured) or
// describes the external one.
func startSystem(ctx context.Context, cfg *Config, logger *slog.Logger) (*system, error) {
	if len(cfg.Brokers) > 0 {
		sys := &system{
			brokers:  cfg.Brokers,
			requests: cfg.RequestsTopic, results: cfg.ResultsTopic, dlq: cfg.DLQTopic,
			grpcAddr: cfg.TFServing,
			stop:     func() error { return nil },
		}
		if cfg.PID > 0 {
			sys.proc = pidProc(cfg.PID)
		}
		return sys, nil
	}
	return startSelfContained(ctx, cfg, logger)
}

func startSelfContained(ctx context.Context, cfg *Config, logger *slog.Logger) (_ *system, err error) {
	dir, err := os.MkdirTemp("", "infergate-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: temporary data dir: %w", err)
	}
	var cleanups []func() error
	stop := func() error {
		var errs []error
		for i := len(cleanups) - 1; i >= 0; i-- {
			errs = append(errs, cleanups[i]())
		}
		errs = append(errs, os.RemoveAll(dir))
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			_ = stop()
		}
	}()

	ac := appliance.Default()
	ac.DataDir = filepath.Join(dir, "data")
	ac.Log.Level = "warn"
	ac.Broker.Listen = "127.0.0.1:0"
	ac.ModelServer.GRPCListen = "127.0.0.1:0"
	ac.ModelServer.RESTListen = "127.0.0.1:0"
	ac.HTTP.Listen = "" // the dashboard is not what is measured
	ac.Topics.Partitions = cfg.Partitions
	if cfg.Durability != "" {
		ac.Broker.Durability = cfg.Durability
	}
	if cfg.Compression != "" {
		ac.Broker.Compression = cfg.Compression
	}
	if cfg.MaxBatch > 0 {
		ac.Pipeline.MaxBatchSize = cfg.MaxBatch
	}
	if cfg.MaxWait >= 0 {
		ac.Pipeline.MaxBatchWait = cfg.MaxWait
	}
	if cfg.InFlight > 0 {
		ac.Pipeline.MaxInflightBatches = cfg.InFlight
	}

	if cfg.Ingress != "" {
		ac.Ingress.Enabled = true
		ac.Ingress.MQTTListen = "127.0.0.1:0"
		ac.Ingress.NATSListen = "127.0.0.1:0"
		if cfg.AnswerQoS0 {
			ac.Ingress.AnswerQoS = 0
		}
	}

	if cfg.Model != "" {
		if err := installModel(cfg.Model, filepath.Join(ac.DataDir, appliance.ModelsDir)); err != nil {
			return nil, err
		}
		ac.Pipeline.DefaultModel = ModelName
	}

	var shadowModel string
	if cfg.Shadow {
		if shadowModel, err = installShadowVersions(cfg, filepath.Join(ac.DataDir, appliance.ModelsDir)); err != nil {
			return nil, err
		}
	}

	var sidecarAddr string
	if cfg.ModelPath == ModelPathGRPC {
		// A model server of its own, reached over loopback gRPC, stands in
		// for a tensorflow_model_server sidecar: the appliance sees an
		// external TF Serving endpoint and calls it over the network stack.
		srv, stopSrv, err := startModelServer(ctx, filepath.Join(dir, "sidecar-models"), logger)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, stopSrv)
		sidecarAddr = srv.GRPCAddr()
		ac.ModelServer.Mode = appliance.ModelServerExternal
		ac.ModelServer.TFServingEndpoints = []string{sidecarAddr}
	}

	began := time.Now()
	a, err := appliance.New(ac, logger.With("component", "appliance"))
	if err != nil {
		return nil, fmt.Errorf("bench: self-contained appliance: %w", err)
	}
	r := start(ctx, a.Run)
	cleanups = append(cleanups, func() error {
		if err := r.stop(); err != nil {
			return fmt.Errorf("bench: appliance: %w", err)
		}
		return nil
	})
	if err := waitFor(ctx, r, 2*time.Minute, a.Ready); err != nil {
		return nil, fmt.Errorf("bench: self-contained appliance did not become ready: %w", err)
	}
	ready := time.Since(began)
	if cfg.Shadow {
		if err := startShadow(ctx, a, shadowModel); err != nil {
			return nil, err
		}
	}

	sys := &system{
		brokers:  []string{a.BrokerAddr()},
		requests: ac.Pipeline.RequestsTopic, results: ac.Pipeline.ResultsTopic, dlq: ac.Pipeline.DLQTopic,
		ready:   ready,
		proc:    selfProc{},
		stop:    stop,
		cfg:     &ac,
		metrics: a.Registry(),
	}
	if cfg.Shadow {
		sys.shadow = func() *ShadowFigures { return shadowFigures(a, shadowModel) }
	}
	if in := a.Ingress(); in != nil {
		sys.mqttAddr, sys.natsAddr = in.MQTTAddr(), in.NATSAddr()
	}
	switch {
	case sidecarAddr != "":
		sys.grpcAddr = sidecarAddr
	case a.ModelServer() != nil:
		sys.grpcAddr = a.ModelServer().GRPCAddr()
	}
	return sys, nil
}

// startModelServer runs an embedded model server with the demo model on a
// free loopback port and waits until it serves.
func startModelServer(ctx context.Context, modelsDir string, logger *slog.Logger) (*modelserver.Server, func() error, error) {
	if err := demo.Install(modelsDir); err != nil {
		return nil, nil, fmt.Errorf("bench: model server: %w", err)
	}
	mc := modelserver.DefaultConfig()
	mc.GRPCListen = "127.0.0.1:0"
	mc.RESTListen = ""
	mc.Models = []tfserving.ModelConfig{demo.ModelConfig(modelsDir)}
	srv, err := modelserver.New(mc, logger.With("component", "bench-model-server"))
	if err != nil {
		return nil, nil, fmt.Errorf("bench: model server: %w", err)
	}
	r := start(ctx, srv.Run)
	stop := func() error {
		if err := r.stop(); err != nil {
			return fmt.Errorf("bench: model server: %w", err)
		}
		return nil
	}
	err = waitFor(ctx, r, time.Minute, func() error {
		if !srv.Ready() || srv.GRPCAddr() == "" {
			return errors.New("model server not ready")
		}
		return nil
	})
	if err != nil {
		_ = stop()
		return nil, nil, fmt.Errorf("bench: model server: %w", err)
	}
	return srv, stop, nil
}

// runner is a component's Run in a goroutine of its own. Its context is
// not the caller's: the bench stops what it started itself, after the
// measurement, in order.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid once done is closed
}

func start(ctx context.Context, run func(context.Context) error) *runner {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &runner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = run(runCtx)
	}()
	return r
}

// stop cancels the run and waits for it to return.
func (r *runner) stop() error {
	r.cancel()
	<-r.done
	if r.err != nil && !errors.Is(r.err, context.Canceled) {
		return r.err
	}
	return nil
}

// waitFor polls ready until it returns nil, the run returns, ctx ends or
// timeout passes.
func waitFor(ctx context.Context, r *runner, timeout time.Duration, ready func() error) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			if r.err == nil {
				return errors.New("stopped during start-up")
			}
			return r.err
		case <-deadline.C:
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// batchRows reads the pipeline's batch-size histogram: model calls and the
// rows they carried so far.
func batchRows(g prometheus.Gatherer) (calls uint64, rows float64) {
	if g == nil {
		return 0, 0
	}
	mfs, err := g.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != pipeline.MetricBatchSize {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				calls += h.GetSampleCount()
				rows += h.GetSampleSum()
			}
		}
	}
	return calls, rows
}
