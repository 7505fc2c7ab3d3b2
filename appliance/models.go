package appliance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/web"
)

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

// modelBackend is one model-server mode as the rest of the appliance uses
// it: the predictor the pipeline calls, and what the dashboard and admin API
// show and change. Each mode implements it once, in its own file
// (backend_embedded.go, backend_sidecar.go, backend_fleet.go,
// backend_isolated.go), and its
// component publishes it in Appliance.backend when it starts; nothing else
// in the appliance asks which mode runs.
type modelBackend interface {
	// predictor is what the pipeline and the rollout controller call: the
	// embedded server in process, or TF Serving over gRPC.
	predictor() pipeline.Predictor
	// card is the model server's card on the dashboard (address, detail,
	// state); the caller adds the mode and the supervisor's readiness.
	card() web.Component
	// models lists the models served, with their versions and labels.
	models(ctx context.Context) ([]web.Model, error)
	// availableVersions lists a model's AVAILABLE versions, highest first:
	// the versions a pin or a rollout may name.
	availableVersions(ctx context.Context, name string) ([]int64, error)
	// versionsDetail is what a refused version's error adds, "" when
	// availableVersions says it all.
	versionsDetail(ctx context.Context, name string) string
	// upload stores an ONNX version streamed to file in uploadDir (version
	// 0: one above the highest) and returns the version it was stored as.
	upload(ctx context.Context, name string, version int64, file string) (int64, error)
	setLabel(ctx context.Context, name, label string, version int64) error
	// reload serves what the model repository holds now.
	reload(ctx context.Context) error
	// deleteVersion removes a version from the model repository once
	// inUse, which says whether a pin or rollout uses it, returns nil.
	deleteVersion(name string, version int64, inUse func() error) error
	// sidecarView describes a model server in another process (the
	// dashboard's Sidecar view); ok is false for the one in process.
	sidecarView() (status *web.SidecarStatus, ok bool)
	// uploadDir is where web streams uploads to, "" when the mode takes none.
	uploadDir() string
	// grpcAddrs are the model server's gRPC addresses a local client dials
	// (the data dir's endpoints file).
	grpcAddrs() []string
	// hold keeps the versions pins and rollouts route to loaded beyond the
	// version policy (embedded); the other modes cannot, and say why in
	// notHeld ("" when hold holds), which the models list and the log show.
	hold(h rollout.Holds)
	notHeld() string
}

// repositoryBackend is what the backends of the modes that serve the data
// dir's model repository (embedded, sidecar) share: the appliance, and the
// predictor made once when the server starts.
type repositoryBackend struct {
	a    *Appliance
	pred pipeline.Predictor
}

func (r *repositoryBackend) predictor() pipeline.Predictor { return r.pred }

// versionsDetail adds nothing: models lists every version of every model
// served (listedVersions).
func (r *repositoryBackend) versionsDetail(context.Context, string) string { return "" }

// listedVersions is availableVersions of a backend whose models lists every
// model served with all its versions.
func listedVersions(ctx context.Context, mb modelBackend, name string) ([]int64, error) {
	models, err := mb.models(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(models, func(m web.Model) bool { return m.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("%w: no model %q", web.ErrNotFound, name)
	}
	out := []int64{}
	for _, v := range models[i].Versions {
		if v.State == web.ModelAvailable {
			out = append(out, v.Version)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out, nil
}

// errDeleteUnsupported is deleteVersion's answer in the modes whose model
// repository the appliance does not own.
var errDeleteUnsupported = fmt.Errorf("%w: versions are deleted from the model repository of the embedded model server only", web.ErrUnsupported)

// modelServerComponent starts the model server of model_server.mode; the
// one place that chooses between the modes.
func (a *Appliance) modelServerComponent() *component {
	switch a.cfg.ModelServer.Mode {
	case ModelServerExternal:
		return a.externalModelServerComponent() // backend_fleet.go
	case ModelServerSidecar:
		return a.sidecarModelServerComponent() // backend_sidecar.go
	case ModelServerIsolated:
		return a.isolatedModelServerComponent() // backend_isolated.go
	}
	return a.embeddedModelServerComponent() // backend_embedded.go
}

// modelBackend is the running mode's backend, nil until the model server
// has started.
func (a *Appliance) modelBackend() modelBackend {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.backend
}

// orNone lists what a card says is served.
func orNone(s []string) string {
	if len(s) == 0 {
		return "no model version yet"
	}
	return strings.Join(s, ", ")
}

// auditCtx is audit for a change asked for through the API: the actor is
// the caller the web server put into ctx (web.WithActor), "" when the
// appliance acts by itself.
func (a *Appliance) auditCtx(ctx context.Context, action, detail string) {
	a.auditAs(web.ActorFrom(ctx), action, detail)
}

// audit records an admin action of a component other than the web server
// (which audits its own) in the store's audit log.
func (a *Appliance) audit(action, detail string) { a.auditAs("", action, detail) }

func (a *Appliance) auditAs(actor, action, detail string) {
	a.mu.Lock()
	st := a.store
	a.mu.Unlock()
	if st == nil {
		a.logger.Warn("audit log not open; action not recorded", "action", action, "detail", detail)
		return
	}
	if err := st.AuditAs(actor, action, detail); err != nil {
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

// servedRepository is the repository for a model server that serves it
// (embedded, sidecar), which must hold the default model; how says how to
// add it ("add <models>/<name>/1/model.onnx").
func (a *Appliance) servedRepository(how string) ([]tfserving.ModelConfig, error) {
	models, err := a.repository()
	if err != nil {
		return nil, err
	}
	def := a.cfg.Pipeline.DefaultModel
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = m.Name
	}
	if !slices.Contains(names, def) {
		return nil, fmt.Errorf("pipeline.default_model (--default-model, INFERGATE_PIPELINE_DEFAULT_MODEL): model %q is not in the model repository %s (it has: %s); "+
			"%s or choose one of those", def, a.paths.Models, strings.Join(names, ", "), how)
	}
	return models, nil
}

// onnxRepository is servedRepository for the modes that serve ONNX files
// (embedded, isolated): the demo model is written into the repository
// first, so a new data dir serves it.
func (a *Appliance) onnxRepository() ([]tfserving.ModelConfig, error) {
	if err := demo.Install(a.paths.Models); err != nil {
		return nil, fmt.Errorf("writing the demo model into %s: %w", a.paths.Models, err)
	}
	return a.servedRepository("add " + filepath.Join(a.paths.Models, a.cfg.Pipeline.DefaultModel, "1", "model.onnx"))
}
