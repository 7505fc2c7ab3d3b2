package appliance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/rollout"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testmodels"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/web"
)

// Rollouts in the modes where the model server is another process: the
// router names the version in TF Serving's ModelSpec, so what the mode must
// provide is both versions loaded (the sidecar's version policy, the fleet's
// own model config) and their status (GetModelStatus).

// writeTwoVersions puts demo v1 (feature 0) and v2 (its ReLU) into the
// model repository dir: they differ exactly on inputs whose feature 0 is
// negative.
func writeTwoVersions(t *testing.T, dir string) {
	t.Helper()
	writeVersion(t, dir, 1, false)
	writeVersion(t, dir, 2, true)
}

// writeVersion puts demo version v (feature 0, or its ReLU) into the model
// repository dir, renamed into place whole as a model server polling the
// directory needs.
func writeVersion(t *testing.T, dir string, v int, relu bool) {
	t.Helper()
	base := filepath.Join(dir, "demo")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(base, ".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "model.onnx"), testmodels.Feature(0, relu), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(base, fmt.Sprint(v))); err != nil {
		t.Fatal(err)
	}
}

// rolloutOnTwoVersions is issue 14's Done-when against an appliance whose
// model server, whichever mode, serves demo v1 and v2 and nothing is pinned:
// a shadow, a planned split 10% -> 50% -> 100%, and v1 rolled out again from
// v2 and rolled back by its disagreement guard.
func rolloutOnTwoVersions(t *testing.T, a *running) {
	t.Helper()
	api := newAPIClient(t, a)
	prod := producer(t, a)
	res := followResults(t, a)
	var models modelsResp
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/models", nil, 200, &models)
		if modelState(models.Models, "demo", 1) != web.ModelAvailable || modelState(models.Models, "demo", 2) != web.ModelAvailable {
			return fmt.Errorf("models %+v", models.Models)
		}
		return nil
	})
	// Unpinned, the model server's latest answers.
	for d, r := range wave(t, a, prod, res, "latest", 4, func(int) float32 { return -1 }) {
		if r.Version != 2 || r.Prediction[0] != 0 {
			t.Fatalf("device %d got %+v, want version 2's 0", d, r)
		}
	}
	shadowShare(t, a, api, prod, res, map[string]any{"model": "demo", "stable": 1, "candidate": 2})
	plannedSplit(t, a, api, prod, res, 1, 2)
	guardRollback(t, a, api, prod, res, map[string]any{"model": "demo", "candidate": 1}, 2, 1)
}

// TestRolloutSidecar: the same rollout with model_server.mode sidecar and
// `infergate model-server` as tensorflow_model_server, started with version
// 1 and given version 2 while running; it serves both because of the
// default version policy latest:2.
func TestRolloutSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/infergate")
	}
	c := sidecarTestConfig(t)
	c.Rollout.CheckInterval = 50 * time.Millisecond
	c.ModelServer.Sidecar.ExtraFlags = []string{"--enable_model_warmup=false"}
	models := filepath.Join(c.DataDir, ModelsDir)
	writeVersion(t, models, 1, false)
	a := start(t, c)
	// A second version goes where the upload's refusal says (TF Serving
	// serves SavedModels, the appliance uploads ONNX): the model repository,
	// and a reload; latest:2 keeps version 1 loaded beside it.
	writeVersion(t, models, 2, true)
	newAPIClient(t, a).json("POST", "/api/v1/models/reload", nil, 200, nil)
	rolloutOnTwoVersions(t, a)
}

// runModelServer runs an embedded model server on a random gRPC port as a
// stand-in for a TF Serving replica someone else runs, until the test ends.
func runModelServer(t *testing.T, models ...tfserving.ModelConfig) string {
	t.Helper()
	mc := modelserver.DefaultConfig()
	mc.GRPCListen, mc.RESTListen = "127.0.0.1:0", ""
	mc.Models = models
	tfs, err := modelserver.New(mc, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = tfs.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	testutil.Eventually(t, time.Minute, func() error {
		if !tfs.Ready() || tfs.GRPCAddr() == "" {
			return fmt.Errorf("TF Serving stand-in not ready")
		}
		return nil
	})
	return tfs.GRPCAddr()
}

// TestRolloutExternalFleet: the same rollout against an external fleet of
// two replicas, each serving both versions (one by a specific policy, one by
// latest:2), the calls spread over both.
func TestRolloutExternalFleet(t *testing.T) {
	dir := t.TempDir()
	writeTwoVersions(t, dir)
	base := filepath.Join(dir, "demo")
	c := testConfig(t)
	c.Rollout.CheckInterval = 50 * time.Millisecond
	c.ModelServer.Mode = ModelServerExternal
	c.ModelServer.TFServingEndpoints = []string{
		runModelServer(t, tfserving.ModelConfig{Name: "demo", BasePath: base, Policy: tfserving.VersionPolicy{Specific: []int64{1, 2}}}),
		runModelServer(t, tfserving.ModelConfig{Name: "demo", BasePath: base, Policy: tfserving.VersionPolicy{Latest: 2}}),
	}
	rolloutOnTwoVersions(t, start(t, c))
}

// TestRolloutFleetVersionsOnEveryEndpoint: a call may reach any endpoint of
// an external fleet, so a version is available to a rollout or a pin only
// when every endpoint serves it; the refusal names what each serves. A
// model other than the default is checked the same way.
func TestRolloutFleetVersionsOnEveryEndpoint(t *testing.T) {
	dir := t.TempDir()
	writeTwoVersions(t, dir)
	both := tfserving.ModelConfig{Name: "demo", BasePath: filepath.Join(dir, "demo"), Policy: tfserving.VersionPolicy{Latest: 2}}
	latest := tfserving.ModelConfig{Name: "demo", BasePath: both.BasePath} // latest:1, version 2 only
	other := tfserving.ModelConfig{Name: "other", BasePath: both.BasePath, Policy: tfserving.VersionPolicy{All: true}}
	a2, b1 := runModelServer(t, both, other), runModelServer(t, latest, other)
	c := testConfig(t)
	c.ModelServer.Mode = ModelServerExternal
	c.ModelServer.TFServingEndpoints = []string{a2, b1}
	a := start(t, c)
	api := newAPIClient(t, a)

	code, body := api.do("POST", "/api/v1/rollouts", map[string]any{"model": "demo", "stable": 2, "candidate": 1})
	if code != 400 || !strings.Contains(string(body), "version 1 of model demo is not available") ||
		!strings.Contains(string(body), a2+" serves [2 1]") || !strings.Contains(string(body), b1+" serves [2]") {
		t.Errorf("a rollout to a version one endpoint lacks: %d %s", code, body)
	}
	if code, body := api.do("PUT", "/api/v1/models/demo/serving", map[string]any{"version": 1}); code != 400 {
		t.Errorf("pinning a version one endpoint lacks: %d %s", code, body)
	}
	var r rollout.Rollout
	api.json("POST", "/api/v1/rollouts", map[string]any{"model": "other", "stable": 1}, 201, &r)
	if r.Stable != 1 || r.Candidate != 2 {
		t.Errorf("the candidate of model other is its highest version on every endpoint, 2: %+v", r)
	}
	api.json("POST", "/api/v1/rollouts/other/abort", nil, 200, &r)
}
