package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/infergate/infergate/inference/rollout"
)

// Rollouts is what the version and rollout API needs. A Backend that
// implements it (the appliance's does) gets the routes; otherwise they
// answer 501. Errors map as Backend's do.
type Rollouts interface {
	// ServeVersion sends a model's requests that name no version to version
	// (0: the latest available again).
	ServeVersion(ctx context.Context, name string, version int64) error
	// RollbackModel serves version, or (0) the highest available version
	// below the one serving now, and returns the version it serves.
	RollbackModel(ctx context.Context, name string, version int64) (int64, error)
	// DeleteVersion removes a version from the model repository.
	DeleteVersion(ctx context.Context, name string, version int64) error

	StartRollout(ctx context.Context, spec rollout.Spec) (*rollout.Rollout, error)
	Rollouts(ctx context.Context) ([]rollout.Rollout, error)
	Rollout(ctx context.Context, name string) (*rollout.Rollout, error)
	RolloutReport(ctx context.Context, name string) (*rollout.Report, error)
	SetRolloutPercent(ctx context.Context, name string, percent float64) (*rollout.Rollout, error)
	PromoteRollout(ctx context.Context, name string) (*rollout.Rollout, error)
	AbortRollout(ctx context.Context, name, reason string) (*rollout.Rollout, error)
}

func (s *Server) rollouts() (Rollouts, error) {
	r, ok := s.backend.(Rollouts)
	if !ok {
		return nil, fmt.Errorf("%w: this appliance has no rollouts", ErrUnsupported)
	}
	return r, nil
}

func (s *Server) rolloutRoutes(api *echo.Group) {
	api.PUT("/models/:name/serving", s.onModel(s.serveVersion), s.requireAuth)
	api.POST("/models/:name/rollback", s.onModel(s.rollback), s.requireAuth)
	api.DELETE("/models/:name/versions/:version", s.onModel(s.deleteVersion), s.requireAuth)
	api.GET("/rollouts", s.handleRollouts, s.requireAuth)
	api.POST("/rollouts", s.handleStartRollout, s.requireAuth)
	api.GET("/rollouts/:name", s.onModel(func(c echo.Context, ro Rollouts, name string) (any, error) {
		return ro.Rollout(c.Request().Context(), name)
	}), s.requireAuth)
	api.GET("/rollouts/:name/report", s.onModel(func(c echo.Context, ro Rollouts, name string) (any, error) {
		return ro.RolloutReport(c.Request().Context(), name)
	}), s.requireAuth)
	api.PUT("/rollouts/:name/percent", s.onModel(setPercent), s.requireAuth)
	api.POST("/rollouts/:name/promote", s.onModel(func(c echo.Context, ro Rollouts, name string) (any, error) {
		return ro.PromoteRollout(c.Request().Context(), name)
	}), s.requireAuth)
	api.POST("/rollouts/:name/abort", s.onModel(abort), s.requireAuth)
}

// onModel serves a route on one model (:name) of the Rollouts backend: fn's
// answer goes out as JSON with 200. Rollout changes are audited by the
// controller, which also audits what it does by itself (planned steps, a
// guard's rollback); version changes by fn.
func (s *Server) onModel(fn func(c echo.Context, ro Rollouts, name string) (any, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		name, err := modelParam(c)
		if err != nil {
			return err
		}
		ro, err := s.rollouts()
		if err != nil {
			return err
		}
		out, err := fn(c, ro, name)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}

func modelParam(c echo.Context) (string, error) {
	name := c.Param("name")
	if !modelNameRE.MatchString(name) {
		return "", badRequest("model name %q is not valid", name)
	}
	return name, nil
}

type versionRequest struct {
	Version *int64 `json:"version"`
}

func (s *Server) serveVersion(c echo.Context, ro Rollouts, name string) (any, error) {
	var req versionRequest
	if err := decodeJSON(c, &req); err != nil {
		return nil, err
	}
	if req.Version == nil || *req.Version < 0 {
		return nil, badRequest("body must be {\"version\": N}: N >= 1 serves that version, 0 the latest")
	}
	if err := ro.ServeVersion(c.Request().Context(), name, *req.Version); err != nil {
		return nil, err
	}
	s.audit(c, "models.serve", fmt.Sprintf("%s serves version %d (0: the latest)", name, *req.Version))
	return map[string]any{"name": name, "serving_version": *req.Version}, nil
}

func (s *Server) rollback(c echo.Context, ro Rollouts, name string) (any, error) {
	var req versionRequest
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			return nil, err
		}
	}
	var to int64
	if req.Version != nil {
		to = *req.Version
	}
	v, err := ro.RollbackModel(c.Request().Context(), name, to)
	if err != nil {
		return nil, err
	}
	s.audit(c, "models.rollback", fmt.Sprintf("%s serves version %d", name, v))
	return map[string]any{"name": name, "serving_version": v}, nil
}

func (s *Server) deleteVersion(c echo.Context, ro Rollouts, name string) (any, error) {
	v, err := strconv.ParseInt(c.Param("version"), 10, 64)
	if err != nil || v < 0 {
		return nil, badRequest("version %q is not a version number", c.Param("version"))
	}
	if err := ro.DeleteVersion(c.Request().Context(), name, v); err != nil {
		return nil, err
	}
	s.audit(c, "models.delete_version", fmt.Sprintf("%s version %d", name, v))
	return map[string]any{"name": name, "deleted": v}, nil
}

func (s *Server) handleRollouts(c echo.Context) error {
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	list, err := ro.Rollouts(c.Request().Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []rollout.Rollout{}
	}
	return c.JSON(http.StatusOK, map[string]any{"rollouts": list})
}

func (s *Server) handleStartRollout(c echo.Context) error {
	var spec rollout.Spec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	if !modelNameRE.MatchString(spec.Model) {
		return badRequest("model name %q is not valid", spec.Model)
	}
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	r, err := ro.StartRollout(c.Request().Context(), spec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, r)
}

func setPercent(c echo.Context, ro Rollouts, name string) (any, error) {
	var req struct {
		Percent *float64 `json:"percent"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return nil, err
	}
	if req.Percent == nil {
		return nil, badRequest("body must be {\"percent\": P} with 0 <= P <= 100")
	}
	return ro.SetRolloutPercent(c.Request().Context(), name, *req.Percent)
}

func abort(c echo.Context, ro Rollouts, name string) (any, error) {
	var req struct {
		Reason string `json:"reason"`
	}
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			return nil, err
		}
	}
	return ro.AbortRollout(c.Request().Context(), name, req.Reason)
}
