package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/internal/field"
	"github.com/infergate/infergate/store"
)

// Predictor scores the shadow copies (the same model server the pipeline
// calls).
type Predictor interface {
	Predict(ctx context.Context, spec model.Spec, inputs map[string]*tensor.Tensor) (*model.Result, error)
}

// Config tunes a Controller.
type Config struct {
	// QueueSize is how many observed batches may wait for the shadow; more
	// are dropped (counted), so the shadow never holds the pipeline up.
	QueueSize int
	// Retention is how long per-request comparisons are kept.
	Retention time.Duration
	// CheckInterval is how often guards are checked and steps advanced.
	CheckInterval time.Duration
	// CallTimeout bounds one shadow model call.
	CallTimeout time.Duration
	// BusyShare is the share of wall time the shadow may spend scoring while
	// the pipeline has a backlog (Observation.Busy seen in the last second);
	// beyond it sampled requests are skipped (counted as dropped). When the
	// pipeline keeps up, the shadow scores everything the queue holds.
	BusyShare float64
	// MaxReportRecords bounds the comparisons one report reads (the newest
	// are left out beyond it).
	MaxReportRecords int
	// Now is the clock; nil means time.Now (tests inject a fake one).
	Now func() time.Time
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{QueueSize: 64, Retention: 24 * time.Hour, CheckInterval: time.Second, CallTimeout: 10 * time.Second,
		MaxReportRecords: 200_000, BusyShare: 0.2}
}

// Validate reports every invalid field as a *field.Error. It changes
// nothing: defaults come from DefaultConfig.
func (c *Config) Validate() error {
	var v field.Errors
	if c.QueueSize < 1 {
		v.Add(&c.QueueSize, "QueueSize", "must be at least 1, got %d", c.QueueSize)
	}
	if c.Retention < 0 {
		v.Add(&c.Retention, "Retention", "must not be negative, got %v", c.Retention)
	}
	if c.CheckInterval <= 0 {
		v.Add(&c.CheckInterval, "CheckInterval", "must be more than 0, got %v", c.CheckInterval)
	}
	if !(c.BusyShare > 0 && c.BusyShare <= 1) {
		v.Add(&c.BusyShare, "BusyShare", "must be more than 0 and at most 1, got %v", c.BusyShare)
	}
	if c.CallTimeout <= 0 {
		v.Add(&c.CallTimeout, "CallTimeout", "must be more than 0, got %v", c.CallTimeout)
	}
	if c.MaxReportRecords < 1 {
		v.Add(&c.MaxReportRecords, "MaxReportRecords", "must be at least 1, got %d", c.MaxReportRecords)
	}
	return v.Err()
}

// Versions lists a model's AVAILABLE versions, highest first (nil, nil when
// the model server cannot tell, e.g. an external fleet).
type Versions func(ctx context.Context, model string) ([]int64, error)

// Controller owns pins and rollouts. It is the pipeline's Router and
// Observer.
type Controller struct {
	cfg      Config
	log      *slog.Logger
	st       *store.Store
	pred     Predictor
	versions Versions
	audit    func(ctx context.Context, action, detail string)
	m        *metrics

	mu       sync.Mutex // guards pins, rollouts, lives and persistence
	pins     map[string]int64
	rollouts map[string]*Rollout // by model: the running one, or the last one
	lives    map[string]*live    // by rollout id

	replays  map[string]*Rollout // by dataset: its last replay
	busy     map[string]bool     // datasets being captured, replayed or deleted
	requests Requests            // where captures read live requests

	table   atomic.Pointer[table] // what Route and Observe read
	jobs    chan *job
	dropped atomic.Int64
	// busyUntil (unix ns) is a second after the last observation of a
	// pipeline with a backlog; until then the shadow keeps to BusyShare.
	busyUntil atomic.Int64
	yielded   atomic.Int64 // of dropped: skipped to keep to BusyShare

	holder    func(Holds)   // SetHolder; called by Run
	holds     Holds         // the last computed, guarded by mu
	holdsSeen chan struct{} // signalled when holds change
}

// Holds are the versions a model server must keep loaded whatever its
// version policy says, by model, each with why: the pinned version, and a
// running rollout's stable and candidate versions (requests are routed to
// them by number, so unloading one fails them).
type Holds map[string]map[int64]string

// SetHolder has Run call fn with the holds when it starts and whenever they
// change (not under the controller's lock: fn may load a model). Call it
// before Run.
func (c *Controller) SetHolder(fn func(Holds)) { c.holder = fn }

// Holds returns the versions held now.
func (c *Controller) Holds() Holds {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(Holds, len(c.holds))
	for m, vs := range c.holds {
		out[m] = maps.Clone(vs)
	}
	return out
}

// holdsLocked computes the holds from the pins and the running rollouts.
func (c *Controller) holdsLocked() Holds {
	h := Holds{}
	add := func(model string, v int64, why string) {
		if v <= 0 {
			return
		}
		if h[model] == nil {
			h[model] = map[int64]string{}
		}
		if prev := h[model][v]; prev != "" {
			why = prev + "; " + why
		}
		h[model][v] = why
	}
	for m, v := range c.pins {
		add(m, v, "pinned")
	}
	for m, r := range c.rollouts {
		if r.State == StateRunning {
			add(m, r.Stable, "stable of rollout "+r.ID)
			add(m, r.Candidate, "candidate of rollout "+r.ID)
		}
	}
	return h
}

var (
	_ pipeline.Router   = (*Controller)(nil)
	_ pipeline.Observer = (*Controller)(nil)
)

// settingKey is where pins and rollouts are kept in the store.
const settingKey = "rollout"

type persisted struct {
	Pins     map[string]int64    `json:"pins"`
	Rollouts map[string]*Rollout `json:"rollouts"`
	Replays  map[string]*Rollout `json:"replays,omitempty"`
}

// New loads the pins and rollouts kept in st. audit records admin actions
// (nil: none).
func New(cfg Config, logger *slog.Logger, st *store.Store, pred Predictor, versions Versions, audit func(ctx context.Context, action, detail string), reg prometheus.Registerer) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil || pred == nil {
		return nil, errors.New("rollout: a store and a predictor are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if audit == nil {
		audit = func(context.Context, string, string) {}
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, log: logger, st: st, pred: pred, versions: versions, audit: audit, m: m,
		pins: map[string]int64{}, rollouts: map[string]*Rollout{}, lives: map[string]*live{},
		replays: map[string]*Rollout{}, busy: map[string]bool{},
		jobs: make(chan *job, cfg.QueueSize), holdsSeen: make(chan struct{}, 1)}
	raw, err := st.GetSetting(settingKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("rollout: reading its state: %w", err)
	default:
		var p persisted
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("rollout: its state in the store is damaged: %w", err)
		}
		if p.Pins != nil {
			c.pins = p.Pins
		}
		if p.Rollouts != nil {
			c.rollouts = p.Rollouts
		}
		if p.Replays != nil {
			c.replays = p.Replays
		}
	}
	for _, r := range c.rollouts {
		c.lives[r.ID] = newLive()
		c.m.percent.WithLabelValues(r.Model).Set(r.Percent)
	}
	c.publishLocked()
	return c, nil
}

// Run scores shadow copies and checks guards and steps until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		budget := &shadowBudget{share: c.cfg.BusyShare}
		for {
			select {
			case <-ctx.Done():
				return
			case j := <-c.jobs:
				c.m.queue.Set(float64(len(c.jobs)))
				if !budget.take(time.Now(), c.busyUntil.Load()) {
					c.dropped.Add(int64(len(j.reqs)))
					c.yielded.Add(int64(len(j.reqs)))
					c.m.dropped.WithLabelValues(j.r.model).Add(float64(len(j.reqs)))
					continue
				}
				start := time.Now()
				c.shadow(ctx, j)
				budget.spent(time.Since(start))
			}
		}
	}()
	if c.holder != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Once at the start: the pins and rollouts kept in the store
			// hold versions the model server loaded before this ran.
			c.holder(c.Holds())
			for {
				select {
				case <-ctx.Done():
					return
				case <-c.holdsSeen:
					c.holder(c.Holds())
				}
			}
		}()
	}
	t := time.NewTicker(c.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			c.check()
		}
	}
}

// table is the snapshot the hot path reads.
type table struct {
	models map[string]*entry
}

type entry struct {
	pin int64
	r   *active // nil: no running rollout
}

type active struct {
	id, model, mode   string
	stable, candidate int64
	percent           float64
	sample            float64
	output            string
	tolerance         float64
	live              *live
}

func (c *Controller) publishLocked() {
	t := &table{models: map[string]*entry{}}
	for m, v := range c.pins {
		t.models[m] = &entry{pin: v}
	}
	for m, r := range c.rollouts {
		if r.State != StateRunning {
			continue
		}
		e := t.models[m]
		if e == nil {
			e = &entry{}
			t.models[m] = e
		}
		e.r = &active{id: r.ID, model: m, mode: r.Mode, stable: r.Stable, candidate: r.Candidate, percent: r.Percent,
			sample: r.Sample, output: r.Output, tolerance: r.Tolerance, live: c.lives[r.ID]}
	}
	c.table.Store(t)
	if h := c.holdsLocked(); !maps.EqualFunc(h, c.holds, maps.Equal) {
		c.holds = h
		select {
		case c.holdsSeen <- struct{}{}:
		default: // one pending signal reads the newest holds
		}
	}
}

func (c *Controller) persistLocked() error {
	raw, err := json.Marshal(persisted{Pins: c.pins, Rollouts: c.rollouts, Replays: c.replays})
	if err != nil {
		return err
	}
	if err := c.st.PutSetting(settingKey, raw); err != nil {
		return fmt.Errorf("rollout: saving its state: %w", err)
	}
	return nil
}

// bucket places a key on [0, 100) by a stable hash (FNV-1a), salted so the
// split and the sample are independent.
func bucket(salt byte, key []byte) float64 {
	h := fnv.New64a()
	h.Write([]byte{salt})
	h.Write(key)
	return float64(h.Sum64()%10000) / 100
}

// Route implements pipeline.Router.
func (c *Controller) Route(name string, key []byte) int64 {
	e := c.table.Load().models[name]
	if e == nil {
		return 0
	}
	if r := e.r; r != nil {
		if r.mode == ModeSplit && r.percent > 0 && bucket('s', key) < r.percent {
			return r.candidate
		}
		return r.stable
	}
	return e.pin
}

// Pins returns the pinned versions by model.
func (c *Controller) Pins() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.pins)
}

// Serving is the version the pipeline sends a model's unversioned requests
// to outside a split: the pin, else 0 (the latest).
func (c *Controller) Serving(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.rollouts[name]; r != nil && r.State == StateRunning {
		return r.Stable
	}
	return c.pins[name]
}

// Pin sends a model's unversioned requests to version (0: the latest
// available again). A running rollout of the model is a conflict.
func (c *Controller) Pin(ctx context.Context, name string, version int64) error {
	if version < 0 {
		return fmt.Errorf("%w: version %d is negative", ErrInvalid, version)
	}
	if version > 0 {
		if err := c.checkAvailable(ctx, name, version); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.rollouts[name]; r != nil && r.State == StateRunning {
		return fmt.Errorf("%w: rollout %s of model %s is running: promote or abort it first", ErrConflict, r.ID, name)
	}
	prev := c.pins[name]
	if version == 0 {
		delete(c.pins, name)
	} else {
		c.pins[name] = version
	}
	if err := c.persistLocked(); err != nil {
		if prev == 0 {
			delete(c.pins, name)
		} else {
			c.pins[name] = prev
		}
		return err
	}
	c.publishLocked()
	return nil
}

func (c *Controller) checkAvailable(ctx context.Context, name string, versions ...int64) error {
	if c.versions == nil {
		return nil
	}
	avail, err := c.versions(ctx, name)
	if err != nil {
		return err
	}
	if avail == nil {
		return nil // the model server cannot tell
	}
	for _, v := range versions {
		if !slices.Contains(avail, v) {
			return fmt.Errorf("%w: version %d of model %s is not available (available: %v)", ErrInvalid, v, name, avail)
		}
	}
	return nil
}

// Start begins a rollout of spec.Model.
func (c *Controller) Start(ctx context.Context, spec Spec) (*Rollout, error) {
	if err := spec.normalize(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var avail []int64
	if c.versions != nil {
		var err error
		if avail, err = c.versions(ctx, spec.Model); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	if r := c.rollouts[spec.Model]; r != nil && r.State == StateRunning {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: rollout %s of model %s is running", ErrConflict, r.ID, spec.Model)
	}
	pin := c.pins[spec.Model]
	c.mu.Unlock()
	if spec.Stable == 0 {
		spec.Stable = pin
		if spec.Stable == 0 && len(avail) > 0 {
			spec.Stable = avail[0]
		}
	}
	if spec.Candidate == 0 && len(avail) > 0 && avail[0] != spec.Stable {
		spec.Candidate = avail[0]
	}
	if err := checkPair(spec.Model, spec.Stable, spec.Candidate, avail); err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	r := &Rollout{ID: fmt.Sprintf("%s-%d", spec.Model, now.UnixMilli()), Spec: spec, State: StateRunning,
		StartedAt: now, StepStarted: now, StepIndex: -1}
	if spec.Mode == ModeSplit {
		r.Percent = spec.Percent
		if len(spec.Steps) > 0 {
			r.StepIndex, r.Percent = 0, spec.Steps[0].Percent
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.rollouts[spec.Model]; cur != nil && cur.State == StateRunning {
		return nil, fmt.Errorf("%w: rollout %s of model %s is running", ErrConflict, cur.ID, spec.Model)
	}
	prev := c.rollouts[spec.Model]
	c.rollouts[spec.Model] = r
	if err := c.persistLocked(); err != nil {
		c.rollouts[spec.Model] = prev
		return nil, err
	}
	c.lives[r.ID] = newLive()
	c.publishLocked()
	c.m.percent.WithLabelValues(r.Model).Set(r.Percent)
	c.audit(ctx, "rollout.start", fmt.Sprintf("%s: model %s stable %d candidate %d, %s, %.0f%% of keys to the candidate, sample %.2f",
		r.ID, r.Model, r.Stable, r.Candidate, r.Mode, r.Percent, r.Sample))
	c.log.Info("rollout started", "id", r.ID, "model", r.Model, "stable", r.Stable, "candidate", r.Candidate, "mode", r.Mode, "percent", r.Percent)
	out := *r
	return &out, nil
}

// checkPair checks the two versions a rollout or a replay compares: both
// named, different, and available (when the model server can tell).
func checkPair(model string, stable, candidate int64, avail []int64) error {
	if stable <= 0 || candidate <= 0 {
		return fmt.Errorf("%w: name the stable and candidate versions (available: %v)", ErrInvalid, avail)
	}
	if stable == candidate {
		return fmt.Errorf("%w: stable and candidate are both version %d", ErrInvalid, stable)
	}
	if avail != nil {
		for _, v := range []int64{stable, candidate} {
			if !slices.Contains(avail, v) {
				return fmt.Errorf("%w: version %d of model %s is not available (available: %v); with version_policy latest:N, N must cover both", ErrInvalid, v, model, avail)
			}
		}
	}
	return nil
}

// Get returns the model's running or last rollout.
func (c *Controller) Get(name string) (*Rollout, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rollouts[name]
	if r == nil {
		return nil, fmt.Errorf("%w: no rollout of model %s", ErrNotFound, name)
	}
	out := *r
	return &out, nil
}

// List returns every model's running or last rollout, by model name.
func (c *Controller) List() []Rollout {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Rollout, 0, len(c.rollouts))
	for _, name := range slices.Sorted(maps.Keys(c.rollouts)) {
		out = append(out, *c.rollouts[name])
	}
	return out
}

// SetPercent moves a running rollout's split by hand (a shadow becomes a
// split); planned steps stop.
func (c *Controller) SetPercent(ctx context.Context, name string, percent float64) (*Rollout, error) {
	if percent < 0 || percent > 100 {
		return nil, fmt.Errorf("%w: percent %v is not between 0 and 100", ErrInvalid, percent)
	}
	return c.change(ctx, name, "rollout.percent", func(r *Rollout) string {
		r.Mode, r.Percent, r.StepIndex, r.StepStarted = ModeSplit, percent, -1, c.cfg.Now()
		return fmt.Sprintf("%.0f%% of keys to version %d", percent, r.Candidate)
	})
}

// Promote sends all traffic to the candidate and pins it.
func (c *Controller) Promote(ctx context.Context, name string) (*Rollout, error) {
	return c.change(ctx, name, "rollout.promote", func(r *Rollout) string {
		c.endLocked(r, StatePromoted, "promoted by an operator")
		return fmt.Sprintf("version %d serves model %s", r.Candidate, name)
	})
}

// Abort sends all traffic back to the stable version and pins it.
func (c *Controller) Abort(ctx context.Context, name, reason string) (*Rollout, error) {
	if reason == "" {
		reason = "aborted by an operator"
	}
	return c.change(ctx, name, "rollout.abort", func(r *Rollout) string {
		c.endLocked(r, StateAborted, reason)
		return fmt.Sprintf("version %d serves model %s: %s", r.Stable, name, reason)
	})
}

// change applies fn to a running rollout, keeps and publishes it, and audits
// it as the caller in ctx.
func (c *Controller) change(ctx context.Context, name, action string, fn func(r *Rollout) string) (*Rollout, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rollouts[name]
	if r == nil || r.State != StateRunning {
		return nil, fmt.Errorf("%w: no running rollout of model %s", ErrNotFound, name)
	}
	before, pin := *r, c.pins[name]
	detail := fn(r)
	if err := c.persistLocked(); err != nil {
		*r = before
		c.pins[name] = pin
		return nil, err
	}
	c.publishLocked()
	c.m.percent.WithLabelValues(name).Set(r.Percent)
	c.audit(ctx, action, r.ID+": "+detail)
	c.log.Info("rollout changed", "id", r.ID, "action", action, "detail", detail)
	out := *r
	return &out, nil
}

// endLocked finishes r; the version that serves from now on is pinned.
func (c *Controller) endLocked(r *Rollout, state, reason string) {
	r.State, r.Reason, r.EndedAt = state, reason, c.cfg.Now()
	if state == StatePromoted {
		r.Percent = 100
		c.pins[r.Model] = r.Candidate
	} else {
		r.Percent = 0
		c.pins[r.Model] = r.Stable
	}
}

// check advances planned steps and applies the guards.
func (c *Controller) check() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	for name, r := range c.rollouts {
		if r.State != StateRunning || r.Mode != ModeSplit {
			continue
		}
		lv := c.lives[r.ID]
		if ev, guard, why := breach(r, lv); guard != "" {
			r.Evidence = ev
			c.endLocked(r, StateRolledBack, why)
			if err := c.persistLocked(); err != nil {
				c.log.Error("rollout rolled back but its state could not be saved", "id", r.ID, "err", err)
			}
			c.publishLocked()
			c.m.percent.WithLabelValues(name).Set(0)
			c.m.rollbacks.WithLabelValues(name, guard).Inc()
			c.audit(context.Background(), "rollout.rolled_back", r.ID+": "+why) // by the guard itself
			c.log.Warn("rollout rolled back by a guard", "id", r.ID, "model", name, "guard", guard, "reason", why)
			continue
		}
		if r.StepIndex < 0 || r.StepIndex >= len(r.Steps) {
			continue
		}
		st := r.Steps[r.StepIndex]
		if st.Hold <= 0 || now.Sub(r.StepStarted) < time.Duration(st.Hold) {
			continue
		}
		action, detail := "rollout.step", ""
		if r.StepIndex == len(r.Steps)-1 {
			if r.Percent < 100 {
				continue // the last step holds until promoted
			}
			action, detail = "rollout.promote", fmt.Sprintf("plan complete: version %d serves model %s", r.Candidate, name)
			c.endLocked(r, StatePromoted, "plan complete")
		} else {
			r.StepIndex++
			r.Percent, r.StepStarted = r.Steps[r.StepIndex].Percent, now
			detail = fmt.Sprintf("step %d: %.0f%% of keys to version %d", r.StepIndex+1, r.Percent, r.Candidate)
		}
		if err := c.persistLocked(); err != nil {
			c.log.Error("saving the rollout's step", "id", r.ID, "err", err)
		}
		c.publishLocked()
		c.m.percent.WithLabelValues(name).Set(r.Percent)
		c.audit(context.Background(), action, r.ID+": "+detail) // the plan's own step
		c.log.Info("rollout step", "id", r.ID, "detail", detail)
	}
}

// breach reports the first guard r's candidate breaks.
func breach(r *Rollout, lv *live) (*Evidence, string, string) {
	if lv == nil {
		return nil, "", ""
	}
	ev := lv.evidence()
	g := r.Guards
	n := int64(g.MinRequests)
	switch {
	case g.MaxErrorRate > 0 && ev.CandidateRequests >= n && ev.ErrorRate > g.MaxErrorRate:
		return ev, "error_rate", fmt.Sprintf("candidate version %d failed %d of %d requests (%.1f%%), above the bound of %.1f%%",
			r.Candidate, ev.CandidateErrors, ev.CandidateRequests, 100*ev.ErrorRate, 100*g.MaxErrorRate)
	case g.MaxP99Ms > 0 && ev.CandidateRequests >= n && ev.P99Ms > g.MaxP99Ms:
		return ev, "p99", fmt.Sprintf("candidate version %d's p99 is %.1f ms, above the bound of %.1f ms", r.Candidate, ev.P99Ms, g.MaxP99Ms)
	case g.MaxDisagreement > 0 && ev.Compared >= n && ev.Disagreement > g.MaxDisagreement:
		return ev, "disagreement", fmt.Sprintf("candidate version %d disagrees with version %d on %.1f%% of %d compared requests, above the bound of %.1f%%",
			r.Candidate, r.Stable, 100*ev.Disagreement, ev.Compared, 100*g.MaxDisagreement)
	}
	return nil, "", ""
}

// live holds a running rollout's counters (since its start in this
// process; they are not kept across restarts, the comparisons are).
type live struct {
	mu                               sync.Mutex
	stableReqs, stableErrs           int64
	candReqs, candErrs               int64
	shadowStableErrs, shadowCandErrs int64
	shadowStable, shadowCand         int64
	compared, disagree               int64
	candLat                          []float64 // ring of the candidate's call latencies, ms
	candLatNext                      int
}

const latRing = 2048

func newLive() *live { return &live{} }

func (l *live) evidence() *Evidence {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := &Evidence{CandidateRequests: l.candReqs + l.shadowCand, CandidateErrors: l.candErrs + l.shadowCandErrs, Compared: l.compared}
	if ev.CandidateRequests > 0 {
		ev.ErrorRate = float64(ev.CandidateErrors) / float64(ev.CandidateRequests)
	}
	if l.compared > 0 {
		ev.Disagreement = float64(l.disagree) / float64(l.compared)
	}
	if len(l.candLat) > 0 {
		s := slices.Clone(l.candLat)
		sort.Float64s(s)
		ev.P99Ms = quantile(s, 0.99)
	}
	return ev
}

func (l *live) candLatency(ms float64) {
	if len(l.candLat) < latRing {
		l.candLat = append(l.candLat, ms)
		return
	}
	l.candLat[l.candLatNext] = ms
	l.candLatNext = (l.candLatNext + 1) % latRing
}

// KeyPercentile places a record key on [0, 100): during a split at P%, the
// keys below P go to the candidate. Raising P only adds keys, so a device
// that moved to the candidate stays there.
func KeyPercentile(key []byte) float64 { return bucket('s', key) }

// shadowBudget keeps the shadow to a share of wall time while the pipeline
// has a backlog: a bucket of scoring time that fills at share × elapsed time,
// holds at most share × 1 s, and pays for each scored job afterwards. When
// the pipeline keeps up, jobs are scored whatever the bucket holds (and still
// paid for, so a backlog starting right after a burst finds it empty).
type shadowBudget struct {
	share  float64
	tokens time.Duration
	last   time.Time
}

// take reports whether a job may be scored at now; busyUntil (unix ns) says
// until when the pipeline counts as busy.
func (b *shadowBudget) take(now time.Time, busyUntil int64) bool {
	capacity := time.Duration(b.share * float64(time.Second))
	if !b.last.IsZero() {
		b.tokens = min(b.tokens+time.Duration(b.share*float64(now.Sub(b.last))), capacity)
	} else {
		b.tokens = capacity
	}
	b.last = now
	if now.UnixNano() >= busyUntil {
		return true
	}
	return b.tokens > 0
}

func (b *shadowBudget) spent(d time.Duration) {
	b.tokens = max(b.tokens-d, -time.Duration(b.share*float64(time.Second)))
}
