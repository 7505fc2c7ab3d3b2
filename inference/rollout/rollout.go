// Package rollout moves a model's traffic from one version to another on live
// requests: it pins the version the pipeline uses (rollback), shadows a
// candidate on a sampled copy of the traffic off the hot path, compares the
// two per request (stored in the store with a retention), splits traffic by
// a stable hash of the record key in planned steps, and rolls back by itself
// when the candidate breaks a guard.
//
// The Controller is the pipeline's Router and Observer (both owned by the
// pipeline); docs/models.md describes the operations.
package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Modes of a rollout.
const (
	// ModeShadow: the stable version answers every request; the candidate
	// scores a sampled copy and is compared.
	ModeShadow = "shadow"
	// ModeSplit: a share of the keys (Percent) is answered by the candidate,
	// the rest by the stable version; a sampled copy of each side is scored
	// by the other, so the comparison continues.
	ModeSplit = "split"
)

// States of a rollout.
const (
	StateRunning    = "running"
	StatePromoted   = "promoted"    // the candidate serves everything (and is pinned)
	StateAborted    = "aborted"     // by an operator: the stable version serves everything
	StateRolledBack = "rolled_back" // by a guard
)

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New(`a duration is a string such as "30s" or a number of seconds`)
		}
		*d = Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Step is one stage of a planned split: Percent of the keys go to the
// candidate for Hold.
type Step struct {
	Percent float64  `json:"percent"`
	Hold    Duration `json:"hold"`
}

// ParseSteps reads "10%:30s,50%:1m,100%" (the last step's hold may be
// left out: it holds until promoted).
func ParseSteps(s string) ([]Step, error) {
	var out []Step
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		pct, hold, _ := strings.Cut(f, ":")
		p, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(pct), "%"), 64)
		if err != nil {
			return nil, fmt.Errorf("step %q: percent: %w", f, err)
		}
		st := Step{Percent: p}
		if hold != "" {
			d, err := time.ParseDuration(strings.TrimSpace(hold))
			if err != nil {
				return nil, fmt.Errorf("step %q: hold: %w", f, err)
			}
			st.Hold = Duration(d)
		}
		out = append(out, st)
	}
	return out, nil
}

// Guards end a split by themselves: when the candidate breaks one after at
// least MinRequests of its answers (or comparisons), all traffic goes back
// to the stable version at once. A zero bound is not checked.
type Guards struct {
	MaxErrorRate    float64 `json:"max_error_rate,omitempty"`   // share of the candidate's requests that fail
	MaxP99Ms        float64 `json:"max_p99_ms,omitempty"`       // the candidate's model call p99, milliseconds
	MaxDisagreement float64 `json:"max_disagreement,omitempty"` // share of compared requests that disagree
	MinRequests     int     `json:"min_requests,omitempty"`     // default 20
}

// Spec is what starts a rollout.
type Spec struct {
	Model string `json:"model"`
	// Stable is the version serving now; 0 means the version the pipeline
	// uses now (pinned, or the highest available).
	Stable int64 `json:"stable"`
	// Candidate is the version to try; 0 means the highest available.
	Candidate int64 `json:"candidate"`
	// Mode is ModeShadow or ModeSplit (default: split when Steps or
	// Percent are given, else shadow).
	Mode string `json:"mode"`
	// Sample is the share of requests compared (0 < Sample <= 1; default 1).
	Sample float64 `json:"sample"`
	// Percent starts a split by hand at this share of keys.
	Percent float64 `json:"percent,omitempty"`
	Steps   []Step  `json:"steps,omitempty"`
	Guards  Guards  `json:"guards"`
	// Threshold turns a score into a decision (score >= Threshold); the
	// report counts the requests whose decision flips. Default 0.5.
	Threshold float64 `json:"threshold"`
	// Tolerance is the largest difference of two scores that still agree.
	// Default 1e-6.
	Tolerance float64 `json:"tolerance"`
	// Output is the output compared ("" : the first by name).
	Output string `json:"output,omitempty"`
}

// Rollout is a rollout's state, as the API shows it.
type Rollout struct {
	ID string `json:"id"`
	Spec
	State       string    `json:"state"`
	Percent     float64   `json:"percent"` // share of keys the candidate answers now
	StepIndex   int       `json:"step"`    // -1: moved by hand
	StepStarted time.Time `json:"step_started"`
	StartedAt   time.Time `json:"started_at"`
	EndedAt     time.Time `json:"ended_at,omitzero"`
	// Reason says why it ended (the guard broken and its value, or who
	// aborted); Evidence holds the candidate's figures at that moment.
	Reason   string    `json:"reason,omitempty"`
	Evidence *Evidence `json:"evidence,omitempty"`
	// Replay is what a replay (mode replay) did with its dataset.
	Replay *ReplayStats `json:"replay,omitempty"`
}

// Evidence is what a guard saw.
type Evidence struct {
	CandidateRequests int64   `json:"candidate_requests"`
	CandidateErrors   int64   `json:"candidate_errors"`
	ErrorRate         float64 `json:"error_rate"`
	P99Ms             float64 `json:"p99_ms"`
	Compared          int64   `json:"compared"`
	Disagreement      float64 `json:"disagreement"`
}

func (s *Spec) normalize() error {
	if s.Model == "" {
		return errors.New("model: must be set")
	}
	if s.Sample == 0 {
		s.Sample = 1
	}
	if s.Sample < 0 || s.Sample > 1 {
		return fmt.Errorf("sample: %v is not a share between 0 and 1", s.Sample)
	}
	if s.Mode == "" {
		s.Mode = ModeShadow
		if len(s.Steps) > 0 || s.Percent > 0 {
			s.Mode = ModeSplit
		}
	}
	if s.Mode != ModeShadow && s.Mode != ModeSplit {
		return fmt.Errorf("mode: %q is neither shadow nor split", s.Mode)
	}
	if s.Percent < 0 || s.Percent > 100 {
		return fmt.Errorf("percent: %v is not between 0 and 100", s.Percent)
	}
	prev := -1.0
	for i, st := range s.Steps {
		if st.Percent <= prev || st.Percent > 100 || st.Percent < 0 {
			return fmt.Errorf("steps[%d]: percent %v: steps must increase, between 0 and 100", i, st.Percent)
		}
		if st.Hold < 0 {
			return fmt.Errorf("steps[%d]: hold is negative", i)
		}
		prev = st.Percent
	}
	if s.Threshold == 0 {
		s.Threshold = 0.5
	}
	if s.Tolerance == 0 {
		s.Tolerance = 1e-6
	}
	if s.Tolerance < 0 {
		return errors.New("tolerance: negative")
	}
	if s.Guards.MinRequests <= 0 {
		s.Guards.MinRequests = 20
	}
	if s.Guards.MaxErrorRate < 0 || s.Guards.MaxDisagreement < 0 || s.Guards.MaxP99Ms < 0 {
		return errors.New("guards: bounds must not be negative")
	}
	return nil
}

// Errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid argument")
	ErrConflict = errors.New("conflict")
)

// kinded gives err the kind (a sentinel above) without adding the kind's
// text: err already says what is wrong, often in the same words ("invalid
// argument: ..." from the store), and "conflict: conflict: ..." helps nobody.
type kinded struct{ kind, err error }

func (k kinded) Error() string   { return k.err.Error() }
func (k kinded) Unwrap() []error { return []error{k.kind, k.err} }
