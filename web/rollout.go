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
	api.PUT("/models/:name/serving", s.handleServeVersion, s.requireAuth)
	api.POST("/models/:name/rollback", s.handleRollback, s.requireAuth)
	api.DELETE("/models/:name/versions/:version", s.handleDeleteVersion, s.requireAuth)
	api.GET("/rollouts", s.handleRollouts, s.requireAuth)
	api.POST("/rollouts", s.handleStartRollout, s.requireAuth)
	api.GET("/rollouts/:name", s.handleRollout, s.requireAuth)
	api.GET("/rollouts/:name/report", s.handleRolloutReport, s.requireAuth)
	api.PUT("/rollouts/:name/percent", s.handleRolloutPercent, s.requireAuth)
	api.POST("/rollouts/:name/promote", s.handlePromote, s.requireAuth)
	api.POST("/rollouts/:name/abort", s.handleAbort, s.requireAuth)
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

func (s *Server) handleServeVersion(c echo.Context) error {
	name, err := modelParam(c)
	if err != nil {
		return err
	}
	var req versionRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Version == nil || *req.Version < 0 {
		return badRequest("body must be {\"version\": N}: N >= 1 serves that version, 0 the latest")
	}
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	if err := ro.ServeVersion(c.Request().Context(), name, *req.Version); err != nil {
		return err
	}
	s.audit(c, "models.serve", fmt.Sprintf("%s serves version %d (0: the latest)", name, *req.Version))
	return c.JSON(http.StatusOK, map[string]any{"name": name, "serving_version": *req.Version})
}

func (s *Server) handleRollback(c echo.Context) error {
	name, err := modelParam(c)
	if err != nil {
		return err
	}
	var req versionRequest
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	var to int64
	if req.Version != nil {
		to = *req.Version
	}
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	v, err := ro.RollbackModel(c.Request().Context(), name, to)
	if err != nil {
		return err
	}
	s.audit(c, "models.rollback", fmt.Sprintf("%s serves version %d", name, v))
	return c.JSON(http.StatusOK, map[string]any{"name": name, "serving_version": v})
}

func (s *Server) handleDeleteVersion(c echo.Context) error {
	name, err := modelParam(c)
	if err != nil {
		return err
	}
	v, err := strconv.ParseInt(c.Param("version"), 10, 64)
	if err != nil || v < 0 {
		return badRequest("version %q is not a version number", c.Param("version"))
	}
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	if err := ro.DeleteVersion(c.Request().Context(), name, v); err != nil {
		return err
	}
	s.audit(c, "models.delete_version", fmt.Sprintf("%s version %d", name, v))
	return c.JSON(http.StatusOK, map[string]any{"name": name, "deleted": v})
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

// Rollout changes are audited by the controller, which also audits what
// it does by itself (planned steps, a guard's rollback).
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

func (s *Server) handleRollout(c echo.Context) error {
	name, err := modelParam(c)
	if err != nil {
		return err
	}
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	r, err := ro.Rollout(c.Request().Context(), name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) handleRolloutReport(c echo.Context) error {
	name, err := modelParam(c)
	if err != nil {
		return err
	}
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	rep, err := ro.RolloutReport(c.Request().Context(), name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rep)
}

func (s *Server) handleRolloutPercent(c echo.Context) error {
	name, err := modelParam(c)
	if err != nil {
		return err
	}
	var req struct {
		Percent *float64 `json:"percent"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Percent == nil {
		return badRequest("body must be {\"percent\": P} with 0 <= P <= 100")
	}
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	r, err := ro.SetRolloutPercent(c.Request().Context(), name, *req.Percent)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) handlePromote(c echo.Context) error {
	name, err := modelParam(c)
	if err != nil {
		return err
	}
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	r, err := ro.PromoteRollout(c.Request().Context(), name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) handleAbort(c echo.Context) error {
	name, err := modelParam(c)
	if err != nil {
		return err
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	ro, err := s.rollouts()
	if err != nil {
		return err
	}
	r, err := ro.AbortRollout(c.Request().Context(), name, req.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}
