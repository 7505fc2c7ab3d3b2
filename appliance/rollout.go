package appliance

import (
	"context"
	"errors"
	"fmt"

	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

var _ web.Rollouts = (*webBackend)(nil)

// availableVersions lists a model's AVAILABLE versions, highest first, in
// every mode (rollout.New's and the pins' check).
func (a *Appliance) availableVersions(ctx context.Context, name string) ([]int64, error) {
	mb, err := (&webBackend{a: a}).modelServer()
	if err != nil {
		return nil, err
	}
	return mb.availableVersions(ctx, name)
}

// withVersionsDetail adds the backend's detail to a refused version.
func (b *webBackend) withVersionsDetail(ctx context.Context, name string, err error) error {
	mb := b.a.modelBackend()
	if mb == nil || !errors.Is(err, web.ErrInvalid) {
		return err
	}
	if detail := mb.versionsDetail(ctx, name); detail != "" {
		return fmt.Errorf("%w; %s", err, detail)
	}
	return err
}

func (b *webBackend) controller() (*rollout.Controller, error) {
	b.a.mu.Lock()
	defer b.a.mu.Unlock()
	if b.a.rollouts == nil {
		return nil, fmt.Errorf("%w: the pipeline has not started", web.ErrUnavailable)
	}
	return b.a.rollouts, nil
}

// rolloutErr maps the controller's errors to the API's. Their text names
// the kind already ("conflict: rollout … is running"), so it is kept as is.
func rolloutErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rollout.ErrNotFound):
		return web.WithKind(web.ErrNotFound, err)
	case errors.Is(err, rollout.ErrInvalid):
		return web.WithKind(web.ErrInvalid, err)
	case errors.Is(err, rollout.ErrConflict):
		return web.WithKind(web.ErrConflict, err)
	}
	return err
}

func (b *webBackend) ServeVersion(ctx context.Context, name string, version int64) error {
	c, err := b.controller()
	if err != nil {
		return err
	}
	if _, err := b.a.availableVersions(ctx, name); err != nil {
		return err
	}
	return b.withVersionsDetail(ctx, name, rolloutErr(c.Pin(ctx, name, version)))
}

func (b *webBackend) RollbackModel(ctx context.Context, name string, version int64) (int64, error) {
	c, err := b.controller()
	if err != nil {
		return 0, err
	}
	if version == 0 {
		avail, err := b.a.availableVersions(ctx, name)
		if err != nil {
			return 0, err
		}
		if len(avail) == 0 {
			return 0, fmt.Errorf("%w: model %s has no available version", web.ErrInvalid, name)
		}
		current := c.Serving(name)
		if current == 0 {
			current = avail[0]
		}
		for _, v := range avail {
			if v < current {
				version = v
				break
			}
		}
		if version == 0 {
			return 0, fmt.Errorf("%w: no available version of model %s below version %d (available: %v); "+
				"model_server.version_policy latest:N keeps the N highest loaded", web.ErrInvalid, name, current, avail)
		}
	}
	if err := c.Pin(ctx, name, version); err != nil {
		return 0, b.withVersionsDetail(ctx, name, rolloutErr(err))
	}
	return version, nil
}

func (b *webBackend) DeleteVersion(ctx context.Context, name string, version int64) error {
	mb := b.a.modelBackend()
	if mb == nil {
		return errDeleteUnsupported
	}
	return mb.deleteVersion(name, version, func() error {
		c, err := b.controller()
		if err != nil {
			return nil
		}
		if c.Serving(name) == version {
			return fmt.Errorf("%w: version %d serves model %s: serve or roll back to another first", web.ErrConflict, version, name)
		}
		if r, err := c.Get(name); err == nil && r.State == rollout.StateRunning && (r.Stable == version || r.Candidate == version) {
			return fmt.Errorf("%w: version %d is in rollout %s", web.ErrConflict, version, r.ID)
		}
		return nil
	})
}

func (b *webBackend) StartRollout(ctx context.Context, spec rollout.Spec) (*rollout.Rollout, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	r, err := c.Start(ctx, spec)
	return r, b.withVersionsDetail(ctx, spec.Model, rolloutErr(err))
}

func (b *webBackend) Rollouts(context.Context) ([]rollout.Rollout, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	return c.List(), nil
}

func (b *webBackend) Rollout(_ context.Context, name string) (*rollout.Rollout, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	r, err := c.Get(name)
	return r, rolloutErr(err)
}

func (b *webBackend) RolloutReport(_ context.Context, name string) (*rollout.Report, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	r, err := c.Report(name)
	return r, rolloutErr(err)
}

func (b *webBackend) SetRolloutPercent(ctx context.Context, name string, percent float64) (*rollout.Rollout, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	r, err := c.SetPercent(ctx, name, percent)
	return r, rolloutErr(err)
}

func (b *webBackend) PromoteRollout(ctx context.Context, name string) (*rollout.Rollout, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	r, err := c.Promote(ctx, name)
	return r, rolloutErr(err)
}

func (b *webBackend) AbortRollout(ctx context.Context, name, reason string) (*rollout.Rollout, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	r, err := c.Abort(ctx, name, reason)
	return r, rolloutErr(err)
}

var _ web.Datasets = (*webBackend)(nil)

// datasetErr maps the store's errors of a dataset to the API's.
func datasetErr(err error) error {
	switch {
	case errors.Is(err, store.ErrInvalid):
		return web.WithKind(web.ErrInvalid, err)
	case errors.Is(err, store.ErrDiskFull):
		return fmt.Errorf("%w: %w", web.ErrUnavailable, err)
	}
	return rolloutErr(err)
}

func (b *webBackend) CaptureDataset(ctx context.Context, spec rollout.CaptureSpec) (*store.Dataset, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	d, err := c.Capture(ctx, spec)
	return d, datasetErr(err)
}

func (b *webBackend) Datasets(context.Context) ([]store.Dataset, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	list, err := c.Datasets()
	return list, datasetErr(err)
}

func (b *webBackend) DeleteDataset(_ context.Context, name string) error {
	c, err := b.controller()
	if err != nil {
		return err
	}
	return datasetErr(c.DeleteDataset(name))
}

func (b *webBackend) ReplayDataset(ctx context.Context, name string, spec rollout.ReplaySpec) (*rollout.Report, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	rep, err := c.Replay(ctx, name, spec)
	return rep, datasetErr(err)
}

func (b *webBackend) ReplayReport(_ context.Context, name string) (*rollout.Report, error) {
	c, err := b.controller()
	if err != nil {
		return nil, err
	}
	rep, err := c.ReplayReport(name)
	return rep, datasetErr(err)
}

// Rollouts is the rollout controller (nil before the pipeline starts): the
// bench starts a shadow through it.
func (a *Appliance) Rollouts() *rollout.Controller {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rollouts
}
