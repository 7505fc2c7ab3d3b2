package appliance

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite golden files (docs/configuration.md)")

// load runs Load with the given file as --config, no environment.
func loadFile(t *testing.T, path string, env []string, args ...string) (*Config, error) {
	t.Helper()
	return Load(append([]string{"--config", path}, args...), env, nil)
}

func TestConfigFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// Copy to a fixed name so expected messages can name the file.
			path := filepath.Join(t.TempDir(), "config.yml")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := loadFile(t, path, nil)
			if err == nil {
				err = c.Validate()
			}
			switch {
			case strings.HasSuffix(f, ".good.yml"):
				if err != nil {
					t.Fatalf("want valid, got: %v", err)
				}
			case strings.HasSuffix(f, ".bad.yml"):
				first, _, _ := strings.Cut(string(data), "\n")
				want, ok := strings.CutPrefix(first, "# error: ")
				if !ok {
					t.Fatalf("first line of a .bad.yml must be '# error: <expected substring>'")
				}
				want = strings.ReplaceAll(want, "config.yml", path)
				if err == nil {
					t.Fatalf("want error containing %q, got none", want)
				}
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error does not contain %q:\n%v", want, err)
				}
			default:
				t.Fatalf("testdata file must end in .good.yml or .bad.yml")
			}
		})
	}
}

func TestFullFileValues(t *testing.T) {
	c, err := loadFile(t, "testdata/full.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		got, want any
	}{
		{c.DataDir, "/var/lib/infergate"},
		{c.Broker.Brokers, []string{"kafka-1:9092", "kafka-2:9092"}},
		{c.Broker.SASL.Password, "s3cret-password"},
		{c.Topics.Partitions, 12},
		{c.Topics.Retention, 72 * time.Hour},
		{c.Topics.RequestsBytes, int64(10 << 30)},
		{c.ModelServer.TFServingEndpoints, []string{"tfs-1:8500", "tfs-2:8500"}},
		{c.Pipeline.MaxBatchWait, 2 * time.Millisecond},
		{c.Pipeline.Delivery, ExactlyOnce},
		{c.Pipeline.InstanceID, "line-7-a"},
		{c.Pipeline.SessionTimeout, 15 * time.Second},
		{c.Pipeline.AutoOffsetReset, "latest"},
		{c.Store.SyncWrites, true},
		{c.Demo.Rate, 5.0},
		{c.Demo.SummaryInterval, time.Minute},
	}
	for i, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("check %d: got %v, want %v", i, ch.got, ch.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // no ./infergate.yaml here
	c, err := Load(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults must be valid: %v", err)
	}
	d := Default()
	c.origin = d.origin
	if !reflect.DeepEqual(*c, d) {
		t.Fatalf("Load with nothing set differs from Default():\n%+v\n%+v", *c, d)
	}
	// The defaults the README and docs/configuration.md promise.
	for _, ch := range []struct{ got, want any }{
		{d.DataDir, "./infergate-data"},
		{d.Broker.Listen, "127.0.0.1:9092"},
		{d.Pipeline.RequestsTopic, "inference_requests"},
		{d.Pipeline.ResultsTopic, "inference_results"},
		{d.Pipeline.DLQTopic, "inference_dlq"},
		{d.Topics.Partitions, 6},
		{d.Pipeline.Group, "infergate"},
		{d.ModelServer.GRPCListen, "127.0.0.1:8500"},
		{d.ModelServer.RESTListen, "127.0.0.1:8501"},
		{d.HTTP.Listen, "127.0.0.1:8080"},
		{d.Pipeline.DefaultModel, "demo"},
		{d.Pipeline.Delivery, AtLeastOnce},
	} {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("default %v, want %v", ch.got, ch.want)
		}
	}
}

func TestDefaultConfigFileIsRead(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile(DefaultConfigFile, []byte("topics:\n  partitions: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Topics.Partitions != 2 || c.ConfigFile() != DefaultConfigFile {
		t.Fatalf("partitions %d from %q", c.Topics.Partitions, c.ConfigFile())
	}
}

func TestMissingExplicitConfigFile(t *testing.T) {
	_, err := Load([]string{"--config", filepath.Join(t.TempDir(), "nope.yaml")}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "config file (--config, INFERGATE_CONFIG)") {
		t.Fatalf("got %v", err)
	}
	_, err = Load(nil, []string{"INFERGATE_CONFIG=" + filepath.Join(t.TempDir(), "nope.yaml")}, nil)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

// TestLayering: defaults < file < environment < flags, each key on its own.
func TestLayering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	err := os.WriteFile(path, []byte(`
data_dir: /from/file
broker:
  listen: 127.0.0.1:1111
topics:
  partitions: 3
  results: file-results
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"INFERGATE_BROKER_LISTEN=127.0.0.1:2222",
		"INFERGATE_DATA_DIR=/from/env",
		"INFERGATE_TOPICS_RESULTS=env-results",
		"INFERGATE_ADMIN_TOKEN=env-token-0123456789",
		"INFERGATE_BROKER_LISTN=typo",
		"PATH=/usr/bin",
	}
	c, err := loadFile(t, path, env, "--data-dir", "/from/flag", "--demo", "--delivery=exactly-once", "--brokers", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []struct{ got, want any }{
		{c.DataDir, "/from/flag"},
		{c.Broker.Listen, "127.0.0.1:2222"},
		{c.Topics.Partitions, 3},
		{c.Pipeline.ResultsTopic, "env-results"},
		{c.Pipeline.RequestsTopic, "inference_requests"},
		{c.HTTP.AdminToken, "env-token-0123456789"},
		{c.Demo.Enabled, true},
		{c.Pipeline.Delivery, ExactlyOnce},
	} {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("got %v, want %v", ch.got, ch.want)
		}
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "INFERGATE_BROKER_LISTN") {
		t.Errorf("warnings %q", w)
	}
	src := map[string]string{}
	for _, s := range c.Describe() {
		src[s.Key] = s.Source
		if s.Key == "http.admin_token" && s.Value != Redacted {
			t.Errorf("admin token not redacted: %q", s.Value)
		}
	}
	want := map[string]string{"data_dir": SourceFlag, "broker.listen": SourceEnv, "topics.partitions": SourceFile,
		"topics.requests": SourceDefault, "demo.enabled": SourceFlag}
	for k, v := range want {
		if src[k] != v {
			t.Errorf("source of %s = %q, want %q", k, src[k], v)
		}
	}
}

func TestBadFlagsAndEnv(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{args: []string{"--topic-partitions", "many"}, want: `topics.partitions: flag --topic-partitions: "many" is not a whole number`},
		{args: []string{"--demo=maybe"}, want: `demo.enabled: flag --demo: "maybe" is not true or false`},
		{args: []string{"--no-such-flag"}, want: "flag provided but not defined: -no-such-flag"},
		{args: []string{"extra"}, want: `unexpected argument "extra"`},
		{env: []string{"INFERGATE_DEMO_RATE=fast"}, want: `demo.rate: environment variable INFERGATE_DEMO_RATE: "fast" is not a number`},
		{args: []string{"--broker-listen", "127.0.0.1:99999"}, want: `broker.listen (--broker-listen, INFERGATE_BROKER_LISTEN): "127.0.0.1:99999": port "99999" is not a number between 0 and 65535`},
		{args: []string{"--grpc-listen", "127.0.0.1:8080"}, want: "http.listen (--http-listen, INFERGATE_HTTP_LISTEN): port 8080 is also used by model_server.grpc_listen (--grpc-listen, INFERGATE_MODEL_SERVER_GRPC_LISTEN)"},
		{args: []string{"--broker-tls"}, want: "broker.mode (--broker, INFERGATE_BROKER_MODE): TLS and SASL settings apply to an external cluster"},
	} {
		c, err := Load(tc.args, tc.env, nil)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v\nwant %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestValidateReportsEverything(t *testing.T) {
	c := Default()
	c.Topics.Partitions = 0
	c.Pipeline.MaxBatchSize = 0
	c.Demo.Rate = -1
	err := c.Validate()
	for _, key := range []string{"topics.partitions", "pipeline.max_batch_size", "demo.rate"} {
		if err == nil || !strings.Contains(err.Error(), key+" (") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	var buf bytes.Buffer
	_, err := Load([]string{"--help"}, nil, &buf)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v", err)
	}
	help := buf.String()
	c := Default()
	for _, s := range c.settings() {
		if s.Flag != "" && !strings.Contains(help, "--"+s.Flag) {
			t.Errorf("help lacks --%s", s.Flag)
		}
		if !strings.Contains(help, "config "+s.Key+", env "+s.envName()) {
			t.Errorf("help lacks the key and env of %s", s.Key)
		}
	}
	for _, f := range []string{"--config", "--data-dir", "--demo", "--broker", "--brokers", "--broker-listen", "--broker-advertise",
		"--model-server", "--tfserving-bin", "--tfserving-endpoints", "--grpc-listen", "--rest-listen", "--http-listen",
		"--delivery", "--requests-topic", "--results-topic", "--dlq-topic", "--group"} {
		if !strings.Contains(help, "  "+f+" ") && !strings.Contains(help, "  "+f+"\n") {
			t.Errorf("help lacks the documented flag %s", f)
		}
	}
}

// TestTableMatchesStruct: every setting's key is the yaml path of the field
// it points to, so the Config struct can also be decoded with yaml and
// KnownFields (as other tools may do), and no field is left out of the table.
func TestTableMatchesStruct(t *testing.T) {
	var c Config
	table := c.settings()
	seen := map[string]bool{}
	envs := map[string]bool{}
	flags := map[string]bool{}
	for _, s := range table {
		if seen[s.Key] || envs[s.envName()] || (s.Flag != "" && flags[s.Flag]) {
			t.Errorf("duplicate key, env or flag in %s", s.Key)
		}
		seen[s.Key], envs[s.envName()], flags[s.Flag] = true, true, s.Flag != ""
		if s.Help == "" {
			t.Errorf("%s has no help", s.Key)
		}
		if s.Secret != (s.Flag == "") {
			t.Errorf("%s: secrets, and only secrets, have no flag", s.Key)
		}
	}
	// Each row binds its own field: the package Configs composed into
	// Config are set through these pointers, so two rows on one field would
	// make one of them dead (TestEverySettingReachesItsField checks that
	// each row's field is what the file, the environment and the flag set).
	fields := map[any]string{}
	for _, s := range table {
		if other, dup := fields[s.val.ptr()]; dup {
			t.Errorf("%s and %s set the same field", other, s.Key)
		}
		fields[s.val.ptr()] = s.Key
	}
}

func yamlScalar(s setting) string {
	switch l := s.val.(type) {
	case listValue:
		return "[" + strings.Join(*l.p, ", ") + "]"
	case int64ListValue:
		return "[" + strings.ReplaceAll(l.String(), ",", ", ") + "]"
	}
	switch s.val.(type) {
	case stringValue, durationValue:
		return `"` + s.val.String() + `"`
	}
	return s.val.String()
}

// nested renders a.b.c: v as a one-key YAML document.
func nested(key, v string) string {
	parts := strings.Split(key, ".")
	var b strings.Builder
	for i, p := range parts {
		b.WriteString(strings.Repeat("  ", i) + p + ":")
		if i == len(parts)-1 {
			b.WriteString(" " + v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// mergeYAML merges many one-key documents (concatenated) into one mapping.
func mergeYAML(t *testing.T, concatenated string) string {
	t.Helper()
	merged := map[string]any{}
	var merge func(dst, src map[string]any)
	merge = func(dst, src map[string]any) {
		for k, v := range src {
			if sm, ok := v.(map[string]any); ok {
				dm, _ := dst[k].(map[string]any)
				if dm == nil {
					dm = map[string]any{}
					dst[k] = dm
				}
				merge(dm, sm)
				continue
			}
			dst[k] = v
		}
	}
	for _, docText := range splitDocs(concatenated) {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(docText), &m); err != nil {
			t.Fatalf("%v in %s", err, docText)
		}
		merge(merged, m)
	}
	out, err := yaml.Marshal(merged)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func splitDocs(s string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" && line[0] != ' ' && cur.Len() > 0 {
			docs = append(docs, cur.String())
			cur.Reset()
		}
		cur.WriteString(line)
	}
	if cur.Len() > 0 {
		docs = append(docs, cur.String())
	}
	return docs
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.Broker.SASL.Password = "hunter2hunter2"
	c.HTTP.AdminToken = "tok-0123456789abcdef"
	c.Broker.Brokers = []string{"a:1"}
	r := c.Redacted()
	if r.Broker.SASL.Password != Redacted || r.HTTP.AdminToken != Redacted {
		t.Fatalf("not redacted: %+v", r)
	}
	if c.Broker.SASL.Password != "hunter2hunter2" {
		t.Fatal("Redacted changed the original")
	}
	r.Broker.Brokers[0] = "changed"
	if c.Broker.Brokers[0] != "a:1" {
		t.Fatal("Redacted shares slices with the original")
	}
	d := Default()
	if d.Redacted().HTTP.AdminToken != "" {
		t.Fatal("an unset secret reads as set")
	}
}

// TestConfigurationDoc keeps docs/configuration.md in step with the table.
// Regenerate with: go test ./appliance -run TestConfigurationDoc -update
func TestConfigurationDoc(t *testing.T) {
	path := filepath.Join("..", "docs", "configuration.md")
	want := ConfigurationMarkdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != want {
		t.Fatalf("%s is out of date: go test ./appliance -run TestConfigurationDoc -update", path)
	}
}

// TestTransactionalIDDerived: with no delivery.transactional_id, two
// instances on one host (two data dirs) get different ids, each stable
// across restarts; a static member id is used when set.
func TestTransactionalIDDerived(t *testing.T) {
	a, b := Default(), Default()
	a.DataDir, b.DataDir = "/var/lib/infergate-a", "/var/lib/infergate-b"
	if a.TransactionalID() == b.TransactionalID() {
		t.Errorf("two data dirs share transactional id %q", a.TransactionalID())
	}
	again := Default()
	again.DataDir = "/var/lib/infergate-a"
	if a.TransactionalID() != again.TransactionalID() {
		t.Errorf("not stable: %q then %q", a.TransactionalID(), again.TransactionalID())
	}
	a.Pipeline.InstanceID = "infergate-2"
	if got := a.TransactionalID(); got != "infergate-infergate-2" {
		t.Errorf("with instance id: %q", got)
	}
	a.Pipeline.TransactionalID = "explicit"
	if got := a.TransactionalID(); got != "explicit" {
		t.Errorf("explicit: %q", got)
	}
}
