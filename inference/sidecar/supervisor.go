package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/infergate/infergate/inference/tfserving"
)

// State of the supervised process.
type State string

// States. A process that was started but does not answer yet is starting
// (TF Serving opens its ports only once every model is loaded, so most of a
// long load shows as starting); loading means it answers and some model has
// no AVAILABLE version.
const (
	StateStarting   State = "starting"
	StateLoading    State = "loading"
	StateReady      State = "ready"
	StateRestarting State = "restarting"
	StateCrashLoop  State = "crash-loop"
	StateStopped    State = "stopped"
	StateFailed     State = "failed"
)

// Exit describes how the last process ended.
type Exit struct {
	// Code is the exit code, -1 when a signal ended it.
	Code   int       `json:"code"`
	Signal string    `json:"signal,omitempty"`
	At     time.Time `json:"at"`
	// Uptime is how long the process ran.
	Uptime        time.Duration `json:"-"`
	UptimeSeconds float64       `json:"uptime_seconds"`
	// Reason says why in words, e.g. "exited with code 1", "killed by
	// signal: killed", "not ready within 10m0s (model demo: ...): killed".
	Reason string `json:"reason"`
}

// Status is a snapshot of the supervisor, JSON-ready for the admin API.
type Status struct {
	State State `json:"state"`
	// Ready is State == StateReady: every model has an AVAILABLE version.
	Ready bool `json:"ready"`
	// Reason explains the state (what readiness waits for, why it restarts).
	Reason    string    `json:"reason,omitempty"`
	Binary    string    `json:"binary"`
	Args      []string  `json:"args,omitempty"`
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Restarts counts starts after the first.
	Restarts int   `json:"restarts"`
	LastExit *Exit `json:"last_exit,omitempty"`
	// ReadyModels have at least one AVAILABLE version.
	ReadyModels []string      `json:"ready_models"`
	Models      []ModelStatus `json:"models"`
	GRPCAddr    string        `json:"grpc_addr,omitempty"`
	RESTAddr    string        `json:"rest_addr,omitempty"`
	// Backoff is the delay before the pending restart (it doubles with each
	// failed run); NextRestartIn the time left of it.
	Backoff              time.Duration `json:"-"`
	BackoffSeconds       float64       `json:"backoff_seconds,omitempty"`
	NextRestartIn        time.Duration `json:"-"`
	NextRestartInSeconds float64       `json:"next_restart_in_seconds,omitempty"`
	// Warnings collects the models' warnings (a version served other than
	// the expected one).
	Warnings []string `json:"warnings,omitempty"`
}

// ModelStatus is what the supervisor knows of one configured model.
type ModelStatus struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	// Expected is the version requests without a version or label should
	// reach: the highest listed one for a specific policy, the highest
	// version directory for latest/all (0 when the base path is not local).
	Expected int64 `json:"expected_version,omitempty"`
	// Served is the version that answered the last such request.
	Served   int64            `json:"served_version,omitempty"`
	Versions []VersionState   `json:"versions,omitempty"`
	Labels   map[string]int64 `json:"labels,omitempty"`
	Warning  string           `json:"warning,omitempty"`
}

// VersionState is one version as GetModelStatus reports it.
type VersionState struct {
	Version int64  `json:"version"`
	State   string `json:"state"`
	Error   string `json:"error,omitempty"`
}

type modelState struct {
	ready    bool
	expected int64
	served   int64
	versions []tfserving.VersionStatus
	// servedWarn comes from a Predict answered by an unexpected version
	// (servedWarnKey says for which label, "" for the default path);
	// loadWarn from GetModelStatus showing the expected version failed.
	servedWarn, servedWarnKey string
	loadWarn, loggedLoadWarn  string
}

// Supervisor runs tensorflow_model_server as a child process: it writes its
// configuration, starts it on free ports, polls readiness through
// GetModelStatus, restarts it with backoff when it exits, and stops it with
// SIGTERM then SIGKILL. Predictor gives the pipeline a model server that
// answers UNAVAILABLE while the child is not ready.
type Supervisor struct {
	cfg        Config
	bin        string
	log        *slog.Logger
	tail       *tail
	kick       chan struct{}
	ready      atomic.Bool
	running    atomic.Bool
	reloadMu   sync.Mutex
	predictor  *Predictor
	staticArgs []string

	mu            sync.Mutex
	changed       chan struct{}
	state         State
	reason        string
	pid           int
	args          []string
	startedAt     time.Time
	restarts      int
	lastExit      *Exit
	grpcPort      int
	restPort      int
	models        []tfserving.ModelConfig
	modelStates   map[string]*modelState
	backoff       time.Duration
	nextRestartAt time.Time
	client        *tfserving.Client
	clients       []*tfserving.Client
}

// New validates cfg and finds the binary; it starts nothing.
func New(cfg Config, logger *slog.Logger) (*Supervisor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bin, err := findBinary(cfg.Binary)
	if err != nil {
		return nil, err
	}
	models, err := absModels(cfg.Models)
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(cfg.DataDir); err == nil {
		cfg.DataDir = abs
	}
	s := &Supervisor{
		cfg:         cfg,
		bin:         bin,
		log:         logger,
		tail:        newTail(cfg.LogTailLines),
		kick:        make(chan struct{}, 1),
		changed:     make(chan struct{}),
		state:       StateStarting,
		reason:      "not started yet",
		models:      models,
		modelStates: map[string]*modelState{},
	}
	s.predictor = &Predictor{s: s}
	return s, nil
}

// Binary is the resolved path of tensorflow_model_server.
func (s *Supervisor) Binary() string { return s.bin }

// Ready reports whether every configured model has an AVAILABLE version in
// the running process.
func (s *Supervisor) Ready() bool { return s.ready.Load() }

// LogTail returns up to the last n lines the child wrote to stdout and
// stderr, oldest first (n <= 0: all that are kept).
func (s *Supervisor) LogTail(n int) []string { return s.tail.last(n) }

// Models returns the configured models (after the last successful Reload).
func (s *Supervisor) Models() []tfserving.ModelConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, _ := absModels(s.models)
	return out
}

// GRPCAddr is the 127.0.0.1 address of the child's gRPC API ("" before the
// first start).
func (s *Supervisor) GRPCAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grpcAddrLocked()
}

func (s *Supervisor) grpcAddrLocked() string {
	if s.grpcPort == 0 {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.grpcPort))
}

func (s *Supervisor) setState(st State, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setStateLocked(st, reason)
}

func (s *Supervisor) setStateLocked(st State, reason string) {
	if s.state == st && s.reason == reason {
		return
	}
	s.state, s.reason = st, reason
	s.ready.Store(st == StateReady)
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitReady blocks until the sidecar is ready, ctx ends (the error then says
// what readiness is waiting for) or Run has returned.
func (s *Supervisor) WaitReady(ctx context.Context) error {
	for {
		s.mu.Lock()
		st, reason, ch := s.state, s.reason, s.changed
		s.mu.Unlock()
		switch st {
		case StateReady:
			return nil
		case StateStopped, StateFailed:
			if !s.running.Load() || st == StateFailed {
				return fmt.Errorf("sidecar: %s is %s: %s", s.cfg.Name, st, reason)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sidecar: %s not ready (%s: %s): %w", s.cfg.Name, st, reason, ctx.Err())
		case <-ch:
		}
	}
}

// Status returns a snapshot.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		State:       s.state,
		Ready:       s.state == StateReady,
		Reason:      s.reason,
		Binary:      s.bin,
		Args:        append([]string(nil), s.args...),
		PID:         s.pid,
		StartedAt:   s.startedAt,
		Restarts:    s.restarts,
		GRPCAddr:    s.grpcAddrLocked(),
		ReadyModels: []string{},
	}
	if s.lastExit != nil {
		e := *s.lastExit
		st.LastExit = &e
	}
	if s.restPort > 0 {
		st.RESTAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.restPort))
	}
	if s.state == StateRestarting || s.state == StateCrashLoop {
		st.Backoff = s.backoff
		st.BackoffSeconds = s.backoff.Seconds()
		st.NextRestartIn = max(time.Until(s.nextRestartAt), 0)
		st.NextRestartInSeconds = st.NextRestartIn.Seconds()
	}
	for _, m := range s.models {
		ms := ModelStatus{Name: m.Name}
		if len(m.Labels) > 0 {
			ms.Labels = make(map[string]int64, len(m.Labels))
			for k, v := range m.Labels {
				ms.Labels[k] = v
			}
		}
		if x := s.modelStates[m.Name]; x != nil {
			ms.Ready = x.ready && s.pid != 0
			ms.Expected, ms.Served = x.expected, x.served
			ms.Warning = strings.Join(slices.DeleteFunc([]string{x.loadWarn, x.servedWarn}, func(w string) bool { return w == "" }), "; ")
			for _, v := range x.versions {
				vs := VersionState{Version: v.Version, State: v.State}
				if v.ErrorCode != 0 {
					vs.Error = v.ErrorMessage
				}
				ms.Versions = append(ms.Versions, vs)
			}
		}
		if ms.Ready {
			st.ReadyModels = append(st.ReadyModels, m.Name)
		}
		if ms.Warning != "" {
			st.Warnings = append(st.Warnings, m.Name+": "+ms.Warning)
		}
		st.Models = append(st.Models, ms)
	}
	return st
}

// kickProbe asks the readiness loop to check now (a call just failed with
// UNAVAILABLE: the child may have died).
func (s *Supervisor) kickProbe() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// currentClient returns the client of the current ports.
func (s *Supervisor) currentClient() *tfserving.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// clientFor makes (or reuses) the client of addr. Old clients are closed
// when Run returns: a call may still hold one.
func (s *Supervisor) clientFor(addr string) (*tfserving.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil && s.client.Address() == addr {
		return s.client, nil
	}
	cc := tfserving.DefaultConfig(addr)
	cc.Timeout = s.cfg.CallTimeout
	cc.DialOptions = []grpc.DialOption{
		// gRPC's default reconnect backoff grows to 2 minutes: after a
		// restart the child would be up long before the client noticed.
		// The child is local, so retry often.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	}
	c, err := tfserving.Dial(cc)
	if err != nil {
		return nil, err
	}
	s.client = c
	s.clients = append(s.clients, c)
	return c, nil
}

// starter starts every child from one goroutine locked to its OS thread.
// Linux delivers Pdeathsig when the thread that forked the child exits, not
// the process; Go ends threads whose goroutine exits while locked, so a
// start from an arbitrary goroutine could get the child killed at a random
// moment. This thread lives until Run has reaped its last child.
type starter struct {
	reqs chan *exec.Cmd
	errs chan error
}

func newStarter() *starter {
	st := &starter{reqs: make(chan *exec.Cmd), errs: make(chan error)}
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: when reqs closes, the thread goes away with
		// the goroutine, which is harmless as every child is reaped by then.
		for cmd := range st.reqs {
			st.errs <- cmd.Start()
		}
	}()
	return st
}

func (st *starter) start(cmd *exec.Cmd) error {
	st.reqs <- cmd
	return <-st.errs
}

func (st *starter) close() { close(st.reqs) }

// Run starts the process and keeps it running until ctx ends; it then
// stops it (SIGTERM, SIGKILL after GracePeriod) and returns nil once it is
// reaped. Callers stop sending traffic (drain the pipeline) before
// cancelling ctx: TF Serving does not finish in-flight requests on SIGTERM.
// An error means the supervisor could not work at all (DataDir not
// writable); exits of the child are restarts, not errors.
func (s *Supervisor) Run(ctx context.Context) (err error) {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("sidecar: Run called twice")
	}
	defer func() {
		// running goes false before the final state is published, so a
		// WaitReady woken by it sees that Run is over.
		s.running.Store(false)
		s.mu.Lock()
		s.pid = 0
		for _, c := range s.clients {
			c.Close()
		}
		s.clients, s.client = nil, nil
		if err != nil {
			s.setStateLocked(StateFailed, err.Error())
		} else {
			s.setStateLocked(StateStopped, "stopped")
		}
		s.mu.Unlock()
	}()
	if err := os.MkdirAll(filepath.Join(s.cfg.DataDir, LogsDir), 0o755); err != nil {
		return fmt.Errorf("sidecar: DataDir: %w", err)
	}
	s.staticArgs, err = writeStaticFiles(s.cfg)
	if err != nil {
		return err
	}
	stdout, err := openRotating(filepath.Join(s.cfg.DataDir, LogsDir, "stdout.log"), s.cfg.LogMaxBytes)
	if err != nil {
		return fmt.Errorf("sidecar: log file: %w", err)
	}
	defer stdout.Close()
	stderr, err := openRotating(filepath.Join(s.cfg.DataDir, LogsDir, "stderr.log"), s.cfg.LogMaxBytes)
	if err != nil {
		return fmt.Errorf("sidecar: log file: %w", err)
	}
	defer stderr.Close()

	st := newStarter()
	defer st.close()
	var (
		exits       []time.Time // within CrashLoop.Window
		consecutive int         // failed runs since the last ready one
	)
	for first := true; ; first = false {
		if !first {
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
		}
		wasReady, err := s.runOnce(ctx, st, stdout, stderr)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		exits = append(exits, now)
		for len(exits) > 0 && now.Sub(exits[0]) > s.cfg.CrashLoop.Window {
			exits = exits[1:]
		}
		if wasReady {
			consecutive = 0
		}
		consecutive++
		delay := s.cfg.Backoff.Initial
		for i := 1; i < consecutive && delay < s.cfg.Backoff.Max; i++ {
			delay *= 2
		}
		delay = min(delay, s.cfg.Backoff.Max)
		state := StateRestarting
		s.mu.Lock()
		reason := "restarting after: " + s.lastExit.Reason
		s.mu.Unlock()
		if len(exits) >= s.cfg.CrashLoop.Restarts {
			state, delay = StateCrashLoop, s.cfg.Backoff.Max
			reason = fmt.Sprintf("%d exits within %v; retrying every %v; last: %s (see the log tail)",
				len(exits), s.cfg.CrashLoop.Window, delay, reason[len("restarting after: "):])
		}
		s.mu.Lock()
		s.backoff, s.nextRestartAt = delay, now.Add(delay)
		s.setStateLocked(state, reason)
		s.mu.Unlock()
		s.log.Warn(s.cfg.Name+" will be restarted", "in", delay, "state", state, "reason", reason)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// portFree reports whether port can be bound on every interface, as TF
// Serving binds it.
func portFree(port int) bool {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// choosePorts keeps the ports of the previous run (stable addresses for
// operators) unless they were picked automatically and something else has
// taken them since.
func (s *Supervisor) choosePorts() error {
	s.mu.Lock()
	grpcPort, restPort := s.grpcPort, s.restPort
	s.mu.Unlock()
	var err error
	for _, p := range []int{s.cfg.GRPCPort, s.cfg.RESTPort} {
		if p > 0 && !portFree(p) {
			// TF would exit with a bind error buried in its log; say it here
			// too, since the usual cause is another server left running.
			msg := fmt.Sprintf("port %d is in use (another %s or model server still running?)", p, s.cfg.Name)
			s.log.Warn(s.cfg.Name+" cannot listen", "why", msg)
			s.tail.add("infergate: " + msg)
		}
	}
	if s.cfg.GRPCPort != 0 {
		grpcPort = s.cfg.GRPCPort
	} else if grpcPort == 0 || !portFree(grpcPort) {
		if grpcPort, err = freePort(); err != nil {
			return fmt.Errorf("sidecar: picking a gRPC port: %w", err)
		}
	}
	switch {
	case s.cfg.RESTPort == -1:
		restPort = 0
	case s.cfg.RESTPort != 0:
		restPort = s.cfg.RESTPort
	case restPort == 0 || restPort == grpcPort || !portFree(restPort):
		for restPort == 0 || restPort == grpcPort {
			if restPort, err = freePort(); err != nil {
				return fmt.Errorf("sidecar: picking a REST port: %w", err)
			}
		}
	}
	s.mu.Lock()
	s.grpcPort, s.restPort = grpcPort, restPort
	s.mu.Unlock()
	return nil
}

// runOnce starts one process and returns when it has exited (after being
// stopped when ctx ended or it stayed not ready too long). wasReady tells
// whether it became ready, which resets the backoff.
func (s *Supervisor) runOnce(ctx context.Context, st *starter, stdout, stderr *rotatingFile) (wasReady bool, err error) {
	if err := s.choosePorts(); err != nil {
		return false, err
	}
	s.mu.Lock()
	models := s.models
	grpcPort, restPort := s.grpcPort, s.restPort
	addr := s.grpcAddrLocked()
	s.mu.Unlock()
	if err := writeModelsFile(s.cfg.DataDir, models); err != nil {
		return false, err
	}
	client, err := s.clientFor(addr)
	if err != nil {
		return false, err
	}
	args := append(slices.Clone(s.cfg.Args),
		"--port="+strconv.Itoa(grpcPort),
		"--rest_api_port="+strconv.Itoa(restPort),
		"--model_config_file="+filepath.Join(s.cfg.DataDir, ModelsFile),
		"--model_config_file_poll_wait_seconds="+strconv.Itoa(s.cfg.ConfigPollSeconds),
		"--file_system_poll_wait_seconds="+strconv.Itoa(s.cfg.FileSystemPollSeconds),
	)
	args = append(args, s.staticArgs...)
	args = append(args, s.cfg.ExtraFlags...)

	outW := &lineWriter{file: stdout, tail: s.tail}
	errW := &lineWriter{file: stderr, tail: s.tail}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.cfg.DataDir
	cmd.Env = append(os.Environ(), s.cfg.Env...)
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = sysProcAttr()
	// A grandchild holding the pipes open must not block Wait forever.
	cmd.WaitDelay = 2 * time.Second

	s.mu.Lock()
	s.args = args
	s.modelStates = map[string]*modelState{}
	s.mu.Unlock()
	start := time.Now()
	if err := st.start(cmd); err != nil {
		s.log.Error("starting "+s.cfg.Name+" failed", "binary", s.bin, "err", err)
		s.tail.add("infergate: starting " + s.bin + ": " + err.Error())
		s.mu.Lock()
		s.lastExit = &Exit{Code: -1, At: time.Now(), Reason: "could not start: " + err.Error()}
		s.mu.Unlock()
		return false, nil
	}
	pid := cmd.Process.Pid
	s.mu.Lock()
	s.pid, s.startedAt = pid, start
	s.setStateLocked(StateStarting, fmt.Sprintf("waiting for %s (pid %d) to open %s", s.cfg.Name, pid, addr))
	s.mu.Unlock()
	s.log.Info("started "+s.cfg.Name, "pid", pid, "binary", s.bin, "grpc", addr, "rest_port", restPort)

	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	reason, wasReady := s.watch(ctx, client, exited, addr)
	stopped := false
	select {
	case <-exited:
	default:
		stopped = true
		s.terminate(pid, exited)
	}
	// Whatever the child left in its group goes too.
	_ = signalGroup(pid, syscall.SIGKILL)
	outW.flush()
	errW.flush()

	exit := &Exit{Code: -1, At: time.Now(), Uptime: time.Since(start)}
	exit.UptimeSeconds = exit.Uptime.Seconds()
	if ps := cmd.ProcessState; ps != nil {
		exit.Code = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			exit.Signal = ws.Signal().String()
		}
	}
	switch {
	case exit.Signal != "":
		exit.Reason = "killed by signal: " + exit.Signal
	case exit.Code >= 0:
		exit.Reason = fmt.Sprintf("exited with code %d", exit.Code)
	default:
		exit.Reason = fmt.Sprintf("ended: %v", waitErr)
	}
	if reason != "" {
		exit.Reason = reason + "; " + exit.Reason
	}
	s.mu.Lock()
	s.pid = 0
	s.lastExit = exit
	for _, m := range s.modelStates {
		m.ready = false
	}
	if ctx.Err() == nil {
		s.setStateLocked(StateRestarting, s.cfg.Name+" "+exit.Reason)
	}
	s.mu.Unlock()
	s.ready.Store(false)
	if ctx.Err() != nil && stopped {
		s.log.Info("stopped "+s.cfg.Name, "pid", pid, "how", exit.Reason)
	} else {
		s.log.Warn(s.cfg.Name+" exited", "pid", pid, "reason", exit.Reason, "uptime", exit.Uptime.Round(time.Millisecond),
			"last_log", s.tail.last(5))
	}
	return wasReady, nil
}

// terminate sends SIGTERM to the child's group and SIGKILL after the grace
// period, and waits for the child to be reaped.
func (s *Supervisor) terminate(pid int, exited <-chan struct{}) {
	if err := signalGroup(pid, syscall.SIGTERM); err != nil {
		s.log.Debug("SIGTERM", "pid", pid, "err", err)
	}
	t := time.NewTimer(s.cfg.GracePeriod)
	defer t.Stop()
	select {
	case <-exited:
		return
	case <-t.C:
	}
	s.log.Warn(s.cfg.Name+" did not stop within the grace period; killing it", "pid", pid, "grace", s.cfg.GracePeriod)
	_ = signalGroup(pid, syscall.SIGKILL)
	<-exited
}

// watch polls readiness until the process exits, ctx ends, or the process
// stays not ready for ReadyTimeout; in the last case it returns why.
func (s *Supervisor) watch(ctx context.Context, client *tfserving.Client, exited <-chan struct{}, addr string) (reason string, wasReady bool) {
	notReadySince := time.Now()
	ready := false
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-exited:
			return "", wasReady
		case <-ctx.Done():
			s.setState(StateStopped, "stopping")
			return "", wasReady
		case <-s.kick:
		case <-t.C:
		}
		ok, state, detail := s.probe(ctx, client, addr)
		select {
		case <-exited:
			// The probe failed because the process is gone: report the
			// exit, not a readiness failure.
			return "", wasReady
		default:
		}
		if ctx.Err() != nil {
			continue
		}
		switch {
		case ok && !ready:
			ready, wasReady = true, true
			s.setState(StateReady, "serving "+detail)
			s.log.Info(s.cfg.Name+" is ready", "took", time.Since(notReadySince).Round(time.Millisecond), "models", detail)
		case ok:
		case !ok:
			if ready {
				ready = false
				notReadySince = time.Now()
				s.log.Warn(s.cfg.Name+" is no longer ready", "why", detail)
			}
			waited := time.Since(notReadySince)
			s.setState(state, fmt.Sprintf("%s (not ready for %v of ready_timeout %v)", detail, waited.Round(time.Second), s.cfg.ReadyTimeout))
			if waited > s.cfg.ReadyTimeout {
				reason = fmt.Sprintf("not ready within %v (%s): stopped", s.cfg.ReadyTimeout, detail)
				s.log.Error(s.cfg.Name+" did not become ready; restarting it", "ready_timeout", s.cfg.ReadyTimeout, "why", detail)
				return reason, wasReady
			}
		}
		if ready {
			t.Reset(s.cfg.HealthInterval)
		} else {
			t.Reset(s.cfg.ReadyPoll)
		}
	}
}
