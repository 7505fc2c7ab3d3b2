package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// component is one part of the appliance as the supervisor sees it.
//
// start constructs it (validating, binding listeners, opening files) and
// returns once it can be used by the components after it; a failure there
// rolls back what started before. run then blocks until its context ends and
// returns only after the component's goroutines exited; a component whose run
// returns early (error or not) stops the whole appliance, like a member of an
// oklog/run group. stop (optional) releases what start acquired after run
// returned, or when run never started.
//
// oklog/run is not used because its interrupts are not sequential: the
// pipeline must finish draining (produce, commit) before the broker it talks
// to closes, and the store must close last.
type component struct {
	name  string
	start func(ctx context.Context) error
	run   func(ctx context.Context) error
	stop  func() error
	// ready reports whether the component can do its job now; nil means
	// "ready once started".
	ready func() error
	// readyTimeout, if set, makes start wait (polling ready) before the next
	// component starts: the pipeline must not start before the model server
	// answers.
	readyTimeout time.Duration
}

type runningComponent struct {
	*component
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid after done is closed
}

// supervisor starts components in order and stops them in reverse.
type supervisor struct {
	logger *slog.Logger

	mu       sync.Mutex
	running  []*runningComponent
	starting string // name of the component being started, for Ready
	started  bool   // every component started
	stopping bool
	exited   chan *runningComponent // a run returned
}

func newSupervisor(logger *slog.Logger) *supervisor {
	return &supervisor{logger: logger, exited: make(chan *runningComponent, 64)}
}

// run starts comps in order, waits until ctx ends or a component's run
// returns, then stops everything in reverse order. It returns the error that
// stopped the appliance (nil when ctx ended) joined with errors of stopping.
func (s *supervisor) run(ctx context.Context, comps []*component) error {
	if err := s.startAll(ctx, comps); err != nil {
		stopErr := s.stopAll()
		if ctx.Err() != nil {
			// Interrupted while starting (Ctrl-C): a clean stop, not a failure.
			s.logger.Info("start interrupted", "reason", context.Cause(ctx), "during", err)
			return stopErr
		}
		return errors.Join(err, stopErr)
	}
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	s.logger.Info("all components started")

	var cause error
	select {
	case <-ctx.Done():
		s.logger.Info("shutting down", "reason", context.Cause(ctx))
	case rc := <-s.exited:
		if rc.err != nil {
			cause = fmt.Errorf("%s: %w", rc.name, rc.err)
		} else {
			cause = fmt.Errorf("%s stopped unexpectedly", rc.name)
		}
		s.logger.Error("a component stopped; shutting down", "component", rc.name, "err", cause)
	}
	return errors.Join(cause, s.stopAll())
}

func (s *supervisor) startAll(ctx context.Context, comps []*component) error {
	for _, c := range comps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted while starting: %w", context.Cause(ctx))
		}
		// A component that already died during start-up stops the start.
		select {
		case rc := <-s.exited:
			return fmt.Errorf("%s stopped during start-up: %w", rc.name, orStopped(rc.err))
		default:
		}
		s.mu.Lock()
		s.starting = c.name
		s.mu.Unlock()
		began := time.Now()
		if c.start != nil {
			if err := c.start(ctx); err != nil {
				if c.stop != nil {
					if serr := c.stop(); serr != nil {
						s.logger.Warn("cleaning up after a failed start", "component", c.name, "err", serr)
					}
				}
				return err
			}
		}
		rc := &runningComponent{component: c, done: make(chan struct{})}
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		rc.cancel = cancel
		s.mu.Lock()
		s.running = append(s.running, rc)
		s.starting = ""
		s.mu.Unlock()
		if c.run != nil {
			go func() {
				rc.err = c.run(runCtx)
				close(rc.done)
				s.exited <- rc
			}()
		} else {
			close(rc.done)
		}
		if c.readyTimeout > 0 && c.ready != nil {
			if err := s.waitReady(ctx, rc); err != nil {
				return err
			}
		}
		s.logger.Debug("started", "component", c.name, "took", time.Since(began).Round(time.Millisecond))
	}
	return nil
}

func (s *supervisor) waitReady(ctx context.Context, rc *runningComponent) error {
	deadline := time.NewTimer(rc.readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := rc.ready()
		if err == nil {
			return nil
		}
		if errors.Is(err, errNeverReady) {
			return fmt.Errorf("%s cannot become ready: %w", rc.name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s: %w", rc.name, context.Cause(ctx))
		case <-rc.done:
			return fmt.Errorf("%s stopped during start-up: %w", rc.name, orStopped(rc.err))
		case <-deadline.C:
			return fmt.Errorf("%s not ready after %s: %w", rc.name, rc.readyTimeout, err)
		case <-tick.C:
		}
	}
}

// errNeverReady marks a ready error that waiting cannot fix (a model whose
// every version failed to load): start-up fails at once instead of at the
// end of readyTimeout.
var errNeverReady = errors.New("it will not become ready without a change")

func orStopped(err error) error {
	if err == nil {
		return errors.New("returned without an error")
	}
	return err
}

// stopAll stops the running components, last started first, each one
// completely before the next.
func (s *supervisor) stopAll() error {
	s.mu.Lock()
	s.stopping = true
	running := s.running
	s.mu.Unlock()
	var errs []error
	for i := len(running) - 1; i >= 0; i-- {
		rc := running[i]
		began := time.Now()
		rc.cancel()
		<-rc.done
		if rc.err != nil && !errors.Is(rc.err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s: %w", rc.name, rc.err))
		}
		if rc.stop != nil {
			if err := rc.stop(); err != nil {
				errs = append(errs, fmt.Errorf("stopping %s: %w", rc.name, err))
			}
		}
		if rc.run != nil || rc.stop != nil {
			s.logger.Info("stopped", "component", rc.name, "took", time.Since(began).Round(time.Millisecond))
		}
	}
	return errors.Join(errs...)
}

// ErrNotReady is what Ready's errors match (errors.Is).
var ErrNotReady = errors.New("not ready")

// notReady lists what is not ready; its text leaves "not ready" to the
// caller (/readyz says "not ready: " + the list).
type notReady struct{ problems []string }

func (e *notReady) Error() string        { return strings.Join(e.problems, "; ") }
func (e *notReady) Is(target error) bool { return target == ErrNotReady }

// ready returns nil when every component is running and ready, else an
// error naming each one that is not.
func (s *supervisor) ready(all []*component) error {
	s.mu.Lock()
	stopping, starting, started := s.stopping, s.starting, s.started
	running := map[string]*runningComponent{}
	for _, rc := range s.running {
		running[rc.name] = rc
	}
	s.mu.Unlock()
	if stopping {
		return &notReady{[]string{"stopping"}}
	}
	var problems []string
	for _, c := range all {
		rc, ok := running[c.name]
		switch {
		case !ok && c.name == starting:
			problems = append(problems, c.name+": starting")
		case !ok:
			problems = append(problems, c.name+": not started")
		default:
			select {
			case <-rc.done:
				if rc.run != nil {
					problems = append(problems, c.name+": stopped")
					continue
				}
			default:
			}
			if c.ready != nil {
				if err := c.ready(); err != nil {
					problems = append(problems, c.name+": "+err.Error())
				}
			}
		}
	}
	if len(problems) > 0 {
		return &notReady{problems}
	}
	if !started {
		return &notReady{[]string{"starting"}}
	}
	return nil
}
