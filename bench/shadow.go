package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/rollout"
)

// ShadowFigures (--shadow) is what the shadow of version 2 did during the
// run: how many requests it compared with version 1's answers and how many
// sampled copies it skipped because the pipeline was busy (it yields).
type ShadowFigures struct {
	Model     string  `json:"model"`
	Compared  int     `json:"compared"`
	Dropped   int64   `json:"dropped"`
	Yielded   int64   `json:"yielded"` // of Dropped: skipped to keep the shadow to its share while the pipeline was busy
	Agreement float64 `json:"agreement"`
	Error     string  `json:"error,omitempty"`
}

// installShadowVersions puts the model the run serves into the repository
// as versions 1 and 2 and returns its name: the demo model, or the --model
// file installModel wrote as version 1.
func installShadowVersions(cfg *Config, modelsDir string) (string, error) {
	if cfg.Model != "" {
		src, dst := filepath.Join(modelsDir, ModelName, "1"), filepath.Join(modelsDir, ModelName, "2")
		entries, err := os.ReadDir(src)
		if err != nil {
			return "", fmt.Errorf("bench: --shadow: %w", err)
		}
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return "", fmt.Errorf("bench: --shadow: %w", err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				return "", fmt.Errorf("bench: --shadow: %w", err)
			}
			if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
				return "", fmt.Errorf("bench: --shadow: %w", err)
			}
		}
		return ModelName, nil
	}
	for _, v := range []string{"1", "2"} {
		dir := filepath.Join(modelsDir, demo.Name, v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("bench: --shadow: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, modelserver.ModelFileName), demo.ONNX, 0o644); err != nil {
			return "", fmt.Errorf("bench: --shadow: %w", err)
		}
	}
	return demo.Name, nil
}

// startShadow starts a shadow of version 2 against version 1 on every
// request, once the model server has loaded version 2.
func startShadow(ctx context.Context, a *appliance.Appliance, model string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ro := a.Rollouts()
		if ro != nil {
			_, err := ro.Start(ctx, rollout.Spec{Model: model, Stable: 1, Candidate: 2, Mode: rollout.ModeShadow, Sample: 1})
			if err == nil {
				return nil
			}
			if !errors.Is(err, rollout.ErrInvalid) { // invalid: version 2 not loaded yet
				return fmt.Errorf("bench: --shadow: %w", err)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("bench: --shadow: version 2 did not load: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: --shadow: the pipeline did not start: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// shadowFigures reads the shadow's report at the end of the run.
func shadowFigures(a *appliance.Appliance, model string) *ShadowFigures {
	f := &ShadowFigures{Model: model}
	ro := a.Rollouts()
	if ro == nil {
		f.Error = "no rollout controller"
		return f
	}
	rep, err := ro.Report(model)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	f.Compared, f.Dropped, f.Yielded, f.Agreement = rep.Compared, rep.Dropped, rep.Yielded, rep.Agreement
	return f
}
