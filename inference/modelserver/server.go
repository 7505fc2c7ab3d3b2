// Package modelserver is infergate's embedded model server: a TensorFlow
// Serving compatible server for ONNX models. It serves a model repository
// (base_path/<version>/model.onnx) with TF's version policies, labels and
// availability-preserving rollover, over TF Serving's gRPC API (plus the
// standard gRPC health service), its REST API, and in-process through Local,
// which the pipeline calls without any encoding.
package modelserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/internal/httpdeadline"
	"github.com/infergate/infergate/proto/servingpb"
)

// Server is the embedded model server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	m     *manager
	local *Local
	mx    *metrics

	grpcSrv  *grpc.Server
	health   *health.Server
	pred     *predictionService // gRPC entrypoint
	restPred *predictionService // REST entrypoint
	models   *modelService

	running   atomic.Bool
	listening chan struct{} // closed once the listeners are open
	done      chan struct{} // closed when Run returns
	runErr    error         // Run's result, set before done closes

	addrMu   sync.Mutex
	grpcAddr string
	restAddr string

	configFileData []byte      // last applied ModelConfigFile contents
	scanned        atomic.Bool // the first scan of every model is done
	adm            *admission  // Limits.MaxInflightBytes; nil: no bound
}

var numCPU = runtime.NumCPU

// New validates cfg and builds a server; nothing is loaded or opened until Run.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Batching != nil {
		b := batchingWithDefaults(*cfg.Batching)
		cfg.Batching = &b
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	models := cfg.Models
	var fileData []byte
	if cfg.ModelConfigFile != "" {
		var err error
		fileData, err = os.ReadFile(cfg.ModelConfigFile)
		if err != nil {
			return nil, fmt.Errorf("modelserver: ModelConfigFile: %w", err)
		}
		models, err = ParseModelConfigText(fileData)
		if err != nil {
			return nil, fmt.Errorf("modelserver: ModelConfigFile %s: %w", cfg.ModelConfigFile, err)
		}
	}
	s := &Server{
		cfg:            cfg,
		log:            logger,
		listening:      make(chan struct{}),
		done:           make(chan struct{}),
		configFileData: fileData,
	}
	if cfg.MonitoringPath != "" {
		s.mx = newMetrics()
	}
	s.m = newManager(logger, cfg.Batching, cfg.AllowLabelsForUnavailable, s.mx)
	s.m.maxFolded = cfg.Limits.MaxFoldedConstantBytes
	s.m.threads = cfg.Threads
	s.local = &Local{m: s.m}
	s.health = health.NewServer()
	s.setHealth(false)
	s.m.onReady = s.setHealth
	s.m.configure(models)

	s.adm = newAdmission(cfg.Limits.MaxInflightBytes)
	s.pred = &predictionService{m: s.m, mx: s.mx, entry: "GRPC", lim: cfg.Limits, adm: s.adm}
	s.restPred = &predictionService{m: s.m, mx: s.mx, entry: "REST", lim: cfg.Limits, adm: s.adm}
	s.models = &modelService{s: s}
	s.grpcSrv = grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.MaxMessageSize),
		grpc.MaxSendMsgSize(cfg.MaxMessageSize),
	)
	servingpb.RegisterPredictionServiceServer(s.grpcSrv, s.pred)
	servingpb.RegisterModelServiceServer(s.grpcSrv, s.models)
	healthpb.RegisterHealthServer(s.grpcSrv, s.health)
	return s, nil
}

// healthServices are reported SERVING once every model is AVAILABLE; "" is
// the whole server, what most probes ask for.
var healthServices = []string{"", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"}

func (s *Server) setHealth(ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, svc := range healthServices {
		s.health.SetServingStatus(svc, st)
	}
}

// Run loads the models, opens the listeners, polls the model directories
// (and the config file) and serves until ctx ends. It then stops gRPC
// gracefully, shuts REST down, stops the batchers and returns after every
// goroutine it started has exited. Run may be called once.
func (s *Server) Run(ctx context.Context) (err error) {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("modelserver: Run called twice")
	}
	defer func() {
		s.runErr = err
		close(s.done)
	}()
	defer s.m.stopAll()

	s.m.pollAll(true)
	s.scanned.Store(true)
	s.warnBadLabels()
	if s.cfg.ListenAfterReady {
		// tensorflow_model_server opens its ports only once every model is
		// AVAILABLE, and gives up when a first load fails.
		wait := s.cfg.FileSystemPoll
		if wait <= 0 {
			wait = time.Second
		}
		for !s.m.ready.Load() {
			if err := s.startupFailure(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			s.m.pollAll(false)
		}
	}

	var grpcLis, restLis net.Listener
	if s.cfg.GRPCListen != "" {
		grpcLis, err = net.Listen("tcp", s.cfg.GRPCListen)
		if err != nil {
			return fmt.Errorf("modelserver: GRPCListen: %w", err)
		}
	}
	if s.cfg.RESTListen != "" {
		restLis, err = net.Listen("tcp", s.cfg.RESTListen)
		if err != nil {
			if grpcLis != nil {
				grpcLis.Close()
			}
			return fmt.Errorf("modelserver: RESTListen: %w", err)
		}
	}
	s.addrMu.Lock()
	if grpcLis != nil {
		s.grpcAddr = grpcLis.Addr().String()
	}
	if restLis != nil {
		s.restAddr = restLis.Addr().String()
	}
	s.addrMu.Unlock()

	loopCtx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	var httpSrv *http.Server
	if grpcLis != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.grpcSrv.Serve(grpcLis); err != nil {
				errc <- fmt.Errorf("modelserver: gRPC: %w", err)
			}
		}()
		s.log.Info("TF Serving gRPC API listening", "addr", grpcLis.Addr().String())
	}
	if restLis != nil {
		body := func(*http.Request) time.Duration { return s.cfg.RESTReadTimeout }
		httpSrv = &http.Server{Handler: httpdeadline.Handler(s.restMux(), body), ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			ReadHeaderTimeout: s.cfg.RESTReadHeaderTimeout, IdleTimeout: s.cfg.RESTIdleTimeout}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := httpSrv.Serve(restLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("modelserver: REST: %w", err)
			}
		}()
		s.log.Info("TF Serving REST API listening", "addr", restLis.Addr().String())
	}
	close(s.listening)

	if s.cfg.FileSystemPoll > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.pollLoop(loopCtx)
		}()
	}
	if s.cfg.ModelConfigFile != "" && s.cfg.ModelConfigFilePoll > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.configFileLoop(loopCtx)
		}()
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stopLoops()
	s.health.Shutdown() // NOT_SERVING first, so balancers move away
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if e := httpSrv.Shutdown(sctx); e != nil {
			httpSrv.Close()
		}
		cancel()
	}
	stopped := make(chan struct{})
	go func() {
		s.grpcSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		s.grpcSrv.Stop()
		<-stopped
	}
	wg.Wait()
	return err
}

func (s *Server) pollLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.FileSystemPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.m.pollAll(false)
		}
	}
}

func (s *Server) configFileLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ModelConfigFilePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(s.cfg.ModelConfigFile)
		if err != nil {
			s.log.Error("reading model config file", "path", s.cfg.ModelConfigFile, "err", err)
			continue
		}
		if bytes.Equal(data, s.configFileData) {
			continue
		}
		models, err := ParseModelConfigText(data)
		if err != nil {
			s.log.Error("model config file is invalid; keeping the current models", "path", s.cfg.ModelConfigFile, "err", err)
			s.configFileData = data // do not log it again every poll
			continue
		}
		s.configFileData = data
		if err := s.m.reload(models); err != nil {
			s.log.Error("applying model config file", "path", s.cfg.ModelConfigFile, "err", err)
		} else {
			s.log.Info("model config file applied", "path", s.cfg.ModelConfigFile, "models", len(models))
		}
	}
}

func (s *Server) startupFailure() error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	for _, name := range s.m.order {
		mm := s.m.models[name]
		if mm.removed {
			continue
		}
		if err := firstLoadError(mm); err != nil {
			return fmt.Errorf("modelserver: %s", status.Convert(err).Message())
		}
	}
	return nil
}

func (s *Server) warnBadLabels() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	for _, name := range s.m.order {
		mm := s.m.models[name]
		if mm.removed {
			continue
		}
		if err := s.m.checkLabelsLocked(mm, mm.labels); err != nil {
			s.log.Warn("version label points at a version that is not available", "model", name, "err", status.Convert(err).Message())
		}
	}
}

// Ready reports whether every configured model has an AVAILABLE version.
func (s *Server) Ready() bool { return s.m.ready.Load() }

// Serving reports whether the named model has an AVAILABLE version now.
func (s *Server) Serving(name string) bool {
	mt, ok := s.m.tab.Load().models[name]
	return ok && mt.latest != nil
}

// Failed lists the configured models that cannot become AVAILABLE without
// a change on disk: no version is available or still loading, and every
// version the policy selects failed to load (or there is no version at all).
// Each error names the model, the version that failed and why. It is empty
// until Run's first scan is done.
func (s *Server) Failed() []error {
	if !s.scanned.Load() {
		return nil
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	var out []error
	for _, name := range s.m.order {
		mm := s.m.models[name]
		if mm.removed {
			continue
		}
		busy := false
		for _, vs := range mm.versions {
			if vs.state != StateEnd {
				busy = true // AVAILABLE, or on its way
			}
		}
		if busy {
			continue
		}
		var why []string
		for _, v := range slices.Backward(slices.Sorted(maps.Keys(mm.versions))) {
			if err := mm.versions[v].err; err != nil {
				why = append(why, fmt.Sprintf("version %d: %s", v, status.Convert(err).Message()))
			}
		}
		if len(why) > 0 {
			out = append(out, fmt.Errorf("model %s: no version loads (%s)", name, strings.Join(why, "; ")))
		} else if len(mm.pending) == 0 {
			out = append(out, fmt.Errorf("model %s has no version under %s (want %s/<version>/%s)", name, mm.cfg.BasePath, mm.cfg.BasePath, ModelFileName))
		}
	}
	return out
}

// WaitReady blocks until every model is AVAILABLE and the listeners are
// open, ctx ends, or Run returns.
func (s *Server) WaitReady(ctx context.Context) error {
	lis := s.listening
	for {
		ch := s.m.waitChange()
		open := isClosed(s.listening)
		if open && s.m.ready.Load() {
			return nil
		}
		if open {
			lis = nil // closed channels are always ready; stop selecting on it
		}
		select {
		case <-ch:
		case <-lis:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return s.stoppedErr()
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (s *Server) stoppedErr() error {
	if s.runErr != nil {
		return s.runErr
	}
	return errStopped
}

// GRPCAddr is the address the gRPC listener is bound to ("" before Run has
// opened it, or when off).
func (s *Server) GRPCAddr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.grpcAddr
}

// RESTAddr is the address the REST listener is bound to.
func (s *Server) RESTAddr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.restAddr
}

// PredictionService returns the gRPC PredictionService implementation, for
// mounting on another grpc.Server.
func (s *Server) PredictionService() servingpb.PredictionServiceServer { return s.pred }

// ModelService returns the gRPC ModelService implementation.
func (s *Server) ModelService() servingpb.ModelServiceServer { return s.models }

// Reload replaces the served models, as HandleReloadConfigRequest does:
// returns once new models are loaded; labels naming versions that are not
// AVAILABLE fail with FAILED_PRECONDITION (the other changes still apply).
func (s *Server) Reload(cfg *servingpb.ModelServerConfig) error {
	models, err := ModelsFromProto(cfg)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return s.m.reload(models)
}

// Models describes every configured model (and ones removed by a reload).
func (s *Server) Models() []ModelStatus { return s.m.statuses() }

// SetHolds keeps versions loaded in addition to those the version policy
// keeps: holds maps a model to its held versions, each with why it is held
// ("pinned", "stable of rollout …"), which its status shows (Held). A
// latest:N policy would otherwise unload a pinned version, or a rollout's
// stable one, as soon as N newer versions arrive, and the requests routed
// to it would fail NOT_FOUND. A held version not loaded is loaded when its
// directory is there; one no longer held is unloaded unless the policy
// keeps it. Each call replaces the holds of every model; it returns once
// the models whose holds changed are scanned again.
func (s *Server) SetHolds(holds map[string]map[int64]string) { s.m.setHolds(holds) }

// SetLabel points a version label at an AVAILABLE version; version 0
// removes the label. It lasts until the next config reload.
func (s *Server) SetLabel(name, label string, version int64) error {
	return s.m.setLabel(name, label, version)
}
