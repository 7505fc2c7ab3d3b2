package sidecar

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
)

// Predictor is the sidecar as the pipeline's model server. While the child
// is not ready every call fails with codes.Unavailable, which the pipeline
// retries and then waits on (circuit open) instead of dead-lettering: a
// restarting model server must never turn into lost requests.
type Predictor struct{ s *Supervisor }

// Predictor returns the supervisor's predictor (the same one every call).
func (s *Supervisor) Predictor() *Predictor { return s.predictor }

func (s *Supervisor) readyClient() (*tfserving.Client, error) {
	if s.ready.Load() {
		if c := s.currentClient(); c != nil {
			return c, nil
		}
	}
	s.mu.Lock()
	st, reason := s.state, s.reason
	s.mu.Unlock()
	return nil, status.Errorf(codes.Unavailable, "%s sidecar is %s: %s", s.cfg.Name, st, reason)
}

// Predict forwards to the child. The version that answered is compared
// with the expected one: TF Serving keeps serving an older version when a
// newer one fails to load, and says so only in its log.
func (p *Predictor) Predict(ctx context.Context, spec model.Spec, inputs map[string]*tensor.Tensor) (*model.Result, error) {
	c, err := p.s.readyClient()
	if err != nil {
		return nil, err
	}
	res, err := c.Predict(ctx, spec, inputs)
	if err != nil {
		if status.Code(err) == codes.Unavailable {
			p.s.kickProbe()
		}
		return nil, err
	}
	p.s.observeServed(spec, res.Version)
	return res, nil
}

// Metadata forwards to the child, with the same readiness gate.
func (p *Predictor) Metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error) {
	c, err := p.s.readyClient()
	if err != nil {
		return nil, err
	}
	md, err := c.Metadata(ctx, spec)
	if err != nil && status.Code(err) == codes.Unavailable {
		p.s.kickProbe()
	}
	return md, err
}

// Status forwards GetModelStatus (not gated: it is how one looks at a
// loading server).
func (p *Predictor) Status(ctx context.Context, name string, version int64) ([]tfserving.VersionStatus, error) {
	c := p.s.currentClient()
	if c == nil {
		return nil, status.Error(codes.Unavailable, p.s.cfg.Name+" sidecar has not started")
	}
	return c.Status(ctx, name, version)
}

// observeServed records the version that answered a request and warns when
// it is not the one the configuration says should answer.
func (s *Supervisor) observeServed(spec model.Spec, served int64) {
	if served == 0 || spec.Version != 0 {
		return // the server did not say, or the caller chose the version
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := s.modelStates[spec.Name]
	if ms == nil {
		return
	}
	var expected int64
	key := ""
	if spec.Label != "" {
		key = "label " + spec.Label
		for _, m := range s.models {
			if m.Name == spec.Name {
				expected = m.Labels[spec.Label]
			}
		}
	} else {
		ms.served = served
		expected = ms.expected
	}
	if expected == 0 {
		return
	}
	if served == expected {
		if ms.servedWarnKey == key {
			ms.servedWarn, ms.servedWarnKey = "", ""
		}
		return
	}
	state := ""
	for _, v := range ms.versions {
		if v.Version == expected {
			state = v.State
			if v.ErrorMessage != "" {
				state += ": " + v.ErrorMessage
			}
		}
	}
	if strings.HasPrefix(state, servingpb.ModelVersionStatus_LOADING.String()) || strings.HasPrefix(state, servingpb.ModelVersionStatus_START.String()) {
		return // a rollover in progress, not a failure
	}
	msg := fmt.Sprintf("expected version %d, served %d: load of %d failed? see log tail", expected, served, expected)
	if state != "" {
		msg += fmt.Sprintf(" (version %d: %s)", expected, state)
	}
	if key != "" {
		msg = key + ": " + msg
	}
	if msg != ms.servedWarn {
		s.log.Warn(s.cfg.Name+" serves another version than configured", "model", spec.Name, "warning", msg)
	}
	ms.servedWarn, ms.servedWarnKey = msg, key
}

// expectedVersion is the version a request without version or label should
// reach under m's policy; 0 when it cannot be known (a remote base path,
// no version directory yet).
func expectedVersion(m tfserving.ModelConfig) int64 {
	if len(m.Policy.Specific) > 0 {
		return slices.Max(m.Policy.Specific)
	}
	if strings.Contains(m.BasePath, "://") {
		return 0
	}
	entries, err := os.ReadDir(m.BasePath)
	if err != nil {
		return 0
	}
	var best int64
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		v, err := strconv.ParseInt(e.Name(), 10, 64)
		if err == nil && v > best {
			best = v
		}
	}
	return best
}

// probeTimeout bounds one readiness round.
const probeTimeout = 5 * time.Second

// probe asks the child for every model's status. ok means each model has
// an AVAILABLE version; otherwise state and detail say what is missing.
func (s *Supervisor) probe(ctx context.Context, client *tfserving.Client, addr string) (ok bool, state State, detail string) {
	s.mu.Lock()
	models := slices.Clone(s.models)
	s.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	type result struct {
		versions []tfserving.VersionStatus
		err      error
	}
	results := make([]result, len(models))
	for i, m := range models {
		results[i].versions, results[i].err = client.Status(pctx, m.Name, 0)
		if c := status.Code(results[i].err); c == codes.Unavailable || c == codes.DeadlineExceeded || c == codes.Canceled {
			s.mu.Lock()
			for _, ms := range s.modelStates {
				ms.ready = false
			}
			s.mu.Unlock()
			return false, StateStarting, fmt.Sprintf("waiting for %s to answer on %s (it opens its ports only once every model is loaded): %s",
				s.cfg.Name, addr, status.Convert(results[i].err).Message())
		}
	}
	var waiting, serving []string
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range models {
		ms := s.modelStates[m.Name]
		if ms == nil {
			ms = &modelState{}
			s.modelStates[m.Name] = ms
		}
		ms.expected = expectedVersion(m)
		r := results[i]
		if r.err != nil {
			ms.ready, ms.versions = false, nil
			waiting = append(waiting, fmt.Sprintf("%s: %s", m.Name, status.Convert(r.err).Message()))
			continue
		}
		ms.versions = r.versions
		var avail []string
		var other []string
		for _, v := range r.versions {
			if v.Available() {
				avail = append(avail, strconv.FormatInt(v.Version, 10))
				continue
			}
			d := fmt.Sprintf("version %d %s", v.Version, v.State)
			if v.ErrorCode != 0 {
				d += ": " + v.ErrorMessage
			}
			other = append(other, d)
		}
		ms.ready = len(avail) > 0
		ms.loadWarn = loadWarning(ms)
		if ms.loadWarn != "" && ms.loadWarn != ms.loggedLoadWarn {
			s.log.Warn(s.cfg.Name+": a configured version is not serving", "model", m.Name, "warning", ms.loadWarn)
		}
		ms.loggedLoadWarn = ms.loadWarn
		if ms.ready {
			serving = append(serving, fmt.Sprintf("%s (version %s)", m.Name, strings.Join(avail, ",")))
		} else if len(other) > 0 {
			waiting = append(waiting, m.Name+": "+strings.Join(other, "; "))
		} else {
			waiting = append(waiting, m.Name+": no version loaded yet")
		}
	}
	if len(waiting) > 0 {
		return false, StateLoading, "loading models: " + strings.Join(waiting, "; ")
	}
	return true, StateReady, strings.Join(serving, ", ")
}

// loadWarning reports a configured version that failed to load while the
// model still serves another.
func loadWarning(ms *modelState) string {
	if ms.expected == 0 {
		return ""
	}
	for _, v := range ms.versions {
		if v.Version == ms.expected && v.ErrorCode != 0 {
			return fmt.Sprintf("version %d failed to load (%s: %s); see log tail", v.Version, v.State, v.ErrorMessage)
		}
	}
	return ""
}
