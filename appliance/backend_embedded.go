package appliance

// model_server.mode embedded: the model server in process
// (inference/modelserver, ONNX through inference/onnxrt), serving the data
// dir's model repository. The only mode whose models the dashboard uploads,
// labels, reloads and deletes itself.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/web"
)

func (a *Appliance) embeddedModelServerComponent() *component {
	var srv *modelserver.Server
	return &component{
		name: "model server",
		start: func(context.Context) error {
			models, err := a.onnxRepository()
			if err != nil {
				return err
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
			a.backend = &embeddedBackend{repositoryBackend: repositoryBackend{a: a, pred: srv.InProcess()}, srv: srv}
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

// embeddedBackend is the modelBackend of the in-process model server.
type embeddedBackend struct {
	repositoryBackend // pred: srv.InProcess()
	srv               *modelserver.Server
}

var _ modelBackend = (*embeddedBackend)(nil)

func (e *embeddedBackend) card() web.Component {
	c := web.Component{Address: e.srv.GRPCAddr(), State: web.StateOK}
	if r := e.srv.RESTAddr(); r != "" {
		c.Address += " (REST " + r + ")"
	}
	var avail []string
	for _, m := range e.srv.Models() {
		for _, v := range m.Versions {
			if v.State == modelserver.StateAvailable {
				avail = append(avail, fmt.Sprintf("%s v%d", m.Name, v.Version))
			}
		}
	}
	c.Detail = "serving " + orNone(avail)
	if !e.srv.Ready() {
		c.State = web.StateStarting
	}
	return c
}

func (e *embeddedBackend) models(context.Context) ([]web.Model, error) {
	var out []web.Model
	for _, m := range e.srv.Models() {
		if m.Removed {
			continue
		}
		wm := web.Model{Name: m.Name, Labels: m.Labels, Versions: []web.ModelVersion{}}
		for _, v := range m.Versions {
			wm.Versions = append(wm.Versions, web.ModelVersion{Version: v.Version, State: v.State.String(), Error: v.Error, Held: v.Held})
		}
		out = append(out, wm)
	}
	return out, nil
}

func (e *embeddedBackend) availableVersions(ctx context.Context, name string) ([]int64, error) {
	return listedVersions(ctx, e, name)
}

// known reports whether the server serves (or loads) model name.
func (e *embeddedBackend) known(name string) bool {
	return slices.ContainsFunc(e.srv.Models(), func(m modelserver.ModelStatus) bool { return m.Name == name && !m.Removed })
}

// upload stores an ONNX version in the model repository. A model not
// served yet gets its directory and is added to the served models first,
// so "upload a new model" works the same as "upload a new version". file was
// streamed by web into the model repository (uploadDir), so it is renamed
// into its version directory, not copied.
func (e *embeddedBackend) upload(ctx context.Context, name string, version int64, file string) (int64, error) {
	if !e.known(name) {
		// Check before creating anything: a bad file must not leave an
		// empty model behind.
		onnx, err := os.ReadFile(file)
		if err != nil {
			return 0, fmt.Errorf("reading the upload: %w", err)
		}
		if _, err := onnxrt.LoadWithOptions(onnx, onnxrt.LoadOptions{MaxFoldedBytes: e.a.cfg.ModelServer.MaxFoldedConstantBytes}); err != nil {
			return 0, fmt.Errorf("%w: not a loadable ONNX model: %w", web.ErrInvalid, err)
		}
		if err := os.MkdirAll(filepath.Join(e.a.paths.Models, name), 0o755); err != nil {
			return 0, fmt.Errorf("creating the model directory: %w", err)
		}
		if err := e.reload(ctx); err != nil {
			return 0, err
		}
	}
	return e.srv.UploadVersionFile(name, version, file)
}

func (e *embeddedBackend) setLabel(_ context.Context, name, label string, version int64) error {
	if !e.known(name) {
		return fmt.Errorf("%w: no model %q", web.ErrNotFound, name)
	}
	return e.srv.SetLabel(name, label, version)
}

// reload serves what the model repository holds now, keeping the labels
// set since (a reload replaces them otherwise).
func (e *embeddedBackend) reload(context.Context) error {
	repo, err := e.a.repository()
	if err != nil {
		return err
	}
	labels := map[string]map[string]int64{}
	for _, m := range e.srv.Models() {
		if !m.Removed && len(m.Labels) > 0 {
			labels[m.Name] = maps.Clone(m.Labels)
		}
	}
	for i := range repo {
		repo[i].Labels = labels[repo[i].Name]
	}
	return e.srv.Reload(modelserver.ModelsToProto(repo))
}

func (e *embeddedBackend) deleteVersion(name string, version int64, inUse func() error) error {
	if err := inUse(); err != nil {
		return err
	}
	return e.srv.DeleteVersion(name, version)
}

func (e *embeddedBackend) sidecarView() (*web.SidecarStatus, bool) { return nil, false }

// hold has the model server keep the held versions loaded beside what the
// version policy keeps; its status names why (web.ModelVersion.Held).
func (e *embeddedBackend) hold(h rollout.Holds) { e.srv.SetHolds(h) }

func (e *embeddedBackend) notHeld() string { return "" }

// uploadDir is the model repository: uploads are renamed into place from
// there.
func (e *embeddedBackend) uploadDir() string { return e.a.paths.Models }

func (e *embeddedBackend) grpcAddrs() []string {
	if addr := e.srv.GRPCAddr(); addr != "" {
		return []string{dialableAddr(addr)}
	}
	return nil
}
