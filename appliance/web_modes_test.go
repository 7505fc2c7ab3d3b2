package appliance

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/web"
)

// The admin API over the other model server modes: the answers come from
// the TF Serving fleet or the sidecar supervisor, and what they cannot do
// (upload an ONNX file) says so.

// TestWebExternalModelServer: with model_server.mode external the API
// reports the fleet's endpoints and the default model's versions.
func TestWebExternalModelServer(t *testing.T) {
	models := t.TempDir()
	if err := demo.Install(models); err != nil {
		t.Fatal(err)
	}
	// A second model, "other", served by the same replica: the model list
	// shows it once a request for it was answered.
	other := demo.ModelConfig(models)
	other.Name = "other"
	addr := runModelServer(t, demo.ModelConfig(models), other)

	c := testConfig(t)
	c.ModelServer.Mode = ModelServerExternal
	c.ModelServer.TFServingEndpoints = []string{addr}
	a := start(t, c)
	api := newAPIClient(t, a)

	var st web.Status
	api.json("GET", "/api/v1/status", nil, 200, &st)
	if st.ModelServer.Mode != ModelServerExternal || st.ModelServer.Address != addr {
		t.Errorf("model server: %+v", st.ModelServer)
	}
	var sc struct {
		Enabled bool
		web.SidecarStatus
	}
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/sidecar", nil, 200, &sc)
		if !sc.Enabled || sc.Mode != ModelServerExternal || len(sc.Endpoints) != 1 || !sc.Endpoints[0].Healthy {
			return fmt.Errorf("sidecar view: %+v", sc)
		}
		return nil
	})
	var models2 modelsResp
	api.json("GET", "/api/v1/models", nil, 200, &models2)
	if s := modelState(models2.Models, "demo", 1); s != web.ModelAvailable {
		t.Fatalf("models: %+v", models2)
	}
	var res struct{ Result map[string]any }
	api.json("POST", "/api/v1/test-request", requestValue("ext-1", features(16, 0.2)), 200, &res)
	if res.Result["request_id"] != "ext-1" {
		t.Fatalf("test request: %+v", res)
	}
	otherReq, _ := json.Marshal(map[string]any{"request_id": "ext-2", "model": "other", "features": features(16, 0.2)})
	api.json("POST", "/api/v1/test-request", otherReq, 200, &res)
	api.json("GET", "/api/v1/models", nil, 200, &models2)
	if len(models2.Models) != 2 || models2.Models[0].Name != "demo" || modelState(models2.Models, "other", 1) != web.ModelAvailable {
		t.Fatalf("the fleet's models after a request for model other: %+v", models2.Models)
	}
	for _, call := range []struct{ method, path string }{
		{"POST", "/api/v1/models/demo/versions"}, {"POST", "/api/v1/models/reload"},
	} {
		if code, body := api.do(call.method, call.path, []byte("x")); code != http.StatusNotImplemented {
			t.Errorf("%s %s: %d %s", call.method, call.path, code, body)
		}
	}
}

var (
	standInOnce sync.Once
	standInBin  string
	standInErr  error
)

// tfServingStandIn builds cmd/infergate once and returns a script that runs
// `infergate model-server` as tensorflow_model_server.
func tfServingStandIn(t *testing.T) string {
	t.Helper()
	standInOnce.Do(func() {
		dir, err := os.MkdirTemp("", "appliance-tfs-")
		if err != nil {
			standInErr = err
			return
		}
		bin := filepath.Join(dir, "infergate")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/infergate/infergate/cmd/infergate").CombinedOutput(); err != nil {
			standInErr = fmt.Errorf("building cmd/infergate: %v\n%s", err, out)
			return
		}
		standInBin = filepath.Join(dir, "tensorflow_model_server")
		standInErr = os.WriteFile(standInBin, []byte(fmt.Sprintf("#!/bin/sh\nexec %q model-server \"$@\"\n", bin)), 0o755)
	})
	if standInErr != nil {
		t.Fatal(standInErr)
	}
	return standInBin
}

// sidecarTestConfig is testConfig in model_server.mode sidecar, with
// `infergate model-server` as tensorflow_model_server.
func sidecarTestConfig(t *testing.T) Config {
	t.Helper()
	c := testConfig(t)
	c.ModelServer.Mode = ModelServerSidecar
	c.ModelServer.TFServingBin = tfServingStandIn(t)
	// TF Serving binds every interface on fixed ports: pick free ones.
	c.ModelServer.GRPCListen = "127.0.0.1:" + freePort(t)
	c.ModelServer.RESTListen = "127.0.0.1:" + freePort(t)
	return c
}

// TestWebSidecar: with model_server.mode sidecar the API shows the
// supervised process (state, PID, log tail), its models, and sets labels
// and reloads through it.
func TestWebSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/infergate")
	}
	c := sidecarTestConfig(t)
	if err := demo.Install(filepath.Join(c.DataDir, ModelsDir)); err != nil {
		t.Fatal(err)
	}
	a := start(t, c)
	api := newAPIClient(t, a)

	var sc struct {
		Enabled bool
		web.SidecarStatus
	}
	api.json("GET", "/api/v1/sidecar", nil, 200, &sc)
	if !sc.Enabled || sc.Mode != ModelServerSidecar || !strings.HasPrefix(sc.State, "ready") || sc.PID == 0 || len(sc.Ready) != 1 {
		t.Fatalf("sidecar: %+v", sc)
	}
	if len(sc.Endpoints) != 1 || !sc.Endpoints[0].Healthy || sc.Endpoints[0].Address == "" {
		t.Errorf("sidecar endpoints: want the child's gRPC address, healthy: %+v", sc.Endpoints)
	}
	var st web.Status
	api.json("GET", "/api/v1/status", nil, 200, &st)
	if st.ModelServer.State != web.StateOK || st.ModelServer.Mode != ModelServerSidecar {
		t.Errorf("model server: %+v", st.ModelServer)
	}
	var models modelsResp
	api.json("GET", "/api/v1/models", nil, 200, &models)
	if s := modelState(models.Models, "demo", 1); s != web.ModelAvailable {
		t.Fatalf("models: %+v", models)
	}
	var res struct{ Result map[string]any }
	api.json("POST", "/api/v1/test-request", requestValue("sc-1", features(16, 0.2)), 200, &res)
	if res.Result["request_id"] != "sc-1" {
		t.Fatalf("test request: %+v", res)
	}
	api.json("PUT", "/api/v1/models/demo/labels/stable", map[string]int64{"version": 1}, 200, nil)
	api.json("POST", "/api/v1/models/reload", nil, 200, nil)
	api.json("GET", "/api/v1/models", nil, 200, &models)
	for _, m := range models.Models {
		if m.Name == "demo" && m.Labels["stable"] != 1 {
			t.Errorf("labels after reload: %+v", m)
		}
	}
	if code, body := api.do("POST", "/api/v1/models/demo/versions", []byte("x")); code != http.StatusNotImplemented {
		t.Errorf("upload in sidecar mode: %d %s", code, body)
	}
	// /metrics has the sidecar's restarts.
	sums, _ := scrape(t, a.WebURL())
	if _, ok := sums["infergate_sidecar_restarts_total"]; !ok {
		t.Error("/metrics lacks infergate_sidecar_restarts_total")
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := strings.Cut(ln.Addr().String(), ":")
	return port
}

// TestWebExactlyOnce: a test request finds its result once the pipeline's
// transaction commits (the watcher reads committed records only).
func TestWebExactlyOnce(t *testing.T) {
	c := testConfig(t)
	c.Pipeline.Delivery = ExactlyOnce
	a := start(t, c)
	api := newAPIClient(t, a)
	var res struct{ Result map[string]any }
	api.json("POST", "/api/v1/test-request", requestValue("eos-1", features(16, 0.2)), 200, &res)
	if res.Result["request_id"] != "eos-1" {
		t.Fatalf("test request: %+v", res)
	}
	if code, body := api.do("POST", "/api/v1/test-request", []byte(`{"request_id": "eos-2", "features": [1]}`)); code != http.StatusBadRequest {
		t.Fatalf("bad test request: %d %s", code, body)
	}
	var st web.Status
	api.json("GET", "/api/v1/status", nil, 200, &st)
	if st.Delivery != ExactlyOnce {
		t.Errorf("delivery %q", st.Delivery)
	}
}
