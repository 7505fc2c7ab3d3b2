package appliance

// model_server.mode sidecar: tensorflow_model_server run and supervised by
// inference/sidecar, serving the data dir's model repository (SavedModels).

import (
	"context"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/inference/sidecar"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/web"
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
			models, err := a.servedRepository("put a SavedModel in " + filepath.Join(a.paths.Models, a.cfg.Pipeline.DefaultModel, "1") + "/")
			if err != nil {
				return err
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
			a.backend = &sidecarBackend{repositoryBackend: repositoryBackend{a: a, pred: sup.Predictor()}, sup: sup}
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
	cfg := sidecar.DefaultConfig()
	cfg.Binary = a.cfg.ModelServer.TFServingBin
	cfg.ExtraFlags = slices.Clone(sc.ExtraFlags)
	cfg.DataDir = filepath.Join(a.paths.Root, sidecarDir)
	cfg.Models = models
	cfg.GRPCPort, cfg.RESTPort = grpcPort, restPort
	cfg.CallTimeout = a.cfg.Pipeline.PredictTimeout
	cfg.ReadyTimeout = sc.ReadyTimeout
	cfg.Backoff = sidecar.Backoff{Initial: sc.RestartBackoff, Max: sc.RestartBackoffMax}
	cfg.CrashLoop = sidecar.CrashLoop{Restarts: sc.CrashLoopRestarts, Window: sc.CrashLoopWindow}
	cfg.GracePeriod = sc.GracePeriod
	cfg.LogMaxBytes = sc.LogMaxBytes
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

// logTailLines is how much of the sidecar's output the dashboard shows.
const logTailLines = 200

// sidecarBackend is the modelBackend of the supervised
// tensorflow_model_server. Labels and reloads go to TF as a new model config
// (HandleReloadConfigRequest); versions are put into the repository by hand,
// since TF serves SavedModels, not the ONNX files the dashboard uploads.
type sidecarBackend struct {
	repositoryBackend // pred: sup.Predictor()
	sup               *sidecar.Supervisor
}

var _ modelBackend = (*sidecarBackend)(nil)

func (s *sidecarBackend) card() web.Component {
	ss := s.sup.Status()
	c := web.Component{Address: ss.GRPCAddr, Detail: string(ss.State)}
	if ss.Reason != "" {
		c.Detail += ": " + ss.Reason
	}
	switch ss.State {
	case sidecar.StateReady:
		c.State = web.StateOK
		c.Detail = "serving " + orNone(ss.ReadyModels)
	case sidecar.StateStarting, sidecar.StateLoading:
		c.State = web.StateStarting
	case sidecar.StateRestarting:
		c.State = web.StateDegraded
	default:
		c.State = web.StateDown
	}
	return c
}

func (s *sidecarBackend) models(context.Context) ([]web.Model, error) {
	var out []web.Model
	for _, m := range s.sup.Status().Models {
		wm := web.Model{Name: m.Name, Labels: m.Labels, Versions: []web.ModelVersion{}}
		for _, v := range m.Versions {
			wm.Versions = append(wm.Versions, web.ModelVersion{Version: v.Version, State: v.State, Error: v.Error})
		}
		out = append(out, wm)
	}
	return out, nil
}

func (s *sidecarBackend) availableVersions(ctx context.Context, name string) ([]int64, error) {
	return listedVersions(ctx, s, name)
}

func (s *sidecarBackend) upload(_ context.Context, name string, _ int64, _ string) (int64, error) {
	return 0, fmt.Errorf("%w: tensorflow_model_server serves SavedModels; put the version into %s/%s/<version>/ and reload",
		web.ErrUnsupported, s.a.paths.Models, name)
}

func (s *sidecarBackend) setLabel(ctx context.Context, name, label string, version int64) error {
	models := s.sup.Models()
	i := slices.IndexFunc(models, func(m tfserving.ModelConfig) bool { return m.Name == name })
	if i < 0 {
		return fmt.Errorf("%w: no model %q", web.ErrNotFound, name)
	}
	labels := maps.Clone(models[i].Labels)
	if labels == nil {
		labels = map[string]int64{}
	}
	labels[label] = version
	models[i].Labels = labels
	return s.sup.Reload(ctx, models)
}

// reload re-sends the model config: what the supervisor was told of the
// models it knows (policies, labels) is kept, new directories of the
// repository are added.
func (s *sidecarBackend) reload(ctx context.Context) error {
	repo, err := s.a.repository()
	if err != nil {
		return err
	}
	current := s.sup.Models()
	var models []tfserving.ModelConfig
	for _, m := range repo {
		if i := slices.IndexFunc(current, func(c tfserving.ModelConfig) bool { return c.Name == m.Name }); i >= 0 {
			models = append(models, current[i])
		} else {
			models = append(models, tfserving.ModelConfig{Name: m.Name, BasePath: m.BasePath, Policy: m.Policy})
		}
	}
	return s.sup.Reload(ctx, models)
}

func (s *sidecarBackend) deleteVersion(string, int64, func() error) error {
	return errDeleteUnsupported
}

// sidecarView shows the process: state, PID, restarts, the last exit and
// the tail of its log.
func (s *sidecarBackend) sidecarView() (*web.SidecarStatus, bool) {
	ss := s.sup.Status()
	out := &web.SidecarStatus{
		Mode: ModelServerSidecar, State: string(ss.State), PID: ss.PID, Binary: ss.Binary,
		StartedAt: ss.StartedAt, Restarts: ss.Restarts, Ready: ss.ReadyModels,
		LogTail: s.sup.LogTail(logTailLines),
	}
	if ss.Reason != "" {
		out.State += ": " + ss.Reason
	}
	if ss.LastExit != nil {
		out.LastExit, out.LastExitAt = ss.LastExit.Reason, ss.LastExit.At
	}
	// The child's gRPC address is the one endpoint the pipeline calls;
	// it is healthy when readiness (every model AVAILABLE) holds.
	if ss.GRPCAddr != "" {
		out.Endpoints = []web.Endpoint{{Address: ss.GRPCAddr, Healthy: ss.Ready, Detail: ss.Reason}}
	}
	return out, true
}

func (s *sidecarBackend) uploadDir() string { return "" }

// hold does not hold: tensorflow_model_server keeps what its version policy
// says, so a latest:N policy may unload a held version when newer ones are
// put into the repository. notHeld says so, and what avoids it.
func (s *sidecarBackend) hold(rollout.Holds) {}

func (s *sidecarBackend) notHeld() string {
	return "not kept loaded by infergate in sidecar mode: tensorflow_model_server's version policy decides; " +
		"model_server.model_version_policies NAME=specific:V1,V2 (or all) keeps it"
}

func (s *sidecarBackend) grpcAddrs() []string {
	return []string{dialableAddr(s.a.cfg.ModelServer.GRPCListen)}
}
