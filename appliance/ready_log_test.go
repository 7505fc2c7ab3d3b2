package appliance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
)

// lockedBuffer collects what a process writes while the test reads it.
type lockedBuffer = testutil.Buffer

// TestReadyLogFollowsReadyz: "infergate is ready" is logged when /readyz
// first answers 200, not when the components have started — the issue saw
// it logged while /readyz answered 503. Here the external model server is
// not there at first: everything starts, /readyz says 503 and the log does
// not say ready; the model server comes up: ready is logged and /readyz
// answers 200; it goes away again: "not ready" is logged with the reason.
func TestReadyLogFollowsReadyz(t *testing.T) {
	models := t.TempDir()
	if err := demo.Install(models); err != nil {
		t.Fatal(err)
	}
	tfsAddr := "127.0.0.1:" + freePort(t)
	c := testConfig(t)
	c.ModelServer.Mode = ModelServerExternal
	c.ModelServer.TFServingEndpoints = []string{tfsAddr}
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testutil.Writer(t)), &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := New(c, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	readyz := func() (int, error) {
		if a.WebURL() == "" {
			return 0, fmt.Errorf("the web server is not up yet")
		}
		resp, err := http.Get(a.WebURL() + "/readyz")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	testutil.Eventually(t, 2*time.Minute, func() error {
		code, err := readyz()
		switch {
		case err != nil:
			return err
		case code == http.StatusServiceUnavailable && strings.Contains(logs.String(), "infergate is ready"):
			t.Fatalf("the log says ready while /readyz answers 503:\n%s", logs.String())
		case !strings.Contains(logs.String(), "all components started"):
			return fmt.Errorf("not all components started yet")
		case code != http.StatusServiceUnavailable:
			t.Fatalf("/readyz answered %d with no model server at %s; want 503", code, tfsAddr)
		}
		return nil
	})
	if strings.Contains(logs.String(), "infergate is ready") {
		t.Fatalf("the log says ready while /readyz answers 503:\n%s", logs.String())
	}

	// The model server comes up where the appliance expects it.
	mc := modelserver.DefaultConfig()
	mc.GRPCListen, mc.RESTListen = tfsAddr, ""
	mc.Models = []tfserving.ModelConfig{demo.ModelConfig(models)}
	tfs, err := modelserver.New(mc, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	tctx, stopTFS := context.WithCancel(context.Background())
	tfsDone := make(chan struct{})
	go func() { _ = tfs.Run(tctx); close(tfsDone) }()
	t.Cleanup(func() { stopTFS(); <-tfsDone })
	testutil.Eventually(t, 2*time.Minute, func() error {
		if !strings.Contains(logs.String(), `msg="infergate is ready"`) {
			return fmt.Errorf("not logged ready yet")
		}
		return nil
	})
	if code, err := readyz(); err != nil || code != http.StatusOK {
		t.Fatalf("logged ready, /readyz answers %d (%v)", code, err)
	}

	// It goes away: the log says so, with the reason /readyz gives.
	stopTFS()
	<-tfsDone
	testutil.Eventually(t, 2*time.Minute, func() error {
		if !strings.Contains(logs.String(), `msg="infergate is not ready" reason="model server: TF Serving at `+tfsAddr) {
			return fmt.Errorf("no 'not ready' line naming the model server yet")
		}
		return nil
	})
	if code, err := readyz(); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("logged not ready, /readyz answers %d (%v)", code, err)
	}
}
