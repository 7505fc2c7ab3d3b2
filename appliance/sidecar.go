package appliance

// Wiring of model_server.mode sidecar (inference/sidecar), kept in its own
// file by the sidecar's author so models.go stays the appliance's.

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/infergate/infergate/inference/sidecar"
	"github.com/infergate/infergate/inference/tfserving"
)

// sidecarDir holds models.config, batching.config, monitoring.config and the
// logs of the supervised tensorflow_model_server.
const sidecarDir = "tfserving"

// tfMonitoringPath is where model_server.sidecar.monitoring has TF export
// Prometheus metrics: TF's documented default, which scrapers expect.
const tfMonitoringPath = "/monitoring/prometheus/metrics"

// listenPort is the port of a listen address; TF Serving binds every
// interface, so only the port of grpc_listen/rest_listen is used.
func listenPort(key, flag, addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("model_server.%s (--%s): %q: %w", key, flag, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return 0, fmt.Errorf("model_server.%s (--%s): %q has no numeric port", key, flag, addr)
	}
	return port, nil
}

func (a *Appliance) sidecarModelServerComponent() *component {
	var sup *sidecar.Supervisor
	return &component{
		name: "model server",
		start: func(context.Context) error {
			// Unlike the embedded server, the demo is not written: it is ONNX,
			// and tensorflow_model_server serves SavedModels.
			repo, err := a.repository()
			if err != nil {
				return err
			}
			models := repo
			var names []string
			for _, m := range repo {
				names = append(names, m.Name)
			}
			if !slices.Contains(names, a.cfg.Pipeline.DefaultModel) {
				return fmt.Errorf("pipeline.default_model (--default-model, INFERGATE_PIPELINE_DEFAULT_MODEL): model %q is not in the model repository %s (it has: %s); "+
					"put a SavedModel in %s/%s/1/ or choose one of those", a.cfg.Pipeline.DefaultModel, a.paths.Models,
					strings.Join(names, ", "), a.paths.Models, a.cfg.Pipeline.DefaultModel)
			}
			grpcPort, err := listenPort("grpc_listen", "grpc-listen", a.cfg.ModelServer.GRPCListen)
			if err != nil {
				return err
			}
			restPort, err := listenPort("rest_listen", "rest-listen", a.cfg.ModelServer.RESTListen)
			if err != nil {
				return err
			}
			sup, err = sidecar.New(a.sidecarConfig(models, grpcPort, restPort), a.logger.With("component", "sidecar"))
			if err != nil {
				return err
			}
			a.mu.Lock()
			a.predictor = sup.Predictor()
			a.sidecar = sup // for the admin API: status, log tail, reload
			a.mu.Unlock()
			return nil
		},
		run: func(ctx context.Context) error { return sup.Run(ctx) },
		ready: func() error {
			if sup == nil {
				return fmt.Errorf("tensorflow_model_server not started")
			}
			if !sup.Ready() {
				st := sup.Status()
				return fmt.Errorf("tensorflow_model_server is %s: %s", st.State, st.Reason)
			}
			return nil
		},
		// Large SavedModels load for minutes before TF opens its ports.
		readyTimeout: a.cfg.ModelServer.Sidecar.ReadyTimeout,
	}
}

// sidecarConfig maps model_server.* onto the supervisor's Config.
func (a *Appliance) sidecarConfig(models []tfserving.ModelConfig, grpcPort, restPort int) sidecar.Config {
	sc := a.cfg.ModelServer.Sidecar
	cfg := sidecar.Config{
		Binary:       a.cfg.ModelServer.TFServingBin,
		ExtraFlags:   slices.Clone(sc.ExtraFlags),
		DataDir:      filepath.Join(a.paths.Root, sidecarDir),
		Models:       models,
		GRPCPort:     grpcPort,
		RESTPort:     restPort,
		CallTimeout:  a.cfg.Pipeline.PredictTimeout,
		ReadyTimeout: sc.ReadyTimeout,
		Backoff:      sidecar.Backoff{Initial: sc.RestartBackoff, Max: sc.RestartBackoffMax},
		CrashLoop:    sidecar.CrashLoop{Restarts: sc.CrashLoopRestarts, Window: sc.CrashLoopWindow},
		GracePeriod:  sc.GracePeriod,
		LogMaxBytes:  sc.LogMaxBytes,
	}
	if sc.Monitoring {
		cfg.MonitoringPath = tfMonitoringPath
	}
	if sc.EnableBatching {
		b := sc.Batching
		b.AllowedBatchSizes = slices.Clone(b.AllowedBatchSizes)
		cfg.Batching = &b
	}
	return cfg
}
