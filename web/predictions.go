package web

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/infergate/infergate/inference/feed"
)

// The Predictions view: the pipeline's recent answers and, per model, how many scored at or
// above the model's anomaly threshold (inference/feed).

const defaultPredictionLimit = 50

// handlePredictions: query model (one model's predictions; the counts are always every
// model's), limit (1..100, default 50).
func (s *Server) handlePredictions(c echo.Context) error {
	limit := defaultPredictionLimit
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return badRequest("limit %q: want 1..100", v)
		}
		limit = n
	}
	if s.cfg.Predictions == nil {
		return c.JSON(http.StatusOK, feed.View{Recent: []feed.Prediction{}, Models: []feed.ModelStats{}})
	}
	return c.JSON(http.StatusOK, s.cfg.Predictions.View(c.QueryParam("model"), limit))
}

type thresholdRequest struct {
	Threshold *float64 `json:"threshold"`
}

// handleSetThreshold sets a model's anomaly threshold: a model setting, kept in the store.
func (s *Server) handleSetThreshold(c echo.Context) error {
	name := c.Param("name")
	if !modelNameRE.MatchString(name) {
		return badRequest("model name %q is not valid", name)
	}
	var req thresholdRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Threshold == nil {
		return badRequest("body must be {\"threshold\": T}")
	}
	if s.cfg.Predictions == nil {
		return fmt.Errorf("no pipeline runs here: %w", ErrUnsupported)
	}
	// JSON has no NaN or infinity, the only thresholds SetThreshold refuses: its error is
	// the store's.
	if err := s.cfg.Predictions.SetThreshold(name, *req.Threshold); err != nil {
		return err
	}
	s.audit(c, "models.threshold", fmt.Sprintf("%s anomaly threshold %g", name, *req.Threshold))
	return c.JSON(http.StatusOK, map[string]any{"model": name, "threshold": *req.Threshold})
}
