package sidecar

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/infergate/infergate/inference/tfserving"
)

// ErrNotRunning is wrapped by Reload's error when the configuration was
// saved but no process answered to apply it; the next start loads it.
var ErrNotRunning = errors.New("the model server is not running")

// Reload replaces the served models without restarting the process: it
// rewrites models.config (so a later restart loads the same thing) and
// sends the configuration with HandleReloadConfigRequest, then waits until
// every model has an AVAILABLE version and every version the new
// configuration names (specific versions, labels) is AVAILABLE. All of it
// runs under ReloadTimeout (or ctx's earlier deadline). Readiness keeps
// following the old model list until the new one is in place, so adding a
// model does not pause traffic to the others.
//
// TF accepts a label only for a version that is already AVAILABLE: to roll
// out version N with a label, reload once with the version (or let the
// latest policy find it), then again with the label.
func (s *Supervisor) Reload(ctx context.Context, models []tfserving.ModelConfig) error {
	if err := ValidateModels(models); err != nil {
		return err
	}
	models, err := absModels(models)
	if err != nil {
		return err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	old := s.models
	pid := s.pid
	s.mu.Unlock()
	if err := writeModelsFile(s.cfg.DataDir, models); err != nil {
		return err
	}
	client := s.currentClient()
	if pid == 0 || client == nil {
		s.setModels(models)
		s.log.Info("model configuration saved; it applies when "+s.cfg.Name+" starts", "models", modelNames(models))
		return fmt.Errorf("sidecar: reload: configuration saved, applies at the next start: %w", ErrNotRunning)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReloadTimeout)
	defer cancel()
	if s.cfg.ReloadToken != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.cfg.ReloadToken)
	}
	if err := client.Reload(ctx, ModelServerConfig(models)); err != nil {
		// TF keeps its old configuration when it refuses a new one; so
		// must the file, or the next restart would fail on it.
		if werr := writeModelsFile(s.cfg.DataDir, old); werr != nil {
			s.log.Error("restoring the model configuration after a refused reload failed", "err", werr)
		}
		return fmt.Errorf("sidecar: reload: %w", err)
	}
	s.log.Info(s.cfg.Name+" accepted the new model configuration", "models", modelNames(models))
	waitErr := s.waitLoaded(ctx, models)
	// TF has the new configuration whether or not it has loaded it yet.
	s.setModels(models)
	s.kickProbe()
	if waitErr != nil {
		return fmt.Errorf("sidecar: reload accepted, but %w", waitErr)
	}
	return nil
}

func (s *Supervisor) setModels(models []tfserving.ModelConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models = models
	// The version check must judge the next answer by the new policy, not
	// wait for the next readiness poll.
	for _, m := range models {
		if ms := s.modelStates[m.Name]; ms != nil {
			ms.expected = expectedVersion(m)
		}
	}
}

func modelNames(models []tfserving.ModelConfig) []string {
	out := make([]string, len(models))
	for i, m := range models {
		out[i] = m.Name
	}
	return out
}

// waitLoaded polls until every model serves and every version it names is
// AVAILABLE. A version that ended with an error fails the wait at once.
func (s *Supervisor) waitLoaded(ctx context.Context, models []tfserving.ModelConfig) error {
	client := s.currentClient()
	for {
		var missing []string
		for _, m := range models {
			need := slices.Clone(m.Policy.Specific)
			for _, v := range m.Labels {
				need = append(need, v)
			}
			vs, err := client.Status(ctx, m.Name, 0)
			if err != nil {
				missing = append(missing, fmt.Sprintf("%s: %v", m.Name, err))
				continue
			}
			avail := map[int64]bool{}
			for _, v := range vs {
				if v.Available() {
					avail[v.Version] = true
				}
				if v.ErrorCode != 0 && slices.Contains(need, v.Version) {
					return fmt.Errorf("model %s version %d failed to load (%s: %s)", m.Name, v.Version, v.State, v.ErrorMessage)
				}
			}
			if len(avail) == 0 {
				missing = append(missing, m.Name+": no AVAILABLE version")
			}
			for _, v := range need {
				if !avail[v] {
					missing = append(missing, fmt.Sprintf("%s: version %d not AVAILABLE", m.Name, v))
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not loaded in time (%s): %w", strings.Join(missing, "; "), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
