package appliance

// Settings changed from the dashboard (PUT /api/v1/settings): checked by
// the same table and Validate as the config file, written to the config file
// the appliance was started with, and applied at once where the running
// component can take them (liveKeys); the others wait for a restart.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.yaml.in/yaml/v3"

	"github.com/infergate/infergate/web"
)

// liveKeys are the settings a running appliance applies without a restart.
// Each group is applied by one call in applyLive.
var liveKeys = map[string]bool{
	"log.level": true,

	"demo.rate":          true,
	"demo.anomaly_ratio": true,

	"store.dlq_retention":   true,
	"store.dlq_max_records": true,

	"pipeline.max_batch_size":    true,
	"pipeline.max_batch_wait":    true,
	"pipeline.retry_backoff":     true,
	"pipeline.retry_backoff_max": true,
	"pipeline.retry_attempts":    true,
	"pipeline.max_attempts":      true,
	"model_server.timeout":       true,
}

// liveSettings is the configuration as it changes after start.
type liveSettings struct {
	mu sync.Mutex // one change at a time; guards cur and next
	// cur is what the appliance runs with: the started Config plus the live
	// changes. next is what a restart would read: cur plus the changes that
	// wait for it (the config file holds both).
	cur, next Config
	demo      atomic.Pointer[DemoConfig] // read by the demo generator
}

func (l *liveSettings) init(cfg Config) {
	l.cur, l.next = cfg, cfg
	l.cur.origin.sources = maps.Clone(cfg.origin.sources)
	l.next.origin.sources = maps.Clone(cfg.origin.sources)
	d := cfg.Demo
	l.demo.Store(&d)
}

// ErrNoConfigFile: the appliance was started without a config file, so a
// change from the dashboard would be lost at the next restart.
var ErrNoConfigFile = errors.New("the appliance was started without a config file, so a change made here would be lost at the next restart: " +
	"start it with --config FILE (or INFERGATE_CONFIG; an empty file will do) and infergate writes the changes there")

// lockReason says why a setting cannot be changed from the dashboard, "" when it can.
func (a *Appliance) lockReason(s setting) string {
	switch {
	case s.Secret:
		return "a secret: set it in the config file or the environment (" + s.envName() + ")"
	case s.Key == "data_dir":
		return "moves the broker's, the store's and the models' data: change it in the config file, with the data"
	}
	switch a.cfg.origin.sources[s.Key] {
	case SourceFlag:
		return "set by the flag --" + s.Flag + ", which overrides the config file: change it there"
	case SourceEnv:
		return "set by the environment variable " + s.envName() + ", which overrides the config file: change it there"
	}
	return ""
}

// UpdateSettings checks changes (key: value as the config file or a flag
// would give it) like a config file, writes them to the config file and
// applies the live ones. Nothing is written or applied when any is refused.
func (a *Appliance) UpdateSettings(changes map[string]string) (*web.SettingsUpdate, error) {
	if len(changes) == 0 {
		return nil, fmt.Errorf("no settings given: send {\"key\": value, ...}: %w", web.ErrInvalid)
	}
	file := a.cfg.ConfigFile()
	if file == "" {
		return nil, fmt.Errorf("%w: %w", ErrNoConfigFile, web.ErrConflict)
	}
	l := &a.live
	l.mu.Lock()
	defer l.mu.Unlock()

	next := l.next
	next.origin.sources = maps.Clone(l.next.origin.sources)
	table := next.settings()
	byKey := map[string]*setting{}
	for i := range table {
		byKey[table[i].Key] = &table[i]
	}
	keys := slices.Sorted(maps.Keys(changes))
	var problems []web.SettingProblem
	for _, key := range keys {
		s, ok := byKey[key]
		if !ok {
			msg := "unknown setting"
			if guess := closest(key, byKey); guess != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", guess)
			}
			problems = append(problems, web.SettingProblem{Key: key, Message: msg})
			continue
		}
		if why := a.lockReason(*s); why != "" {
			problems = append(problems, web.SettingProblem{Key: key, Message: s.describe() + ": cannot be changed here: " + why})
			continue
		}
		if err := s.val.Set(changes[key]); err != nil {
			problems = append(problems, web.SettingProblem{Key: key, Message: s.describe() + ": " + err.Error()})
		}
	}
	if len(problems) == 0 {
		// The whole configuration, as at start: a change may break a rule
		// between settings (restart_backoff_max below restart_backoff).
		problems = settingProblems(next.Validate(), keys)
	}
	if len(problems) > 0 {
		return nil, &web.SettingsError{Problems: problems}
	}

	// Only what differs from what the file will say is written.
	var changed []*setting
	for _, key := range keys {
		s := byKey[key]
		if s.val.String() != valueOf(&l.next, key) {
			changed = append(changed, s)
		}
	}
	abs, _ := filepath.Abs(file)
	out := &web.SettingsUpdate{File: abs, Applied: []web.SettingChange{}, Restart: []web.SettingChange{}}
	if len(changed) == 0 {
		return out, nil
	}
	if err := writeSettings(file, changed, changes); err != nil {
		return nil, fmt.Errorf("nothing was changed: %w", err)
	}
	for _, s := range changed {
		next.origin.sources[s.Key] = SourceFile
	}
	l.next = next

	// The running values: the live settings take the new value, the others
	// keep theirs until the restart.
	cur := l.cur
	cur.origin.sources = maps.Clone(l.cur.origin.sources)
	curTable := cur.settings()
	for _, s := range changed {
		c := change(s)
		if !liveKeys[s.Key] {
			out.Restart = append(out.Restart, c)
			continue
		}
		i := slices.IndexFunc(curTable, func(x setting) bool { return x.Key == s.Key })
		_ = curTable[i].val.Set(s.val.String()) // the same text parsed above
		cur.origin.sources[s.Key] = SourceFile
		out.Applied = append(out.Applied, c)
	}
	if err := a.applyLive(&cur, out.Applied); err != nil {
		// Validate passed, so the components' own checks (the same code)
		// cannot refuse; if one does, say that the file has the change.
		return nil, fmt.Errorf("written to %s but not applied: %w", abs, err)
	}
	l.cur = cur
	a.logger.Info("settings changed", "file", abs, "applied", len(out.Applied), "after_restart", len(out.Restart))
	return out, nil
}

func change(s *setting) web.SettingChange {
	return web.SettingChange{Key: s.Key, Value: typedValue(*s), Live: liveKeys[s.Key]}
}

// applyLive hands the running components their changed settings.
func (a *Appliance) applyLive(cur *Config, applied []web.SettingChange) error {
	groups := map[string]bool{}
	for _, c := range applied {
		groups[strings.SplitN(c.Key, ".", 2)[0]] = true
	}
	if groups["log"] {
		a.level.Set(parseLevel(cur.Log.Level))
	}
	if groups["demo"] {
		d := cur.Demo
		a.live.demo.Store(&d)
	}
	if groups["store"] {
		if st := a.Store(); st != nil {
			if err := st.SetLimits(cur.Store.Retention, cur.Store.MaxRecords); err != nil {
				return err
			}
		}
	}
	if groups["pipeline"] || groups["model_server"] {
		if p := a.Pipeline(); p != nil {
			if err := p.Retune(cur.Pipeline.Tuning()); err != nil {
				return err
			}
		}
	}
	return nil
}

// settingProblems turns Validate's errors, each "key (--flag, ENV): ...",
// into problems by key; one naming no changed key goes under the first.
func settingProblems(err error, keys []string) []web.SettingProblem {
	if err == nil {
		return nil
	}
	var out []web.SettingProblem
	for _, line := range strings.Split(err.Error(), "\n") {
		if line == "" {
			continue
		}
		key := keys[0]
		if k, _, ok := strings.Cut(line, " "); ok {
			k = strings.TrimSuffix(k, ":")
			if slices.Contains(keys, k) || !strings.Contains(k, "(") {
				key = k
			}
		}
		out = append(out, web.SettingProblem{Key: key, Message: line})
	}
	return out
}

func valueOf(c *Config, key string) string {
	for _, s := range c.settings() {
		if s.Key == key {
			return s.val.String()
		}
	}
	return ""
}

// typedValue is a setting's value for JSON: booleans as booleans, the rest
// as the text the config file takes.
func typedValue(s setting) any {
	if b, ok := s.val.(boolValue); ok {
		return *b.p
	}
	return s.val.String()
}

// kindOf names a setting's type for the dashboard's form.
func kindOf(s setting) string {
	switch s.val.(type) {
	case boolValue:
		return "bool"
	case intValue, int64Value:
		return "int"
	case floatValue:
		return "float"
	case sizeValue:
		return "size"
	case durationValue:
		return "duration"
	case listValue, int64ListValue:
		return "list"
	}
	return "string"
}

// settingView is one setting in GET /api/v1/settings.
type settingView struct {
	Key     string `json:"key"`
	Flag    string `json:"flag,omitempty"`
	Env     string `json:"env"`
	Value   any    `json:"value"`
	Default any    `json:"default"`
	Source  string `json:"source"`
	Secret  bool   `json:"secret,omitempty"`
	Help    string `json:"help"`
	Type    string `json:"type"`
	// Live: a change applies at once; else after a restart.
	Live bool `json:"live"`
	// Pending is the value the config file has and the next start takes,
	// when a change from the dashboard waits for the restart.
	Pending any `json:"pending,omitempty"`
	// Locked says why it cannot be changed from the dashboard.
	Locked string `json:"locked,omitempty"`
}

// settingsView is GET /api/v1/settings: the running settings (secrets
// redacted) shaped like the config file, where each that is not a default
// came from, and each with its type, whether it applies live, a value
// waiting for a restart and why it cannot be changed here.
func (a *Appliance) settingsView() map[string]any {
	l := &a.live
	l.mu.Lock()
	cur, next := l.cur, l.next
	l.mu.Unlock()
	def := Default()
	defTable, nextTable := def.settings(), next.settings()
	values := map[string]any{}
	changed := map[string]string{}
	var items []settingView
	for i, s := range cur.settings() {
		v := typedValue(s)
		if s.Secret && s.val.String() != "" {
			v = Redacted
		}
		src := cur.origin.sources[s.Key]
		if src == "" {
			src = SourceDefault
		} else {
			changed[s.Key] = src
		}
		m := values
		parts := strings.Split(s.Key, ".")
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = v
		item := settingView{Key: s.Key, Env: s.envName(), Value: v, Default: typedValue(defTable[i]), Source: src,
			Secret: s.Secret, Help: s.Help, Type: kindOf(s), Live: liveKeys[s.Key], Locked: a.lockReason(s)}
		if s.Flag != "" {
			item.Flag = "--" + s.Flag
		}
		if !s.Secret && nextTable[i].val.String() != s.val.String() {
			item.Pending = typedValue(nextTable[i])
		}
		items = append(items, item)
	}
	out := map[string]any{
		"config_file": a.cfg.ConfigFile(),
		"editable":    a.cfg.ConfigFile() != "",
		"not_default": changed,
		"settings":    values,
		"items":       items,
	}
	if f := a.cfg.ConfigFile(); f != "" {
		if abs, err := filepath.Abs(f); err == nil {
			out["config_file"] = abs
		}
	} else {
		out["read_only_reason"] = ErrNoConfigFile.Error()
	}
	return out
}

// UpdateSettings is PUT /api/v1/settings.
func (b *webBackend) UpdateSettings(_ context.Context, changes map[string]string) (*web.SettingsUpdate, error) {
	return b.a.UpdateSettings(changes)
}

// writeSettings sets the settings in the YAML file, keeping everything else
// in it (other settings, comments, order), and replaces the file only once
// the new text reads back, by the same code as at start, to the new values.
// raw is the text each was set from ("2h" stays "2h", not "2h0m0s").
func writeSettings(file string, changed []*setting, raw map[string]string) error {
	path, err := filepath.EvalSymlinks(file)
	if err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		*root = yaml.Node{Kind: yaml.MappingNode}
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s: the top level is not a mapping of settings", file)
	}
	for _, s := range changed {
		setYAML(root, "", s.Key, yamlValue(*s, raw[s.Key]))
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	text := buf.Bytes()
	// Read back as Load reads the file.
	check := Default()
	check.origin.sources = map[string]string{}
	if err := check.applyYAML(file, text, check.settings()); err != nil {
		return fmt.Errorf("config file %s: the changed file would not read back: %w", file, err)
	}
	for _, s := range changed {
		if got := valueOf(&check, s.Key); got != s.val.String() {
			return fmt.Errorf("config file %s: %s would read back as %q, not %q", file, s.Key, got, s.val.String())
		}
	}
	return replaceFile(path, text)
}

// setYAML sets key in the mapping m (whose keys are under prefix), where
// it is, else in the section it belongs to, else in new sections at the end.
func setYAML(m *yaml.Node, prefix, key string, val *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		full := m.Content[i].Value
		if prefix != "" {
			full = prefix + "." + full
		}
		old := m.Content[i+1]
		switch {
		case full == key:
			val.LineComment, val.HeadComment, val.FootComment = old.LineComment, old.HeadComment, old.FootComment
			m.Content[i+1] = val
			return
		case strings.HasPrefix(key, full+".") && old.Kind == yaml.MappingNode:
			setYAML(old, full, key, val)
			return
		case strings.HasPrefix(key, full+".") && old.Kind == yaml.ScalarNode && old.Tag == "!!null":
			m.Content[i+1] = &yaml.Node{Kind: yaml.MappingNode, LineComment: old.LineComment}
			setYAML(m.Content[i+1], full, key, val)
			return
		}
	}
	rest := key
	if prefix != "" {
		rest = strings.TrimPrefix(key, prefix+".")
	}
	parts := strings.Split(rest, ".")
	node := val
	for j := len(parts) - 1; j >= 1; j-- {
		node = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: parts[j]}, node}}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: parts[0]}, node)
}

// yamlValue is a setting's value as a YAML node: lists as sequences,
// booleans and numbers plain, the rest as the text they were set from
// (quoted when YAML would read it as something else).
func yamlValue(s setting, raw string) *yaml.Node {
	n := &yaml.Node{}
	var v any = raw
	switch x := s.val.(type) {
	case boolValue:
		v = *x.p
	case intValue:
		v = *x.p
	case int64Value:
		v = *x.p
	case floatValue:
		v = *x.p
	case listValue:
		v = append([]string{}, *x.p...)
	case int64ListValue:
		v = append([]int64{}, *x.p...)
	}
	_ = n.Encode(v) // plain values always encode
	if n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle
	}
	return n
}

// replaceFile writes data to path atomically (a temporary file renamed over
// it, with its mode), or in place when its directory is not writable (a
// config file in /etc made writable for the service).
func replaceFile(path string, data []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if errors.Is(err, os.ErrPermission) {
		if err := os.WriteFile(path, data, fi.Mode().Perm()); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Chmod(fi.Mode().Perm())
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
