package appliance

// model_server.mode external: TF Serving run by someone else, at
// model_server.tfserving_endpoints, called through a tfserving.Fleet. Its
// models are deployed, labelled and reloaded in its own model config, so the
// dashboard only shows them.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/web"
)

// externalModelServerComponent connects to TF Serving endpoints. Their being
// down at start is not fatal: the pipeline treats an unavailable model server
// as a circuit to wait on, not as an error, and TF Serving often starts after
// its clients.
func (a *Appliance) externalModelServerComponent() *component {
	var f *tfserving.Fleet
	endpoints := strings.Join(a.cfg.ModelServer.TFServingEndpoints, ",")
	return &component{
		name: "model server",
		start: func(ctx context.Context) error {
			// The fleet balances over the endpoints, checks their health
			// (GetModelStatus of the default model, every
			// tfserving.DefaultHealthInterval) and retries an UNAVAILABLE
			// call on another endpoint.
			var err error
			fc := tfserving.DefaultFleetConfig(a.cfg.ModelServer.TFServingEndpoints)
			fc.Timeout, fc.HealthModel = a.cfg.Pipeline.PredictTimeout, a.cfg.Pipeline.DefaultModel
			f, err = tfserving.NewFleet(fc, a.logger.With("component", "tfserving-fleet"))
			if err != nil {
				return fmt.Errorf("model_server.tfserving_endpoints (--tfserving-endpoints, INFERGATE_MODEL_SERVER_TFSERVING_ENDPOINTS): %w", err)
			}
			a.mu.Lock()
			a.backend = newFleetBackend(f, a.cfg.ModelServer.TFServingEndpoints, a.cfg.Pipeline.DefaultModel)
			a.mu.Unlock()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := f.Metadata(cctx, model.Spec{Name: a.cfg.Pipeline.DefaultModel}); err != nil {
				if status.Code(err) == codes.NotFound {
					return fmt.Errorf("pipeline.default_model (--default-model, INFERGATE_PIPELINE_DEFAULT_MODEL): TF Serving at %s does not serve model %q: %w",
						endpoints, a.cfg.Pipeline.DefaultModel, err)
				}
				a.logger.Warn("TF Serving does not answer yet; the pipeline waits for it", "endpoints", a.cfg.ModelServer.TFServingEndpoints, "err", err)
			}
			return nil
		},
		stop: func() error {
			if f == nil {
				return nil
			}
			return f.Close()
		},
		// Ready while an endpoint passed the fleet's last health check (or
		// answered a call since): the fleet's own health, no second probe.
		ready: func() error {
			if f == nil || !f.Healthy() {
				return fmt.Errorf("TF Serving at %s does not answer", endpoints)
			}
			return nil
		},
	}
}

// fleetBackend is the modelBackend of an external TF Serving fleet.
type fleetBackend struct {
	fleet        *tfserving.Fleet
	endpoints    []string // as configured
	defaultModel string
	pred         fleetPredictor

	mu    sync.Mutex
	names map[string]bool // the models known to be served (see models)
}

func newFleetBackend(f *tfserving.Fleet, endpoints []string, defaultModel string) *fleetBackend {
	b := &fleetBackend{fleet: f, endpoints: endpoints, defaultModel: defaultModel, names: map[string]bool{defaultModel: true}}
	b.pred = fleetPredictor{Fleet: f, b: b}
	return b
}

var _ modelBackend = (*fleetBackend)(nil)

func (f *fleetBackend) predictor() pipeline.Predictor { return f.pred }

// know adds model names to those the models list asks the fleet about.
func (f *fleetBackend) know(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		f.names[n] = true
	}
}

// fleetPredictor is the fleet as the pipeline and the rollout controller
// call it, noting each model that answers: TF Serving has no call that
// lists its models, so the models it was asked for are the ones known.
type fleetPredictor struct {
	*tfserving.Fleet
	b *fleetBackend
}

func (p fleetPredictor) Predict(ctx context.Context, spec model.Spec, inputs map[string]*tensor.Tensor) (*model.Result, error) {
	res, err := p.Fleet.Predict(ctx, spec, inputs)
	if err == nil {
		p.b.know(spec.Name)
	}
	return res, err
}

// health is the fleet's state from its endpoints' last checks: ok when all
// are healthy, degraded when some are, down when none is.
func (f *fleetBackend) health(eps []tfserving.EndpointStatus) (healthy int, state string) {
	for _, ep := range eps {
		if ep.Healthy {
			healthy++
		}
	}
	switch {
	case healthy == 0:
		return healthy, web.StateDown
	case healthy < len(eps):
		return healthy, web.StateDegraded
	}
	return healthy, web.StateOK
}

func (f *fleetBackend) card() web.Component {
	eps := f.fleet.Endpoints()
	healthy, state := f.health(eps)
	return web.Component{Address: strings.Join(f.endpoints, ","), State: state,
		Detail: fmt.Sprintf("%d of %d TF Serving endpoints healthy", healthy, len(eps))}
}

// models lists every model known to be served: TF Serving has no call that
// lists its models, so these are the default model, every model the
// pipeline or the shadow got an answer from, and every model pinned or in a
// rollout; the default model first, then by name. A model other than the
// default that the fleet no longer serves (NOT_FOUND) is left out.
func (f *fleetBackend) models(ctx context.Context) ([]web.Model, error) {
	f.mu.Lock()
	names := slices.Sorted(maps.Keys(f.names))
	f.mu.Unlock()
	names = slices.DeleteFunc(names, func(n string) bool { return n == f.defaultModel })
	names = slices.Insert(names, 0, f.defaultModel)
	var out []web.Model
	for _, name := range names {
		wm := web.Model{Name: name, Versions: []web.ModelVersion{}}
		vs, err := f.fleet.Status(ctx, name, 0)
		switch {
		case status.Code(err) == codes.NotFound:
			if name != f.defaultModel {
				continue
			}
		case err != nil:
			wm.Versions = append(wm.Versions, web.ModelVersion{State: web.ModelUnavailable, Error: err.Error()})
		}
		for _, v := range vs {
			wm.Versions = append(wm.Versions, web.ModelVersion{Version: v.Version, State: v.State, Error: v.ErrorMessage})
		}
		out = append(out, wm)
	}
	return out, nil
}

func (f *fleetBackend) upload(context.Context, string, int64, string) (int64, error) {
	return 0, fmt.Errorf("%w: models of an external TF Serving fleet are deployed to its own model repository", web.ErrUnsupported)
}

func (f *fleetBackend) setLabel(context.Context, string, string, int64) error {
	return fmt.Errorf("%w: labels of an external TF Serving fleet are set in its own model config", web.ErrUnsupported)
}

func (f *fleetBackend) reload(context.Context) error {
	return fmt.Errorf("%w: an external TF Serving fleet reloads its own model config", web.ErrUnsupported)
}

func (f *fleetBackend) deleteVersion(string, int64, func() error) error { return errDeleteUnsupported }

// sidecarView shows the fleet's endpoints with their last health checks.
func (f *fleetBackend) sidecarView() (*web.SidecarStatus, bool) {
	eps := f.fleet.Endpoints()
	out := &web.SidecarStatus{Mode: ModelServerExternal, State: "running"}
	for _, ep := range eps {
		out.Endpoints = append(out.Endpoints, web.Endpoint{Address: ep.Address, Healthy: ep.Healthy, Detail: ep.LastError, CheckedAt: ep.CheckedAt})
	}
	if _, state := f.health(eps); state != web.StateOK {
		out.State = state
	}
	return out, true
}

func (f *fleetBackend) uploadDir() string { return "" }

// hold does not hold: the fleet's own model config decides what its
// endpoints keep loaded. The held models are listed in models.
func (f *fleetBackend) hold(h rollout.Holds) { f.know(slices.Collect(maps.Keys(h))...) }

func (f *fleetBackend) notHeld() string {
	return "not kept loaded by infergate with an external fleet: the fleet's own model config must keep it on every endpoint"
}

func (f *fleetBackend) grpcAddrs() []string {
	return slices.Clone(f.endpoints)
}

// availableVersions asks every endpoint itself (models asks one, about the
// default model only) and lists the versions AVAILABLE on every endpoint that
// answers: a call may reach any endpoint, so a version pinned or in a
// rollout must be served by all of them. An endpoint that does not answer is
// left out (the fleet sends it no calls while it is down); one that does not
// serve the model has no version.
func (f *fleetBackend) availableVersions(ctx context.Context, name string) ([]int64, error) {
	var common []int64
	answered := 0
	var lastErr error
	for _, ep := range f.fleet.StatusEach(ctx, name) {
		var avail []int64
		switch status.Code(ep.Err) {
		case codes.OK:
			for _, v := range ep.Versions {
				if v.Available() {
					avail = append(avail, v.Version)
				}
			}
		case codes.NotFound:
		default:
			lastErr = ep.Err
			continue
		}
		if answered++; answered == 1 {
			common = avail
		} else {
			common = slices.DeleteFunc(common, func(v int64) bool { return !slices.Contains(avail, v) })
		}
	}
	if answered == 0 {
		return nil, fmt.Errorf("%w: no TF Serving endpoint answers: %w", web.ErrUnavailable, lastErr)
	}
	slices.Sort(common)
	slices.Reverse(common)
	return common, nil
}

// versionsDetail says which versions each endpoint serves.
func (f *fleetBackend) versionsDetail(ctx context.Context, name string) string {
	var eps []string
	for _, ep := range f.fleet.StatusEach(ctx, name) {
		if ep.Err != nil {
			eps = append(eps, fmt.Sprintf("%s: %s", ep.Address, status.Convert(ep.Err).Message()))
			continue
		}
		var avail []string
		for _, v := range ep.Versions {
			if v.Available() {
				avail = append(avail, strconv.FormatInt(v.Version, 10))
			}
		}
		eps = append(eps, fmt.Sprintf("%s serves [%s]", ep.Address, strings.Join(avail, " ")))
	}
	return fmt.Sprintf("every endpoint of the external fleet must serve the version (%s)", strings.Join(eps, "; "))
}
