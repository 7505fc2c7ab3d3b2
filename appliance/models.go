package appliance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
)

// predictor is what the pipeline calls: the embedded server in process, or
// TF Serving over gRPC. (The pipeline owns the interface; this is the same
// method set, kept here so the wiring does not depend on its package.)
type predictor interface {
	Predict(ctx context.Context, spec model.Spec, inputs map[string]*tensor.Tensor) (*model.Result, error)
	Metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error)
}

// modelReadyTimeout bounds how long the start waits for the models to load
// before the pipeline starts.
const modelReadyTimeout = 2 * time.Minute

// repositoryModels lists the models of the repository: one directory per
// model, holding one directory per version (TF Serving's layout).
func repositoryModels(dir string) ([]tfserving.ModelConfig, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the model repository %s: %w", dir, err)
	}
	var models []tfserving.ModelConfig
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue // .demo-* and other temporaries
		}
		models = append(models, tfserving.ModelConfig{Name: e.Name(), BasePath: filepath.Join(dir, e.Name())})
	}
	return models, nil
}

func (a *Appliance) modelServerComponent() *component {
	switch a.cfg.ModelServer.Mode {
	case ModelServerExternal:
		return a.externalModelServerComponent()
	case ModelServerSidecar:
		return a.sidecarModelServerComponent() // sidecar.go
	}
	var srv *modelserver.Server
	return &component{
		name: "model server",
		start: func(context.Context) error {
			if err := modelserver.EnsureDemo(a.paths.Models); err != nil {
				return fmt.Errorf("writing the demo model into %s: %w", a.paths.Models, err)
			}
			models, err := a.repository()
			if err != nil {
				return err
			}
			names := make([]string, len(models))
			for i, m := range models {
				names[i] = m.Name
			}
			if !slices.Contains(names, a.cfg.Pipeline.DefaultModel) {
				return fmt.Errorf("pipeline.default_model (--default-model, INFERGATE_PIPELINE_DEFAULT_MODEL): model %q is not in the model repository %s (it has: %s); "+
					"add %s/%s/1/model.onnx or choose one of those", a.cfg.Pipeline.DefaultModel, a.paths.Models,
					strings.Join(names, ", "), a.paths.Models, a.cfg.Pipeline.DefaultModel)
			}
			mc := modelserver.DefaultConfig()
			mc.GRPCListen = a.cfg.ModelServer.GRPCListen
			mc.RESTListen = a.cfg.ModelServer.RESTListen
			mc.Models = models
			mc.MonitoringPath = "/monitoring/prometheus/metrics"
			mc.RESTReadHeaderTimeout, mc.RESTReadTimeout, mc.RESTIdleTimeout = a.cfg.HTTP.ReadHeaderTimeout, a.cfg.HTTP.ReadTimeout, a.cfg.HTTP.IdleTimeout
			mc.MaxMessageSize = int(a.cfg.ModelServer.MaxMessageBytes)
			mc.Limits = a.modelLimits()
			mc.Threads = a.cfg.ModelServer.Threads
			if a.cfg.ModelServer.ReloadRPC {
				mc.ReloadRPC, mc.CurrentAdminToken = modelserver.ReloadRPCToken, a.AdminToken
			}
			mc.Audit = a.audit
			srv, err = modelserver.New(mc, a.logger.With("component", "model-server"))
			if err != nil {
				return err
			}
			a.mu.Lock()
			a.modelServer = srv
			a.predictor = srv.InProcess()
			a.mu.Unlock()
			return nil
		},
		run: func(ctx context.Context) error {
			err := srv.Run(ctx)
			if errors.Is(err, syscall.EADDRINUSE) {
				key, flag, env, addr := "model_server.grpc_listen", "--grpc-listen", "INFERGATE_MODEL_SERVER_GRPC_LISTEN", a.cfg.ModelServer.GRPCListen
				if strings.Contains(err.Error(), a.cfg.ModelServer.RESTListen) {
					key, flag, env, addr = "model_server.rest_listen", "--rest-listen", "INFERGATE_MODEL_SERVER_REST_LISTEN", a.cfg.ModelServer.RESTListen
				}
				return listenError(key, flag, env, addr, err)
			}
			return err
		},
		ready: func() error {
			if srv == nil {
				return errors.New("the model server has not started")
			}
			if failed := srv.Failed(); len(failed) > 0 {
				// Only the models that failed, each with the versions that
				// failed and why; waiting would not change them.
				return fmt.Errorf("%w: %w", errNeverReady, errors.Join(failed...))
			}
			// Ready means every model of the repository is served, and in
			// particular the one the pipeline needs: a reload that unloads
			// it must turn readiness red, not leave "every model of an
			// empty list" green.
			var loading []string
			for _, m := range srv.Models() {
				if !m.Removed && !srv.Serving(m.Name) {
					loading = append(loading, m.Name)
				}
			}
			if def := a.cfg.Pipeline.DefaultModel; !srv.Serving(def) && !slices.Contains(loading, def) {
				loading = append(loading, def)
			}
			if len(loading) > 0 {
				return fmt.Errorf("models not available: %s", strings.Join(loading, ", "))
			}
			if srv.GRPCAddr() == "" && a.cfg.ModelServer.GRPCListen != "" {
				return errors.New("the model server's gRPC listener is not open yet")
			}
			return nil
		},
		readyTimeout: modelReadyTimeout,
	}
}

// externalModelServerComponent connects to TF Serving endpoints. Their being
// down at start is not fatal: the pipeline treats an unavailable model server
// as a circuit to wait on, not as an error, and TF Serving often starts after
// its clients.
func (a *Appliance) externalModelServerComponent() *component {
	var p *tfserving.Fleet
	var up atomic.Bool
	return &component{
		name: "model server",
		start: func(ctx context.Context) error {
			// The fleet balances over the endpoints, checks their health
			// (GetModelStatus of the default model) and retries an
			// UNAVAILABLE call on another endpoint.
			var err error
			p, err = tfserving.NewFleet(tfserving.FleetConfig{
				Endpoints:   a.cfg.ModelServer.TFServingEndpoints,
				Timeout:     a.cfg.Pipeline.PredictTimeout,
				HealthModel: a.cfg.Pipeline.DefaultModel,
			}, a.logger.With("component", "tfserving-fleet"))
			if err != nil {
				return fmt.Errorf("model_server.tfserving_endpoints (--tfserving-endpoints, INFERGATE_MODEL_SERVER_TFSERVING_ENDPOINTS): %w", err)
			}
			a.mu.Lock()
			a.predictor = p
			a.mu.Unlock()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := p.Metadata(cctx, model.Spec{Name: a.cfg.Pipeline.DefaultModel}); err != nil {
				if status.Code(err) == codes.NotFound {
					return fmt.Errorf("pipeline.default_model (--default-model, INFERGATE_PIPELINE_DEFAULT_MODEL): TF Serving at %s does not serve model %q: %w",
						strings.Join(a.cfg.ModelServer.TFServingEndpoints, ","), a.cfg.Pipeline.DefaultModel, err)
				}
				a.logger.Warn("TF Serving does not answer yet; the pipeline waits for it", "endpoints", a.cfg.ModelServer.TFServingEndpoints, "err", err)
			} else {
				up.Store(true)
			}
			return nil
		},
		run: func(ctx context.Context) error {
			// Probe so Ready tells whether TF Serving answers.
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := p.Metadata(pctx, model.Spec{Name: a.cfg.Pipeline.DefaultModel})
				cancel()
				up.Store(err == nil)
			}
		},
		stop: func() error {
			if p == nil {
				return nil
			}
			return p.Close()
		},
		ready: func() error {
			if !up.Load() {
				return fmt.Errorf("TF Serving at %s does not answer", strings.Join(a.cfg.ModelServer.TFServingEndpoints, ","))
			}
			return nil
		},
	}
}

// modelLimits are the embedded model server's limits (model_server.max_*).
func (a *Appliance) modelLimits() modelserver.Limits {
	ms := a.cfg.ModelServer
	return modelserver.Limits{
		MaxRequestElements:     ms.MaxRequestElements,
		MaxRequestRows:         ms.MaxRequestRows,
		MaxInflightBytes:       ms.MaxInflightBytes,
		MaxFoldedConstantBytes: ms.MaxFoldedConstantBytes,
	}
}

// audit records an admin action of a component other than the web server
// (which audits its own) in the store's audit log.
func (a *Appliance) audit(action, detail string) {
	a.mu.Lock()
	st := a.store
	a.mu.Unlock()
	if st == nil {
		a.logger.Warn("audit log not open; action not recorded", "action", action, "detail", detail)
		return
	}
	if err := st.Audit(action, detail); err != nil {
		a.logger.Warn("writing audit log", "action", action, "err", err)
	}
}

// modelPolicies reads model_server.model_version_policies.
func (c *Config) modelPolicies() (map[string]tfserving.VersionPolicy, error) {
	out := map[string]tfserving.VersionPolicy{}
	for _, item := range c.ModelServer.ModelVersionPolicies {
		name, pol, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("%q: want NAME=POLICY, e.g. demo=latest:3", item)
		}
		p, err := tfserving.ParseVersionPolicy(pol)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("model %s named twice", name)
		}
		out[name] = p
	}
	return out, nil
}

// policyOf is the version policy a model of the repository is served with.
func (c *Config) policyOf(name string) tfserving.VersionPolicy {
	if ps, err := c.modelPolicies(); err == nil {
		if p, ok := ps[name]; ok {
			return p
		}
	}
	p, err := tfserving.ParseVersionPolicy(c.ModelServer.VersionPolicy)
	if err != nil {
		return tfserving.VersionPolicy{Latest: 1} // Validate refused it already
	}
	return p
}

// repository lists the models of the repository with their version
// policies (model_server.version_policy, model_version_policies).
func (a *Appliance) repository() ([]tfserving.ModelConfig, error) {
	models, err := repositoryModels(a.paths.Models)
	if err != nil {
		return nil, err
	}
	for i := range models {
		models[i].Policy = a.cfg.policyOf(models[i].Name)
	}
	return models, nil
}
