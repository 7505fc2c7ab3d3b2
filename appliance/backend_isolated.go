package appliance

// model_server.mode isolated: infergate's own model server (ONNX, as in the
// embedded mode) in a child process, `infergate model-server`, run and
// supervised by inference/sidecar like tensorflow_model_server in the sidecar
// mode. A model that crashes or exhausts the model server's memory takes the
// child down, not the broker, the pipeline and the dashboard: the supervisor
// restarts it and the pipeline's circuit holds the requests meanwhile. The
// price is a gRPC call on loopback per batch.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/sidecar"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/web"
)

// isolatedName is what the supervisor's logs and states call the child.
const isolatedName = "the isolated model server"

// isolatedDir holds the child's models.config and logs.
const isolatedDir = "isolated"

func (a *Appliance) isolatedModelServerComponent() *component {
	var sup *sidecar.Supervisor
	return &component{
		name: "model server",
		start: func(context.Context) error {
			models, err := a.onnxRepository()
			if err != nil {
				return err
			}
			cfg, err := a.isolatedConfig(models)
			if err != nil {
				return err
			}
			sup, err = sidecar.New(cfg, a.logger.With("component", "model-server", "mode", ModelServerIsolated))
			if err != nil {
				return err
			}
			a.mu.Lock()
			a.backend = &isolatedBackend{sidecarBackend{repositoryBackend: repositoryBackend{a: a, pred: sup.Predictor()}, sup: sup}}
			a.mu.Unlock()
			return nil
		},
		run: func(ctx context.Context) error { return sup.Run(ctx) },
		ready: func() error {
			if sup == nil {
				return errors.New("the isolated model server has not started")
			}
			if !sup.Ready() {
				st := sup.Status()
				return fmt.Errorf("the isolated model server is %s: %s", st.State, st.Reason)
			}
			return nil
		},
		readyTimeout: modelReadyTimeout,
	}
}

// isolatedConfig is the sidecar mode's supervisor configuration (restart
// backoff, crash loop, grace period and log size from model_server.sidecar.*)
// running this binary's model-server command instead of
// tensorflow_model_server, with the embedded mode's limits and threads, on
// the host of grpc_listen, and a reload RPC only the supervisor may call.
func (a *Appliance) isolatedConfig(models []tfserving.ModelConfig) (sidecar.Config, error) {
	ms := a.cfg.ModelServer
	host, grpcPort, err := isolatedListen("grpc_listen", "grpc-listen", ms.GRPCListen)
	if err != nil {
		return sidecar.Config{}, err
	}
	restPort := -1 // off
	if ms.RESTListen != "" {
		if _, restPort, err = isolatedListen("rest_listen", "rest-listen", ms.RESTListen); err != nil {
			return sidecar.Config{}, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return sidecar.Config{}, fmt.Errorf("model_server.mode isolated runs this binary's model-server command: finding it: %w", err)
	}
	token := make([]byte, 24)
	if _, err := rand.Read(token); err != nil {
		return sidecar.Config{}, err
	}
	cfg := a.sidecarConfig(models, grpcPort, restPort)
	cfg.DataDir = filepath.Join(a.paths.Root, isolatedDir)
	cfg.Name, cfg.Binary, cfg.Args = isolatedName, self, []string{"model-server"}
	cfg.ReloadToken = hex.EncodeToString(token)
	cfg.Env = []string{modelserver.ReloadTokenEnv + "=" + cfg.ReloadToken}
	lim := a.modelLimits()
	cfg.ExtraFlags = []string{
		"--listen_host=" + host,
		"--model_threads=" + strconv.Itoa(ms.Threads),
		"--max_request_elements=" + strconv.FormatInt(lim.MaxRequestElements, 10),
		"--max_request_rows=" + strconv.FormatInt(lim.MaxRequestRows, 10),
		"--max_inflight_request_bytes=" + strconv.FormatInt(lim.MaxInflightBytes, 10),
		"--max_folded_constant_bytes=" + strconv.FormatInt(lim.MaxFoldedConstantBytes, 10),
	}
	cfg.MonitoringPath = tfMonitoringPath
	cfg.Batching = nil
	// The child loads ONNX files in a second or less, not SavedModels in
	// minutes: a hung load is noticed within modelReadyTimeout.
	cfg.ReadyTimeout = modelReadyTimeout
	return cfg, nil
}

// isolatedListen splits a listen address of the isolated mode. The child
// binds one interface for both ports, and the supervisor reaches it on
// loopback, so the host is loopback or every interface.
func isolatedListen(key, flag, addr string) (host string, port int, err error) {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("model_server.%s (--%s): %q: %w", key, flag, addr, err)
	}
	if port, err = listenPort(key, flag, addr); err != nil {
		return "", 0, err
	}
	switch h {
	case "", "0.0.0.0", "::":
		return "0.0.0.0", port, nil
	case "localhost", "127.0.0.1":
		return "127.0.0.1", port, nil
	case "::1":
		return "::1", port, nil
	}
	return "", 0, fmt.Errorf("model_server.%s (--%s): %q: in model_server.mode isolated the model server listens on loopback (127.0.0.1, ::1, localhost) or every interface (0.0.0.0), not on %s", key, flag, addr, h)
}

// isolatedBackend is the modelBackend of the isolated mode: the sidecar
// mode's (status, models, labels and reloads through the supervisor), plus
// uploads, since the child serves ONNX files like the embedded server.
type isolatedBackend struct {
	sidecarBackend
}

var _ modelBackend = (*isolatedBackend)(nil)

// uploadWait bounds how long an upload waits for the child to load the new
// version (its file-system poll runs every second).
const uploadWait = 30 * time.Second

// upload checks the file loads, moves it into the repository as a new
// version and, for a model the child does not serve yet, sends it a model
// config that adds it; then it waits until the child has the version
// AVAILABLE (or has refused it, or its version policy does not select it).
func (s *isolatedBackend) upload(ctx context.Context, name string, version int64, file string) (int64, error) {
	known := slices.ContainsFunc(s.sup.Models(), func(m tfserving.ModelConfig) bool { return m.Name == name })
	version, err := modelserver.PlaceVersionFile(filepath.Join(s.a.paths.Models, name), name, version, file, s.a.cfg.ModelServer.MaxFoldedConstantBytes)
	if err != nil {
		return 0, err
	}
	if !known {
		if err := s.reload(ctx); err != nil {
			return version, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, uploadWait)
	defer cancel()
	for {
		st, err := s.sup.Predictor().Status(ctx, name, version)
		if err == nil && len(st) > 0 {
			switch v := st[0]; {
			case v.State == "AVAILABLE":
				return version, nil
			case v.State == "END" && v.ErrorMessage != "":
				return version, fmt.Errorf("version %d of %s was written, but the isolated model server could not load it: %s", version, name, v.ErrorMessage)
			}
		}
		select {
		case <-ctx.Done():
			// Written; the version policy may not select it (an explicit
			// version below the latest), as in the embedded mode.
			return version, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// models asks the child for every version of the models it was configured
// with, so an upload is listed as soon as it returned (the supervisor's
// own view follows at its next health probe); while the child is down, the
// supervisor's last view.
func (s *isolatedBackend) models(ctx context.Context) ([]web.Model, error) {
	var out []web.Model
	for _, m := range s.sup.Models() {
		st, err := s.sup.Predictor().Status(ctx, m.Name, 0)
		if err != nil {
			return s.sidecarBackend.models(ctx)
		}
		wm := web.Model{Name: m.Name, Labels: m.Labels, Versions: []web.ModelVersion{}}
		for _, v := range st {
			wm.Versions = append(wm.Versions, web.ModelVersion{Version: v.Version, State: v.State, Error: v.ErrorMessage})
		}
		out = append(out, wm)
	}
	return out, nil
}

func (s *isolatedBackend) availableVersions(ctx context.Context, name string) ([]int64, error) {
	return listedVersions(ctx, s, name)
}

func (s *isolatedBackend) deleteVersion(string, int64, func() error) error {
	return errDeleteUnsupported
}

func (s *isolatedBackend) sidecarView() (*web.SidecarStatus, bool) {
	v, ok := s.sidecarBackend.sidecarView()
	v.Mode = ModelServerIsolated
	return v, ok
}

// uploadDir is the model repository, as in the embedded mode: uploads are
// renamed into their version directory from there.
func (s *isolatedBackend) uploadDir() string { return s.a.paths.Models }

func (s *isolatedBackend) notHeld() string {
	return "not kept loaded by infergate in isolated mode: the model server's version policy decides; " +
		"model_server.model_version_policies NAME=specific:V1,V2 (or all) keeps it"
}
