package web

import (
	"context"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/store"
)

// Datasets is what the capture-and-replay API needs: named datasets of
// requests (a window of the requests topic or a DLQ selection) scored
// against two model versions on demand. A Backend that implements it gets
// the routes; otherwise they answer 501. Errors map as Backend's do.
type Datasets interface {
	CaptureDataset(ctx context.Context, spec rollout.CaptureSpec) (*store.Dataset, error)
	Datasets(ctx context.Context) ([]store.Dataset, error)
	DeleteDataset(ctx context.Context, name string) error
	// ReplayDataset scores the dataset and returns the comparison report;
	// ReplayReport returns the report of its last replay.
	ReplayDataset(ctx context.Context, name string, spec rollout.ReplaySpec) (*rollout.Report, error)
	ReplayReport(ctx context.Context, name string) (*rollout.Report, error)
}

func (s *Server) datasets() (Datasets, error) {
	d, ok := s.backend.(Datasets)
	if !ok {
		return nil, fmt.Errorf("%w: this appliance has no datasets", ErrUnsupported)
	}
	return d, nil
}

// Reads need a viewer, captures, replays and deletes an admin (requireAuth),
// as the rollouts they prepare.
func (s *Server) datasetRoutes(api *echo.Group) {
	api.GET("/datasets", s.handleDatasets, s.requireAuth)
	api.POST("/datasets", s.handleCapture, s.requireAuth)
	api.DELETE("/datasets/:name", s.onDataset(s.deleteDataset), s.requireAuth)
	api.POST("/datasets/:name/replay", s.onDataset(s.replayDataset), s.requireAuth)
	api.GET("/datasets/:name/report", s.onDataset(func(c echo.Context, ds Datasets, name string) (any, error) {
		return ds.ReplayReport(c.Request().Context(), name)
	}), s.requireAuth)
}

// onDataset serves a route on one dataset (:name); fn's answer goes out as
// JSON with 200.
func (s *Server) onDataset(fn func(c echo.Context, ds Datasets, name string) (any, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("name")
		if !modelNameRE.MatchString(name) {
			return badRequest("dataset name %q is not valid", name)
		}
		ds, err := s.datasets()
		if err != nil {
			return err
		}
		out, err := fn(c, ds, name)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}

func (s *Server) handleDatasets(c echo.Context) error {
	ds, err := s.datasets()
	if err != nil {
		return err
	}
	list, err := ds.Datasets(c.Request().Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []store.Dataset{}
	}
	return c.JSON(http.StatusOK, map[string]any{"datasets": list})
}

// CaptureRequest is POST /api/v1/datasets: since and until as the DLQ
// list's query parameters (RFC 3339, Unix seconds, or a duration ago).
type CaptureRequest struct {
	Name   string   `json:"name"`
	Source string   `json:"source,omitempty"` // requests (default) or dlq
	Last   int      `json:"last,omitempty"`
	Since  string   `json:"since,omitempty"`
	Until  string   `json:"until,omitempty"`
	Model  string   `json:"model,omitempty"`
	IDs    []string `json:"ids,omitempty"`
	Class  string   `json:"class,omitempty"`
}

func (s *Server) handleCapture(c echo.Context) error {
	var req CaptureRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if !modelNameRE.MatchString(req.Name) {
		return badRequest("dataset name %q is not valid (letters, digits, '_', '.', '-'; at most 128)", req.Name)
	}
	if req.Model != "" && !modelNameRE.MatchString(req.Model) {
		return badRequest("model name %q is not valid", req.Model)
	}
	spec := rollout.CaptureSpec{Name: req.Name, Source: req.Source, Last: req.Last, Model: req.Model, IDs: req.IDs, Class: req.Class}
	var err error
	now := s.now()
	if spec.Since, err = parseTime(req.Since, "since", now); err != nil {
		return err
	}
	if spec.Until, err = parseTime(req.Until, "until", now); err != nil {
		return err
	}
	ds, err := s.datasets()
	if err != nil {
		return err
	}
	d, err := ds.CaptureDataset(c.Request().Context(), spec)
	if err != nil {
		return err
	}
	s.audit(c, "datasets.capture", fmt.Sprintf("%s: %d records from %s (%s)", d.Name, d.Records, d.Source, d.Selection))
	return c.JSON(http.StatusCreated, d)
}

func (s *Server) deleteDataset(c echo.Context, ds Datasets, name string) (any, error) {
	if err := ds.DeleteDataset(c.Request().Context(), name); err != nil {
		return nil, err
	}
	s.audit(c, "datasets.delete", name)
	return map[string]string{"deleted": name}, nil
}

func (s *Server) replayDataset(c echo.Context, ds Datasets, name string) (any, error) {
	var spec rollout.ReplaySpec
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &spec); err != nil {
			return nil, err
		}
	}
	if spec.Model != "" && !modelNameRE.MatchString(spec.Model) {
		return nil, badRequest("model name %q is not valid", spec.Model)
	}
	rep, err := ds.ReplayDataset(c.Request().Context(), name, spec)
	if err != nil {
		return nil, err
	}
	r := rep.Rollout
	st := r.Replay
	if st == nil {
		st = &rollout.ReplayStats{}
	}
	s.audit(c, "datasets.replay", fmt.Sprintf("%s: model %s stable %d candidate %d, %d of %d records scored, agreement %.4f",
		name, r.Model, r.Stable, r.Candidate, st.Scored, st.Records, rep.Agreement))
	return rep, nil
}
