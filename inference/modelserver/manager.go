package modelserver

import (
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tfserving"
)

// State is a model version's state, numbered as TF Serving's
// ModelVersionStatus.State.
type State int32

const (
	StateUnknown   State = 0
	StateStart     State = 10
	StateLoading   State = 20
	StateAvailable State = 30
	StateUnloading State = 40
	StateEnd       State = 50
)

func (s State) String() string {
	switch s {
	case StateStart:
		return "START"
	case StateLoading:
		return "LOADING"
	case StateAvailable:
		return "AVAILABLE"
	case StateUnloading:
		return "UNLOADING"
	case StateEnd:
		return "END"
	}
	return "UNKNOWN"
}

// ModelFileName is the file a version directory holds.
const ModelFileName = "model.onnx"

// XGBoostFileName is the file of a version holding an XGBoost JSON model
// instead (used when there is no ModelFileName).
const XGBoostFileName = "model.json"

// maxEndRecords bounds how many finished (END) versions a model remembers
// for status calls, so a model rolled over every minute does not grow forever.
const maxEndRecords = 16

// fingerprint identifies the state of a version's model file; a version is
// loaded once its fingerprint is stable across two scans, and a failed
// version is retried only when it changes.
type fingerprint struct {
	file   string // ModelFileName or XGBoostFileName
	exists bool
	size   int64
	mtime  int64
}

type versionState struct {
	version int64
	state   State
	err     error // a status error when a load failed
	fp      fingerprint
	serv    *servable
}

type managedModel struct {
	cfg      tfserving.ModelConfig
	removed  bool // dropped by a config reload; kept for status
	versions map[int64]*versionState
	labels   map[string]int64
	pending  map[int64]fingerprint // last scan of each version directory
	trusted  map[int64]bool        // renamed into place by UploadVersion: load at once
	scanErr  string                // last base path error, logged once
}

// manager owns the model versions: it scans base paths, loads and unloads
// versions, and publishes the immutable table requests read.
type manager struct {
	log                    *slog.Logger
	batching               *tfserving.BatchingConfig
	allowUnavailableLabels bool
	metrics                *metrics
	maxFolded              int64 // Limits.MaxFoldedConstantBytes
	threads                int   // Config.Threads

	pollMu sync.Mutex // one scan, reload or upload at a time

	mu      sync.Mutex // guards models, order, changed, holds
	models  map[string]*managedModel
	order   []string
	changed chan struct{}
	// holds are versions kept loaded beyond the version policy, by model,
	// each with why (SetHolds).
	holds map[string]map[int64]string

	tab   atomic.Pointer[table]
	ready atomic.Bool
	loads atomic.Int64 // load attempts, for tests and logs
	// onReady is called (without locks held) whenever readiness may have changed.
	onReady func(bool)
}

func newManager(log *slog.Logger, batching *tfserving.BatchingConfig, allowUnavailable bool, mx *metrics) *manager {
	m := &manager{
		log:                    log,
		batching:               batching,
		allowUnavailableLabels: allowUnavailable,
		metrics:                mx,
		models:                 map[string]*managedModel{},
		changed:                make(chan struct{}),
	}
	m.tab.Store(&table{models: map[string]*modelTable{}})
	m.ready.Store(true)
	return m
}

// configure installs the model list without loading anything (used by New).
func (m *manager) configure(models []tfserving.ModelConfig) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mc := range models {
		m.models[mc.Name] = newManagedModel(mc)
		m.order = append(m.order, mc.Name)
	}
	m.publishLocked()
}

func newManagedModel(mc tfserving.ModelConfig) *managedModel {
	return &managedModel{
		cfg:      mc,
		versions: map[int64]*versionState{},
		labels:   maps.Clone(mc.Labels),
		pending:  map[int64]fingerprint{},
		trusted:  map[int64]bool{},
	}
}

// pollAll scans every configured model. initial treats every version
// directory as complete (server start, reload): there is no earlier scan to
// compare with, and waiting a poll would only delay readiness.
func (m *manager) pollAll(initial bool) {
	m.pollMu.Lock()
	defer m.pollMu.Unlock()
	m.pollAllLocked(initial)
}

// liveModels are the configured models not removed, in configuration order.
func (m *manager) liveModels() []*managedModel {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*managedModel
	for _, name := range m.order {
		if mm := m.models[name]; !mm.removed {
			out = append(out, mm)
		}
	}
	return out
}

func (m *manager) pollAllLocked(initial bool) {
	for _, mm := range m.liveModels() {
		m.pollModel(mm, initial)
	}
}

// scan lists the numeric version directories of a base path.
func scan(base string) (map[int64]fingerprint, error) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil, err
	}
	present := map[int64]fingerprint{}
	for _, e := range entries {
		v, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || v < 0 {
			continue // TF ignores non-numeric children (and our upload temp dirs)
		}
		dir := filepath.Join(base, e.Name())
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		var fp fingerprint
		for _, name := range []string{ModelFileName, XGBoostFileName} {
			if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() {
				fp = fingerprint{file: name, exists: true, size: st.Size(), mtime: st.ModTime().UnixNano()}
				break
			}
		}
		present[v] = fp
	}
	return present, nil
}

// aspired applies the version policy to the versions present. Under a
// Latest policy, versions for which failed is true are skipped, so the N
// highest versions that load are served.
func aspired(p tfserving.VersionPolicy, present map[int64]fingerprint, failed func(int64) bool) []int64 {
	all := slices.Sorted(maps.Keys(present))
	slices.Reverse(all) // highest first
	if fallsBack(p) {
		all = slices.DeleteFunc(all, failed)
	}
	switch {
	case p.All:
		return all
	case len(p.Specific) > 0:
		var out []int64
		for _, v := range all {
			if slices.Contains(p.Specific, v) {
				out = append(out, v)
			}
		}
		return out
	}
	n := max(int(p.Latest), 1)
	return all[:min(n, len(all))]
}

func (m *manager) pollModel(mm *managedModel, initial bool) {
	m.mu.Lock()
	cfg := mm.cfg
	m.mu.Unlock()
	present, err := scan(cfg.BasePath)
	if err != nil {
		// Keep serving what is loaded: a base path that is briefly unreadable
		// (remount, permissions) must not take the model down.
		if msg := err.Error(); msg != mm.scanErr {
			m.log.Error("model base path cannot be read; keeping loaded versions", "model", cfg.Name, "base_path", cfg.BasePath, "err", err)
			mm.scanErr = msg
		}
		return
	}
	if mm.scanErr != "" {
		m.log.Info("model base path readable again", "model", cfg.Name)
		mm.scanErr = ""
	}
	if len(present) == 0 && len(mm.pending) == 0 {
		m.log.Warn("no versions of model found under base path", "model", cfg.Name, "base_path", cfg.BasePath)
	}
	// Decide what to load, under the lock, and load it. Under a Latest
	// policy a version that failed to load (with the files it has now) is
	// passed over for the next lower one, so a corrupt newest version does
	// not leave the model without any: each round adds at least one failed
	// version, so this ends.
	type load struct {
		vs *versionState
		fp fingerprint
	}
	var want []int64
	for {
		m.mu.Lock()
		failedNow := func(v int64) bool {
			vs := mm.versions[v]
			return vs != nil && vs.state == StateEnd && vs.err != nil && vs.fp == present[v]
		}
		want = aspired(cfg.Policy, present, failedNow)
		// Held versions are wanted too, whatever the policy says (a pin or a
		// rollout routes requests to them), as long as their directory is
		// there and they did not fail with exactly these files.
		for _, v := range slices.Sorted(maps.Keys(m.holds[cfg.Name])) {
			if _, there := present[v]; there && !failedNow(v) && !slices.Contains(want, v) {
				want = append(want, v)
			}
		}
		var loads []load
		for _, v := range want {
			fp := present[v]
			prev, seen := mm.pending[v]
			settled := initial || mm.trusted[v] || (seen && prev == fp)
			vs := mm.versions[v]
			switch {
			case vs != nil && (vs.state == StateAvailable || vs.state == StateLoading || vs.state == StateUnloading):
				continue
			case vs != nil && vs.state == StateEnd && vs.err != nil && vs.fp == fp:
				continue // failed with exactly these files: retry when they change
			}
			if vs == nil {
				vs = &versionState{version: v}
				mm.versions[v] = vs
			}
			if !settled {
				vs.state, vs.err = StateStart, nil
				continue
			}
			vs.state, vs.err, vs.fp = StateLoading, nil, fp
			loads = append(loads, load{vs, fp})
		}
		// Forget START records whose directory went away before they loaded.
		for v, vs := range mm.versions {
			if _, ok := present[v]; !ok && vs.state == StateStart {
				delete(mm.versions, v)
			}
		}
		mm.pending = present
		m.publishLocked()
		m.mu.Unlock()

		failed := false
		for _, l := range loads {
			if !m.loadVersion(mm, cfg, l.vs, l.fp) {
				failed = true
			}
		}
		if !failed || !fallsBack(cfg.Policy) {
			break
		}
	}

	// Unload versions no longer wanted, but never leave the model without an
	// available version while a wanted one is missing (TF's
	// availability-preserving policy); a removed directory always goes.
	m.mu.Lock()
	wantAvailable := false
	for _, v := range want {
		if vs := mm.versions[v]; vs != nil && vs.state == StateAvailable {
			wantAvailable = true
		}
	}
	var unloads []*versionState
	for v, vs := range mm.versions {
		if vs.state != StateAvailable || slices.Contains(want, v) {
			continue
		}
		if _, dirThere := present[v]; !dirThere || wantAvailable {
			vs.state = StateUnloading
			unloads = append(unloads, vs)
		}
	}
	if len(unloads) > 0 {
		m.publishLocked()
	}
	m.mu.Unlock()
	m.finishUnloads(mm, unloads)
}

// loadVersion loads one version outside the state lock.
// It reports false when the load failed (not when the file was still being
// written: that is retried by a later scan).
func (m *manager) loadVersion(mm *managedModel, cfg tfserving.ModelConfig, vs *versionState, fp fingerprint) bool {
	file := ModelFileName
	if fp.file != "" {
		file = fp.file
	}
	path := filepath.Join(cfg.BasePath, strconv.FormatInt(vs.version, 10), file)
	start := time.Now()
	m.loads.Add(1)
	serv, err := m.build(cfg.Name, vs.version, path, fp)
	m.mu.Lock()
	delete(mm.trusted, vs.version)
	if errors.Is(err, errStillWriting) {
		// Changed under us: wait for it to settle, it is not a failure.
		vs.state = StateStart
		mm.pending[vs.version] = fingerprint{size: -1}
		m.publishLocked()
		m.mu.Unlock()
		return true
	}
	if err != nil {
		vs.state, vs.err, vs.serv = StateEnd, err, nil
		msg := "model version failed to load; earlier versions keep serving"
		if fallsBack(cfg.Policy) {
			msg = "model version failed to load; the next lower version that loads (if any) is served instead"
		}
		m.log.Error(msg, "model", cfg.Name, "version", vs.version, "err", err)
		m.metrics.loadAttempt(cfg.BasePath, false)
	} else {
		vs.state, vs.err, vs.serv = StateAvailable, nil, serv
		m.log.Info("model version available", "model", cfg.Name, "version", vs.version, "load_time", time.Since(start).Round(time.Microsecond),
			"inputs", len(serv.sig.Inputs), "outputs", len(serv.sig.Outputs))
		m.metrics.loadAttempt(cfg.BasePath, true)
	}
	stale := mm.removed // removed by a reload while loading
	m.publishLocked()
	m.mu.Unlock()
	if stale && serv != nil {
		m.mu.Lock()
		vs.state = StateUnloading
		m.publishLocked()
		m.mu.Unlock()
		m.finishUnloads(mm, []*versionState{vs})
	}
	return err == nil
}

var errStillWriting = errors.New("model file changed while it was read")

func (m *manager) build(name string, version int64, path string, fp fingerprint) (*servable, error) {
	if !fp.exists {
		return nil, status.Errorf(codes.NotFound, "Could not find %s in version directory %s", ModelFileName, filepath.Dir(path))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errStillWriting
		}
		return nil, status.Errorf(codes.Unavailable, "reading %s: %v", path, err)
	}
	if int64(len(data)) != fp.size {
		return nil, errStillWriting
	}
	var lm *loadedModel
	if filepath.Base(path) == XGBoostFileName {
		lm, err = loadXGBoost(data)
	} else {
		lm, err = loadONNX(data, m.maxFolded, m.threads)
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "loading %s: %v", path, err)
	}
	s, err := newServable(name, version, lm, m.batching)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "loading %s: %v", path, err)
	}
	return s, nil
}

// finishUnloads completes versions marked UNLOADING (already out of the
// table): in-flight batches finish, then the version is END.
func (m *manager) finishUnloads(mm *managedModel, unloads []*versionState) {
	if len(unloads) == 0 {
		return
	}
	for _, vs := range unloads {
		if vs.serv != nil && vs.serv.batch != nil {
			vs.serv.batch.stop()
		}
	}
	m.mu.Lock()
	for _, vs := range unloads {
		vs.state, vs.serv, vs.err = StateEnd, nil, nil
		m.log.Info("model version unloaded", "model", mm.cfg.Name, "version", vs.version)
	}
	m.trimEndLocked(mm)
	m.publishLocked()
	m.mu.Unlock()
}

func (m *manager) trimEndLocked(mm *managedModel) {
	var ends []int64
	for v, vs := range mm.versions {
		if vs.state == StateEnd {
			ends = append(ends, v)
		}
	}
	if len(ends) <= maxEndRecords {
		return
	}
	slices.Sort(ends)
	for _, v := range ends[:len(ends)-maxEndRecords] {
		delete(mm.versions, v)
	}
}

// publishLocked builds and stores a new request table from the AVAILABLE
// versions and wakes anyone waiting for a change. Callers hold m.mu.
func (m *manager) publishLocked() {
	t := &table{models: make(map[string]*modelTable, len(m.models))}
	ready := true
	for name, mm := range m.models {
		if mm.removed {
			m.metrics.setAvailable(name, 0)
			continue
		}
		mt := &modelTable{versions: map[int64]*servable{}, labels: mm.labels}
		for v, vs := range mm.versions {
			if vs.state == StateAvailable && vs.serv != nil {
				mt.versions[v] = vs.serv
				if mt.latest == nil || v > mt.latest.version {
					mt.latest = vs.serv
				}
			}
		}
		if mt.latest == nil {
			ready = false
		}
		m.metrics.setAvailable(name, len(mt.versions))
		t.models[name] = mt
	}
	m.tab.Store(t)
	was := m.ready.Swap(ready)
	close(m.changed)
	m.changed = make(chan struct{})
	if was != ready && m.onReady != nil {
		// Called under m.mu; onReady only flips the health status.
		m.onReady(ready)
	}
}

// waitChange returns a channel closed at the next publish.
func (m *manager) waitChange() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// reload replaces the model list: new models are loaded, removed ones
// unloaded, changed ones updated; labels are applied once the versions they
// name are loaded. It returns after loading, with TF's errors.
func (m *manager) reload(models []tfserving.ModelConfig) error {
	if err := validateModels("model_config_list", models); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	m.pollMu.Lock()
	defer m.pollMu.Unlock()

	m.mu.Lock()
	var gone []*managedModel
	var added []string
	newOrder := make([]string, 0, len(models))
	inNew := map[string]bool{}
	for _, mc := range models {
		inNew[mc.Name] = true
		newOrder = append(newOrder, mc.Name)
		mm := m.models[mc.Name]
		switch {
		case mm == nil || mm.removed || mm.cfg.BasePath != mc.BasePath:
			if mm != nil && !mm.removed {
				// A different directory: its version numbers mean other files.
				mm.removed = true
				gone = append(gone, mm)
			}
			fresh := newManagedModel(mc)
			fresh.labels = nil // applied below, once its versions are loaded
			m.models[mc.Name] = fresh
			added = append(added, mc.Name)
		default:
			mm.cfg = mc
		}
	}
	for _, name := range m.order {
		if mm := m.models[name]; !inNew[name] && mm != nil && !mm.removed {
			mm.removed = true
			gone = append(gone, mm)
		}
	}
	for _, name := range m.order {
		if !inNew[name] {
			newOrder = append(newOrder, name) // removed models stay visible in status
		}
	}
	m.order = newOrder
	m.publishLocked()
	m.mu.Unlock()

	for _, mm := range gone {
		m.unloadAll(mm)
	}
	// Scan now; the models just added have no earlier scan to compare with.
	for _, mm := range m.liveModels() {
		m.pollModel(mm, slices.Contains(added, mm.cfg.Name))
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, mc := range models {
		mm := m.models[mc.Name]
		if slices.Contains(added, mc.Name) {
			if err := firstLoadError(mm); err != nil {
				errs = append(errs, err)
			}
		}
		if err := m.checkLabelsLocked(mm, mc.Labels); err != nil {
			errs = append(errs, err)
			continue // keep the labels it had
		}
		mm.labels = maps.Clone(mc.Labels)
	}
	m.publishLocked()
	if len(errs) > 0 {
		// TF returns one status; the first problem carries the code.
		code := status.Code(errs[0])
		msg := errs[0].Error()
		if s, ok := status.FromError(errs[0]); ok {
			msg = s.Message()
		}
		for _, e := range errs[1:] {
			if s, ok := status.FromError(e); ok {
				msg += "; " + s.Message()
			}
		}
		return status.Error(code, msg)
	}
	return nil
}

// firstLoadError reports a model that has no available version because a
// load failed (a model with no version directories yet is not an error).
func firstLoadError(mm *managedModel) error {
	var failed *versionState
	for _, vs := range mm.versions {
		if vs.state == StateAvailable {
			return nil
		}
		if vs.state == StateEnd && vs.err != nil && (failed == nil || vs.version > failed.version) {
			failed = vs
		}
	}
	if failed == nil {
		return nil
	}
	s, _ := status.FromError(failed.err)
	return status.Errorf(s.Code(), "model %s version %d failed to load: %s", mm.cfg.Name, failed.version, s.Message())
}

func (m *manager) checkLabelsLocked(mm *managedModel, labels map[string]int64) error {
	if m.allowUnavailableLabels {
		return nil
	}
	for _, l := range slices.Sorted(maps.Keys(labels)) {
		v := labels[l]
		if vs := mm.versions[v]; vs == nil || vs.state != StateAvailable {
			return status.Errorf(codes.FailedPrecondition,
				"Request to assign label to version %d of model %s, which is not currently available for inference", v, mm.cfg.Name)
		}
	}
	return nil
}

func (m *manager) unloadAll(mm *managedModel) {
	m.mu.Lock()
	var unloads []*versionState
	for _, vs := range mm.versions {
		if vs.state == StateAvailable {
			vs.state = StateUnloading
			unloads = append(unloads, vs)
		}
	}
	m.publishLocked()
	m.mu.Unlock()
	m.finishUnloads(mm, unloads)
}

// stopAll stops every batcher (Run's exit). Versions stay in the table, so
// in-process calls after Run still work, unbatched.
func (m *manager) stopAll() {
	m.mu.Lock()
	var bs []*batcher
	for _, mm := range m.models {
		for _, vs := range mm.versions {
			if vs.serv != nil && vs.serv.batch != nil {
				bs = append(bs, vs.serv.batch)
			}
		}
	}
	m.mu.Unlock()
	for _, b := range bs {
		b.stop()
	}
}

// setLabel points a label at an AVAILABLE version (version 0 removes it).
func (m *manager) setLabel(name, label string, version int64) error {
	if label == "" {
		return status.Error(codes.InvalidArgument, "empty version label")
	}
	m.pollMu.Lock()
	defer m.pollMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	mm := m.models[name]
	if mm == nil || mm.removed {
		return status.Errorf(codes.NotFound, "Could not find any versions of model %s", name)
	}
	labels := maps.Clone(mm.labels)
	if labels == nil {
		labels = map[string]int64{}
	}
	if version == 0 {
		delete(labels, label)
	} else {
		if err := m.checkLabelsLocked(mm, map[string]int64{label: version}); err != nil {
			return err
		}
		labels[label] = version
	}
	// Copy on write: published tables keep reading the old map.
	mm.labels = labels
	m.publishLocked()
	return nil
}

// VersionStatus is the state of one model version.
type VersionStatus struct {
	Version int64
	State   State
	// Code and Error are the failure of a version that ended with an error
	// (codes.OK otherwise).
	Code  codes.Code
	Error string
	// Held says why the version is kept loaded whatever the version policy
	// says ("pinned", …; see Server.SetHolds); "" when it is not held.
	Held string
}

// ModelStatus describes a configured model, for dashboards.
type ModelStatus struct {
	Name     string
	BasePath string
	Policy   string
	// Removed is set for a model dropped by a config reload (kept so its
	// final states stay visible).
	Removed  bool
	Versions []VersionStatus // highest first
	Labels   map[string]int64
	// Signature of the latest AVAILABLE version; nil when none is.
	Signature *model.Signature
}

func (m *manager) statuses() []ModelStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ModelStatus, 0, len(m.order))
	for _, name := range m.order {
		mm := m.models[name]
		ms := ModelStatus{
			Name: name, BasePath: mm.cfg.BasePath, Policy: mm.cfg.Policy.String(), Removed: mm.removed,
			Labels: maps.Clone(mm.labels), Versions: m.versionStatusesLocked(mm),
		}
		var latest *servable
		for _, vs := range mm.versions {
			if vs.state == StateAvailable && vs.serv != nil && (latest == nil || vs.version > latest.version) {
				latest = vs.serv
			}
		}
		if latest != nil {
			ms.Signature = latest.sig
		}
		out = append(out, ms)
	}
	return out
}

func (m *manager) versionStatusesLocked(mm *managedModel) []VersionStatus {
	vs := make([]VersionStatus, 0, len(mm.versions))
	for _, v := range slices.Backward(slices.Sorted(maps.Keys(mm.versions))) {
		st := mm.versions[v]
		s := VersionStatus{Version: v, State: st.state, Held: m.holds[mm.cfg.Name][v]}
		if st.err != nil {
			s.Code = status.Code(st.err)
			if ps, ok := status.FromError(st.err); ok {
				s.Error = ps.Message()
			} else {
				s.Error = st.err.Error()
			}
		}
		vs = append(vs, s)
	}
	return vs
}

// versionStatus answers GetModelStatus: all versions, or one.
func (m *manager) versionStatus(name string, hasVersion bool, version int64, label string) ([]VersionStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mm := m.models[name]
	if label != "" {
		v, ok := int64(0), false
		if mm != nil {
			v, ok = mm.labels[label]
		}
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "Unrecognized servable version label: %s", label)
		}
		hasVersion, version = true, v
	}
	if mm == nil || len(mm.versions) == 0 {
		return nil, status.Errorf(codes.NotFound, "Could not find any versions of model %s", name)
	}
	all := m.versionStatusesLocked(mm)
	if !hasVersion {
		return all, nil
	}
	for _, s := range all {
		if s.Version == version {
			return []VersionStatus{s}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "Could not find version %d of model %s", version, name)
}

// configured reports whether a model is currently configured.
func (m *manager) configured(name string) (tfserving.ModelConfig, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mm := m.models[name]
	if mm == nil || mm.removed {
		return tfserving.ModelConfig{}, false
	}
	return mm.cfg, true
}

func (m *manager) trust(name string, version int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm := m.models[name]; mm != nil {
		mm.trusted[version] = true
	}
}

// setHolds replaces the held versions and applies the version policy again
// to the models whose holds changed: a version newly held is loaded if its
// directory is there, one no longer held is unloaded if the policy does not
// keep it.
func (m *manager) setHolds(holds map[string]map[int64]string) {
	m.pollMu.Lock()
	defer m.pollMu.Unlock()
	m.mu.Lock()
	old := m.holds
	m.holds = make(map[string]map[int64]string, len(holds))
	for name, vs := range holds {
		if len(vs) > 0 {
			m.holds[name] = maps.Clone(vs)
		}
	}
	var changed []*managedModel
	for _, name := range m.order {
		if mm := m.models[name]; !mm.removed && !maps.Equal(old[name], m.holds[name]) {
			changed = append(changed, mm)
		}
	}
	m.publishLocked() // statuses show the new reasons at once
	m.mu.Unlock()
	for _, mm := range changed {
		m.pollModel(mm, false)
	}
}
