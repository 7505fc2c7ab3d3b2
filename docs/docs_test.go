// Package docs_test checks that the documentation says only what is true of
// the code: every setting, environment variable and YAML config it names
// exists and loads, and every JSON example parses. The settings' own
// reference, configuration.md, is generated from the settings table and
// checked by TestConfigurationDoc in appliance; it is the list of truth here.
package docs_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/infergate/infergate/appliance"
)

// docFiles are README.md and docs/*.md, relative to this directory.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{filepath.Join("..", "README.md")}, files...)
}

// reference reads configuration.md: the setting keys (first column), their
// environment variables, and the sections (the keys' first parts).
func reference(t *testing.T) (keys, envs, sections map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	keys, envs, sections = map[string]bool{}, map[string]bool{}, map[string]bool{}
	row := regexp.MustCompile("^\\| `([a-z0-9_.]+)` \\|")
	env := regexp.MustCompile("`(INFERGATE_[A-Z0-9_]+)`")
	for _, line := range strings.Split(string(b), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		keys[m[1]] = true
		if i := strings.IndexByte(m[1], '.'); i > 0 {
			sections[m[1][:i]] = true
		}
		for _, e := range env.FindAllStringSubmatch(line, -1) {
			envs[e[1]] = true
		}
	}
	if len(keys) < 50 || len(sections) < 8 {
		t.Fatalf("configuration.md: read %d keys in %d sections; the table format changed?", len(keys), len(sections))
	}
	return keys, envs, sections
}

// testEnv are INFERGATE_* variables that are not settings: they steer tests,
// benchmarks and tools, and are read with os.Getenv in the code.
func testEnv(t *testing.T) map[string]bool {
	t.Helper()
	found := map[string]bool{"INFERGATE_CONFIG": true, "INFERGATE_ADMIN_TOKEN": true}
	// os.Getenv("INFERGATE_X") or a constant holding the name.
	get := regexp.MustCompile(`(?:Getenv\(|= )"(INFERGATE_[A-Z0-9_]+)"`)
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".sh") || strings.HasSuffix(path, ".py")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range get.FindAllSubmatch(b, -1) {
			found[string(m[1])] = true
		}
		// Shell scripts and Python read them as $INFERGATE_X / environ["INFERGATE_X"].
		for _, m := range regexp.MustCompile(`(?:\$\{?|environ(?:\.get)?\(?\[?["'])(INFERGATE_[A-Z0-9_]+)`).FindAllSubmatch(b, -1) {
			found[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// notSettings are dotted names in the docs that look like settings and are
// something else.
var notSettings = map[string]string{
	"ingress.origin":        "a record header set by the ingress",
	"ingress.device":        "a record header set by the ingress",
	"ingress.reply":         "a record header set by the ingress",
	"broker.data_dir":       "derived from data_dir, shown in broker.md's table of the broker's own settings",
	"pipeline.test_request": "an audit log action (dashboard.md), not a setting",
}

// notYet are settings the docs describe whose package fields are not yet
// reachable from the config file, environment or flags (issue 10 makes every
// package field reachable; issue 15 found these). The test fails when one of
// them becomes a setting, so the list only shrinks.
var notYet = map[string]bool{}

// Every `section.key` a document names in code spans is a setting, and every
// INFERGATE_* variable is a setting's or one the code reads.
func TestDocsNameOnlyExistingSettings(t *testing.T) {
	keys, envs, sections := reference(t)
	for k := range notYet {
		if keys[k] {
			t.Errorf("%s is a setting now: remove it from notYet", k)
		}
	}
	tenv := testEnv(t)
	span := regexp.MustCompile("`([^`\n]+)`")
	dotted := regexp.MustCompile(`^([a-z_]+)\.([a-z0-9_.]+)`)
	envRe := regexp.MustCompile(`INFERGATE_[A-Z0-9_]+`)
	for _, f := range docFiles(t) {
		if filepath.Base(f) == "configuration.md" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for n, line := range strings.Split(string(b), "\n") {
			for _, m := range span.FindAllStringSubmatch(line, -1) {
				d := dotted.FindStringSubmatch(m[1])
				if d == nil || !sections[d[1]] {
					continue
				}
				key := strings.TrimRight(d[0], ".")
				if keys[key] || isPrefix(keys, key) || notYet[key] || notSettings[key] != "" {
					continue
				}
				// A file name, e.g. `store.go`, `demo.onnx`.
				if ext := filepath.Ext(key); ext == ".go" || ext == ".md" || ext == ".onnx" || ext == ".json" || ext == ".yaml" {
					continue
				}
				t.Errorf("%s:%d: `%s` names setting %q, which configuration.md does not have", f, n+1, m[1], key)
			}
			for _, e := range envRe.FindAllString(line, -1) {
				if !envs[e] && !tenv[e] && !isEnvPrefix(envs, e) && !derived(tenv, e) {
					t.Errorf("%s:%d: %s is neither a setting's environment variable nor one the code reads", f, n+1, e)
				}
			}
		}
	}
}

// isPrefix allows a section's sub-group, e.g. `pipeline.retry` for
// pipeline.retry_*; a written-out prefix of existing keys.
func isPrefix(keys map[string]bool, k string) bool {
	for key := range keys {
		if strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"_") {
			return true
		}
	}
	return false
}

// isEnvPrefix allows INFERGATE_TOPICS_ standing for a family of variables.
func isEnvPrefix(envs map[string]bool, e string) bool {
	if !strings.HasSuffix(e, "_") {
		return false
	}
	for v := range envs {
		if strings.HasPrefix(v, e) {
			return true
		}
	}
	return false
}

// derived allows NAME_SUFFIX read as a constant NAME plus a suffix
// (os.Getenv(measureEnv + "_DIR")).
func derived(found map[string]bool, e string) bool {
	for v := range found {
		if strings.HasPrefix(e, v+"_") {
			return true
		}
	}
	return false
}

type block struct {
	file string
	line int
	lang string
	text string
}

// fenced returns the fenced code blocks of a Markdown file.
func fenced(t *testing.T, file string) []block {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []block
	var cur *block
	var buf strings.Builder
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &block{file: file, line: n, lang: strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))}
			buf.Reset()
		case cur != nil && trimmed == "```":
			cur.text = buf.String()
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			buf.WriteString(line)
			buf.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Errorf("%s:%d: fenced block never closed", file, cur.line)
	}
	return out
}

// Every ```json block is JSON: one document, or one per line (JSON lines).
func TestDocsJSONExamplesParse(t *testing.T) {
	n := 0
	for _, f := range docFiles(t) {
		for _, b := range fenced(t, f) {
			if b.lang != "json" {
				continue
			}
			n++
			if json.Valid([]byte(b.text)) {
				continue
			}
			for i, line := range strings.Split(strings.TrimSpace(b.text), "\n") {
				if !json.Valid([]byte(line)) {
					t.Errorf("%s:%d: JSON example line %d is not JSON: %s", b.file, b.line, i+1, line)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no ```json blocks found; did the docs move?")
	}
}

// Every ```yaml block whose top-level keys are all config sections is an
// infergate config file: it loads and validates as written.
func TestDocsConfigExamplesLoad(t *testing.T) {
	_, _, sections := reference(t)
	sections["data_dir"], sections["profile"], sections["min_free_bytes"] = true, true, true
	top := regexp.MustCompile(`^([a-z_]+):`)
	n := 0
	for _, f := range append(docFiles(t), filepath.Join("..", "packaging", "deb", "infergate.yaml")) {
		var blocks []block
		if strings.HasSuffix(f, ".yaml") {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			blocks = []block{{file: f, line: 1, lang: "yaml", text: string(b)}}
		} else {
			blocks = fenced(t, f)
		}
		for _, b := range blocks {
			if b.lang != "yaml" {
				continue
			}
			var tops []string
			for _, line := range strings.Split(b.text, "\n") {
				if m := top.FindStringSubmatch(line); m != nil {
					tops = append(tops, m[1])
				}
			}
			if len(tops) == 0 || !all(tops, sections) {
				continue
			}
			n++
			dir := t.TempDir()
			path := filepath.Join(dir, "infergate.yaml")
			text := strings.ReplaceAll(b.text, "/var/lib/infergate", filepath.Join(dir, "data"))
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			// Secrets come from the environment, never from a file.
			var secrets []string
			if strings.Contains(b.text, "INFERGATE_BROKER_SASL_PASSWORD") {
				secrets = append(secrets, "INFERGATE_BROKER_SASL_PASSWORD=doc-example-password")
			}
			cfg, err := appliance.Load([]string{"--config", path}, secrets, new(strings.Builder))
			if err == nil {
				err = cfg.Validate()
			}
			if err != nil {
				t.Errorf("%s:%d: config example (sections %s) does not load: %v", b.file, b.line, strings.Join(uniq(tops), ", "), err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no config examples found; did the docs move?")
	}
	t.Logf("%d config examples load", n)
}

func all(xs []string, set map[string]bool) bool {
	for _, x := range xs {
		if !set[x] {
			return false
		}
	}
	return true
}

func uniq(xs []string) []string {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	out := make([]string, 0, len(m))
	for x := range m {
		out = append(out, x)
	}
	sort.Strings(out)
	return out
}

// The Debian conffile says "the commented values are the defaults": with
// every commented setting uncommented (except the profile, which changes
// defaults), it loads to exactly the configuration of an empty file.
func TestConffileCommentsAreTheDefaults(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "packaging", "deb", "infergate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`^# ( *)([a-z_]+:.*)$`)
	var out []string
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		m := setting.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(m[2], "profile:") {
			out = append(out, line)
			continue
		}
		// "# log:" is top level, "#   level: info" two spaces under it.
		out = append(out, m[1]+m[2])
		n++
	}
	if n < 20 {
		t.Fatalf("uncommented only %d settings; the conffile's format changed?", n)
	}
	dir := t.TempDir()
	full := filepath.Join(dir, "full.yaml")
	empty := filepath.Join(dir, "empty.yaml")
	data := "data_dir: " + filepath.Join(dir, "data") + "\n"
	text := strings.ReplaceAll(strings.Join(out, "\n"), "data_dir: /var/lib/infergate", "")
	if err := os.WriteFile(full, []byte(data+text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := appliance.Load([]string{"--config", full}, nil, new(strings.Builder))
	if err != nil {
		t.Fatalf("the conffile with its comments uncommented does not load: %v\n%s", err, text)
	}
	want, err := appliance.Load([]string{"--config", empty}, nil, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	gj, _ := json.MarshalIndent(got, "", " ")
	wj, _ := json.MarshalIndent(want, "", " ")
	gl, wl := strings.Split(string(gj), "\n"), strings.Split(string(wj), "\n")
	if len(gl) != len(wl) {
		t.Fatalf("configs differ in shape:\n%s\nvs defaults\n%s", gj, wj)
	}
	for i := range gl {
		if gl[i] != wl[i] && !strings.Contains(gl[i], "config") {
			t.Errorf("conffile comment differs from the default: %s (default %s)", strings.TrimSpace(gl[i]), strings.TrimSpace(wl[i]))
		}
	}
}
