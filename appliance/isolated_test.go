package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/web"
)

// TestMain lets this test binary stand in for infergate in the isolated
// mode, which runs os.Executable() with the model-server command: invoked
// as `appliance.test model-server --port=…` it is `infergate model-server`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "model-server" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := modelserver.ModelServerMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestIsolatedModelServer: with model_server.mode isolated the model
// server runs in a child process. Requests are answered through it; a
// SIGKILL of the child is survived (restarted, every request sent around
// it answered, none dead-lettered); uploads and labels work as in the
// embedded mode; the child's reload RPC refuses callers without the
// supervisor's token.
func TestIsolatedModelServer(t *testing.T) {
	c := testConfig(t)
	c.ModelServer.Mode = ModelServerIsolated
	c.ModelServer.Sidecar.RestartBackoff = 100 * time.Millisecond
	a := start(t, c)
	api := newAPIClient(t, a)

	var sc struct {
		Enabled bool
		web.SidecarStatus
	}
	api.json("GET", "/api/v1/sidecar", nil, 200, &sc)
	if !sc.Enabled || sc.Mode != ModelServerIsolated || sc.PID == 0 || sc.PID == os.Getpid() || len(sc.Endpoints) != 1 {
		t.Fatalf("sidecar view: %+v", sc)
	}
	firstPID := sc.PID
	var st web.Status
	api.json("GET", "/api/v1/status", nil, 200, &st)
	if st.ModelServer.State != web.StateOK || st.ModelServer.Mode != ModelServerIsolated {
		t.Errorf("model server card: %+v", st.ModelServer)
	}

	// Requests flow; the child is killed mid-stream and comes back.
	results := followResults(t, a)
	answered := func(n int) {
		t.Helper()
		testutil.Eventually(t, 2*time.Minute, func() error {
			results.mu.Lock()
			defer results.mu.Unlock()
			missing := 0
			for i := range n {
				if results.n[fmt.Sprintf("iso-%d", i)] == 0 {
					missing++
				}
			}
			if missing > 0 {
				return fmt.Errorf("%d of %d requests not answered yet", missing, n)
			}
			return nil
		})
	}
	cl := producer(t, a)
	gen := demo.NewGenerator(1)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			v, _ := json.Marshal(map[string]any{"request_id": fmt.Sprintf("iso-%d", i), "features": gen.Normal()})
			produce(t, cl, &kgo.Record{Key: []byte(fmt.Sprint(i % 7)), Value: v})
		}
	}
	send(0, 50)
	answered(50)
	if err := syscall.Kill(firstPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	send(50, 150) // while the child is down and restarting
	answered(150)
	testutil.Eventually(t, time.Minute, func() error {
		api.json("GET", "/api/v1/sidecar", nil, 200, &sc)
		if sc.PID == 0 || sc.PID == firstPID || sc.Restarts < 1 || sc.LastExit == "" {
			return fmt.Errorf("not restarted yet: pid %d (was %d), restarts %d, last exit %q", sc.PID, firstPID, sc.Restarts, sc.LastExit)
		}
		return nil
	})
	var dlq struct{ Total int }
	api.json("GET", "/api/v1/dlq", nil, 200, &dlq)
	if dlq.Total != 0 {
		t.Errorf("%d dead letters after the child's crash, want 0", dlq.Total)
	}

	// Uploads: a new version is loaded by the child; a file that is not a
	// model is refused, naming why.
	var up struct{ Version int64 }
	api.json("POST", "/api/v1/models/demo/versions", demo.ONNX, 201, &up)
	if up.Version != 2 {
		t.Fatalf("upload: version %d, want 2", up.Version)
	}
	var models modelsResp
	api.json("GET", "/api/v1/models", nil, 200, &models)
	if s := modelState(models.Models, "demo", 2); s != web.ModelAvailable {
		t.Errorf("uploaded version 2 is %q: %+v", s, models)
	}
	if code, body := api.do("POST", "/api/v1/models/demo/versions", []byte("not onnx")); code != http.StatusBadRequest || !strings.Contains(string(body), "not a loadable ONNX model") {
		t.Errorf("garbage upload: %d %s", code, body)
	}
	api.json("POST", "/api/v1/models/other/versions", demo.ONNX, 201, &up)
	api.json("GET", "/api/v1/models", nil, 200, &models)
	if s := modelState(models.Models, "other", 1); s != web.ModelAvailable {
		t.Errorf("new model 'other' v1 is %q", s)
	}
	api.json("PUT", "/api/v1/models/demo/labels/stable", map[string]int64{"version": 2}, 200, nil)
	var res struct{ Result map[string]any }
	api.json("POST", "/api/v1/test-request", requestValue("iso-t", gen.Normal()), 200, &res)
	if res.Result["request_id"] != "iso-t" {
		t.Fatalf("test request: %+v", res)
	}

	// The child's reload RPC is the supervisor's alone.
	api.json("GET", "/api/v1/sidecar", nil, 200, &sc)
	client, err := tfserving.Dial(tfserving.DefaultConfig(sc.Endpoints[0].Address))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	err = client.Reload(context.Background(), &servingpb.ModelServerConfig{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("reload without the token: %v, want Unauthenticated", err)
	}
}

func TestIsolatedListenAddresses(t *testing.T) {
	for _, tc := range []struct{ grpc, rest, want string }{
		{"10.1.2.3:8500", "127.0.0.1:8501", "model_server.grpc_listen"},
		{"127.0.0.1:8500", "0.0.0.0:8501", "model_server.rest_listen"},
		{"127.0.0.1:8500", "192.168.1.5:8501", "model_server.rest_listen"},
	} {
		c := testConfig(t)
		c.ModelServer.Mode = ModelServerIsolated
		c.ModelServer.GRPCListen, c.ModelServer.RESTListen = tc.grpc, tc.rest
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "isolated") {
			t.Errorf("grpc %s rest %s: %v, want an error naming %s", tc.grpc, tc.rest, err, tc.want)
		}
	}
	c := testConfig(t)
	c.ModelServer.Mode = ModelServerIsolated
	c.ModelServer.GRPCListen, c.ModelServer.RESTListen = "localhost:8500", "127.0.0.1:8501"
	if err := c.Validate(); err != nil {
		t.Errorf("loopback on both: %v", err)
	}
}
