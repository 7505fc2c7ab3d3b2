package appliance

import (
	"fmt"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testmodels"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/web"
)

// heldOf is the held reason of a model's version in a models list.
func heldOf(ms []web.Model, name string, version int64) string {
	for _, m := range ms {
		for _, v := range m.Versions {
			if m.Name == name && v.Version == version {
				return v.Held
			}
		}
	}
	return ""
}

// With the default latest:2, a pinned version stays loaded when two newer
// versions are uploaded (the policy alone would unload it), the models list
// says why, and it goes once unpinned.
func TestPinnedVersionOutlivesLatestPolicy(t *testing.T) {
	a, api := startTwoVersions(t, testConfig(t))
	api.json("PUT", "/api/v1/models/demo/serving", map[string]any{"version": 1}, 200, nil)
	for range 2 {
		api.json("POST", "/api/v1/models/demo/versions", testmodels.Feature(0, true), 201, nil)
	}
	testutil.Eventually(t, time.Minute, func() error {
		var models modelsResp // fresh: omitted fields must not keep earlier values
		api.json("GET", "/api/v1/models", nil, 200, &models)
		if modelState(models.Models, "demo", 1) != web.ModelAvailable || heldOf(models.Models, "demo", 1) != "pinned" ||
			modelState(models.Models, "demo", 4) != web.ModelAvailable || modelState(models.Models, "demo", 2) == web.ModelAvailable {
			return fmt.Errorf("models %+v: want 4, 3 and the pinned 1 available", models.Models)
		}
		return nil
	})
	api.json("PUT", "/api/v1/models/demo/serving", map[string]any{"version": 0}, 200, nil)
	testutil.Eventually(t, time.Minute, func() error {
		var models modelsResp
		api.json("GET", "/api/v1/models", nil, 200, &models)
		if modelState(models.Models, "demo", 1) == web.ModelAvailable || heldOf(models.Models, "demo", 1) != "" {
			return fmt.Errorf("models %+v: version 1 no longer pinned, latest:2 unloads it", models.Models)
		}
		return nil
	})
	_ = a
}
