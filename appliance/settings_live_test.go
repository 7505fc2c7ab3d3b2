package appliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/store"
	"github.com/infergate/infergate/web"
)

// settingsTestFile is a config file like an operator's: comments, a
// section, and what the tests need (free ports, a temp data dir).
func settingsTestFile(t *testing.T) (file string, args []string) {
	t.Helper()
	dir := t.TempDir()
	file = filepath.Join(dir, "infergate.yaml")
	text := fmt.Sprintf(`# line 3's box
data_dir: %s
log:
  level: info   # keep me
broker:
  listen: 127.0.0.1:0
  durability: os
model_server:
  grpc_listen: 127.0.0.1:0
  rest_listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
topics:
  partitions: 2
`, filepath.Join(dir, "data"))
	if err := os.WriteFile(file, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	// demo.rate from a flag: the flag overrides the file, so the dashboard may not change it.
	return file, []string{"--config", file, "--demo-rate", "30"}
}

func loadArgs(t *testing.T, args []string) Config {
	t.Helper()
	c, err := Load(args, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return *c
}

type settingsAnswer struct {
	Error    string               `json:"error"`
	Problems []web.SettingProblem `json:"problems"`
	web.SettingsUpdate
}

func (c *apiClient) putSettings(body any) (int, settingsAnswer) {
	c.t.Helper()
	code, data := c.do("PUT", "/api/v1/settings", body)
	var ans settingsAnswer
	if err := json.Unmarshal(data, &ans); err != nil {
		c.t.Fatalf("PUT /api/v1/settings: %d %s: %v", code, data, err)
	}
	return code, ans
}

type settingsGet struct {
	ConfigFile string        `json:"config_file"`
	Editable   bool          `json:"editable"`
	Items      []settingView `json:"items"`
}

func (s settingsGet) item(key string) settingView {
	for _, it := range s.Items {
		if it.Key == key {
			return it
		}
	}
	return settingView{}
}

// TestSettingsFromTheDashboard changes settings through PUT /api/v1/settings of a running
// appliance started with a config file: a refused change names the setting and writes
// nothing; a viewer and an operator get 403; log.level, pipeline.max_batch_size and
// store.dlq_max_records apply at once (seen in the log view, the batches on /metrics and
// the DLQ store); a restart-only setting is written to the file, shown as pending, and read
// by the restarted appliance; every change is audited with its actor.
func TestSettingsFromTheDashboard(t *testing.T) {
	file, args := settingsTestFile(t)
	c := loadArgs(t, args)
	a := startWith(t, c, NewLogger(c.Log, testutil.Writer(t)))
	api := newAPIClient(t, a)
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	// Refused: each problem names its key; nothing is written or applied.
	for _, tc := range []struct {
		body     map[string]any
		key, msg string
	}{
		{map[string]any{"pipeline.max_batch_size": 0}, "pipeline.max_batch_size", "0 is not between 1 and 65536"},
		{map[string]any{"pipeline.max_batch_size": "many"}, "pipeline.max_batch_size", "is not a whole number"},
		{map[string]any{"log.level": "loud"}, "log.level", `"loud" is not one of debug, info, warn, error`},
		{map[string]any{"pipeline.max_bach_size": 8}, "pipeline.max_bach_size", `did you mean "pipeline.max_batch_size"`},
		{map[string]any{"demo.rate": 5}, "demo.rate", "set by the flag --demo-rate"},
		{map[string]any{"broker.sasl.password": "x"}, "broker.sasl.password", "a secret"},
		{map[string]any{"pipeline.retry_backoff": "5s", "pipeline.retry_backoff_max": "1s"}, "pipeline.retry_backoff_max", "is below the first backoff"},
		{map[string]any{"log.level": "debug", "store.dlq_max_records": -1}, "store.dlq_max_records", "must be >= 0"},
	} {
		code, ans := api.putSettings(tc.body)
		found := false
		for _, p := range ans.Problems {
			found = found || (p.Key == tc.key && strings.Contains(p.Message, tc.msg) && strings.Contains(ans.Error, tc.key))
		}
		if code != 400 || !found {
			t.Errorf("PUT %v: %d %+v, want 400 naming %s: %s", tc.body, code, ans, tc.key, tc.msg)
		}
	}
	if after, _ := os.ReadFile(file); string(after) != string(before) {
		t.Fatalf("a refused change was written:\n%s", after)
	}
	if got := a.Pipeline().Tuning().MaxBatchSize; got != c.Pipeline.MaxBatchSize {
		t.Fatalf("a refused change was applied: max batch size %d", got)
	}

	// Only an admin: a viewer and an operator read the settings and get 403 changing them.
	for _, role := range []string{"viewer", "operator"} {
		api.json("POST", "/api/v1/users", map[string]string{"name": role + "1", "role": role, "password": "pw-0123456789-" + role}, 201, nil)
		var tok struct{ Token string }
		api.json("POST", "/api/v1/users/"+role+"1/tokens", map[string]string{"name": "script"}, 201, &tok)
		as := &apiClient{t: t, base: api.base, token: tok.Token}
		if code, _ := as.do("GET", "/api/v1/settings", nil); code != 200 {
			t.Errorf("GET /api/v1/settings as %s: %d", role, code)
		}
		if code, body := as.do("PUT", "/api/v1/settings", map[string]any{"log.level": "debug"}); code != 403 || !strings.Contains(string(body), "admin") {
			t.Errorf("PUT /api/v1/settings as %s: %d %s, want 403", role, code, body)
		}
	}

	// Live: the log level. At info, web's debug record of a refused request is not logged.
	debugSeen := func() bool {
		t.Helper()
		api.do("GET", "/api/v1/dlq?limit=0", nil) // 400, logged at debug
		var logs struct{ Entries []json.RawMessage }
		api.json("GET", "/api/v1/logs?level=debug&q="+url.QueryEscape("request rejected"), nil, 200, &logs)
		return len(logs.Entries) > 0
	}
	if debugSeen() {
		t.Fatal("debug records logged at log.level info")
	}
	code, ans := api.putSettings(map[string]any{"log.level": "debug", "pipeline.max_batch_size": 4, "store.dlq_max_records": 2})
	if code != 200 || len(ans.Applied) != 3 || len(ans.Restart) != 0 || ans.File != file {
		t.Fatalf("live change: %d %+v", code, ans)
	}
	if !debugSeen() {
		t.Error("log.level debug: no debug records in the log view")
	}

	// Live: the DLQ store keeps the newest 2 of 5 dead-lettered records.
	cl := producer(t, a)
	for i := range 5 {
		produce(t, cl, &kgo.Record{Key: []byte("k"), Value: []byte(fmt.Sprintf("garbled %d", i))})
	}
	testutil.Eventually(t, time.Minute, func() error {
		if n := a.pipelineStatus().DLQ["decode"]; n < 5 {
			return fmt.Errorf("%d dead-lettered", n)
		}
		if n, err := a.Store().Count(store.Filter{}); err != nil || n != 2 {
			return fmt.Errorf("%d records in the store (%v), want 2", n, err)
		}
		return nil
	})

	// Live: batches of at most 4 rows, from a backlog of 40 requests.
	if got := a.Pipeline().Tuning().MaxBatchSize; got != 4 {
		t.Fatalf("pipeline max batch size %d after the change", got)
	}
	api.json("POST", "/api/v1/pipeline/pause", nil, 200, nil)
	count0, small0 := batchSizes(t, a, 4)
	for i := range 40 {
		produce(t, cl, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: requestValue(fmt.Sprintf("b-%d", i), features(16, 0.2))})
	}
	api.json("POST", "/api/v1/pipeline/resume", nil, 200, nil)
	testutil.Eventually(t, time.Minute, func() error {
		if n := a.pipelineStatus().Results; n < 40 {
			return fmt.Errorf("%d results", n)
		}
		return nil
	})
	count1, small1 := batchSizes(t, a, 4)
	if count1 == count0 || small1-small0 != count1-count0 {
		t.Errorf("batches since the change: %d, of at most 4 rows: %d", count1-count0, small1-small0)
	}

	// After restart: written to the file (its comments and other settings kept), shown as
	// pending, the running value unchanged.
	code, ans = api.putSettings(map[string]any{"broker.compression": "zstd", "http.session_ttl": "2h", "log.level": "debug"})
	if code != 200 || len(ans.Restart) != 2 || len(ans.Applied) != 0 {
		t.Fatalf("restart change: %d %+v", code, ans)
	}
	var got settingsGet
	api.json("GET", "/api/v1/settings", nil, 200, &got)
	if it := got.item("broker.compression"); it.Value != "gzip" || it.Pending != "zstd" || it.Live {
		t.Errorf("broker.compression shown as %+v", it)
	}
	if it := got.item("log.level"); it.Value != "debug" || it.Pending != nil || !it.Live || it.Source != SourceFile {
		t.Errorf("log.level shown as %+v", it)
	}
	if it := got.item("demo.rate"); !strings.Contains(it.Locked, "--demo-rate") {
		t.Errorf("demo.rate shown as %+v", it)
	}
	if it := got.item("broker.tls.enabled"); it.Value != false || it.Type != "bool" {
		t.Errorf("a boolean shown as %+v", it)
	}
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# line 3's box", "level: debug # keep me", "partitions: 2", "max_batch_size: 4", "compression: zstd", "session_ttl: 2h"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("config file lacks %q:\n%s", want, text)
		}
	}
	var audit struct{ Entries []store.AuditEntry }
	api.json("GET", "/api/v1/audit?limit=20", nil, 200, &audit)
	n := 0
	for _, e := range audit.Entries {
		if e.Action == "settings.update" && e.Actor == "admin-token" {
			n++
		}
	}
	if n != 2 || !strings.Contains(audit.Entries[0].Detail, "broker.compression=zstd (after restart)") {
		t.Errorf("audit log: %d settings.update entries: %+v", n, audit.Entries)
	}

	// The restarted appliance reads them, from the same command line.
	a.cancel()
	<-a.done
	c2 := loadArgs(t, args)
	if c2.Broker.Compression != "zstd" || c2.Log.Level != "debug" || c2.Pipeline.MaxBatchSize != 4 || c2.Store.MaxRecords != 2 || c2.HTTP.SessionTTL != 2*time.Hour {
		t.Fatalf("restart read %+v %+v", c2.Broker, c2.Pipeline)
	}
	b := start(t, c2)
	api = newAPIClient(t, b)
	got = settingsGet{}
	api.json("GET", "/api/v1/settings", nil, 200, &got)
	if it := got.item("broker.compression"); it.Value != "zstd" || it.Pending != nil || it.Source != SourceFile {
		t.Errorf("after restart broker.compression shown as %+v", it)
	}
}

// batchSizes reads infergate_batch_size: how many batches, and how many of at most le rows.
func batchSizes(t *testing.T, a *running, le float64) (count, atMost uint64) {
	t.Helper()
	fams, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "infergate_batch_size" {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			count += h.GetSampleCount()
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == le {
					atMost += b.GetCumulativeCount()
				}
			}
		}
	}
	return count, atMost
}

func (a *running) pipelineStatus() pipelineStatusView {
	st := a.Pipeline().Status()
	return pipelineStatusView{Results: st.Results, DLQ: st.DLQ}
}

type pipelineStatusView struct {
	Results uint64
	DLQ     map[string]uint64
}

// TestSettingsNeedAConfigFile: started without a config file, a change is refused with
// the reason (it would be lost at the restart) and nothing is applied.
func TestSettingsNeedAConfigFile(t *testing.T) {
	a, err := New(testConfig(t), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.UpdateSettings(map[string]string{"log.level": "debug"})
	if !errors.Is(err, ErrNoConfigFile) || !errors.Is(err, web.ErrConflict) || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("change without a config file: %v", err)
	}
	if a.level.Level().String() != "INFO" {
		t.Fatalf("log level %s", a.level.Level())
	}
	v := a.settingsView()
	if v["editable"] != false || !strings.Contains(fmt.Sprint(v["read_only_reason"]), "without a config file") {
		t.Fatalf("settings view: editable %v, reason %v", v["editable"], v["read_only_reason"])
	}
}

// TestWriteSettings edits config files as an operator writes them: a key
// where it is (also written flat, "log.level: warn"), in its section, in a
// new section, in an empty file; comments and order stay.
func TestWriteSettings(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		set      map[string]string
		want     []string
	}{
		{"in place", "log:\n  level: info # why\n  format: json\n", map[string]string{"log.level": "warn"},
			[]string{"log:\n  level: warn # why\n  format: json\n"}},
		{"flat key", "log.level: info\n", map[string]string{"log.level": "error"}, []string{"log.level: error\n"}},
		{"into its section", "# box 7\npipeline:\n  group: g\n", map[string]string{"pipeline.max_batch_wait": "5ms", "model_server.sidecar.allowed_batch_sizes": "4,8"},
			[]string{"# box 7\npipeline:\n  group: g\n  max_batch_wait: 5ms\n", "model_server:\n  sidecar:\n    allowed_batch_sizes: [4, 8]\n"}},
		{"empty file", "", map[string]string{"store.sync_writes": "true", "broker.compression": "none"},
			[]string{"store:\n  sync_writes: true\n", "broker:\n  compression: none\n"}},
		{"empty section", "demo:\n", map[string]string{"demo.rate": "2.5"}, []string{"demo:\n  rate: 2.5\n"}},
		{"a string YAML would read as a number", "", map[string]string{"pipeline.default_input": "123"}, []string{`default_input: "123"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "infergate.yaml")
			if err := os.WriteFile(file, []byte(tc.in), 0o600); err != nil {
				t.Fatal(err)
			}
			c := Default()
			var changed []*setting
			table := c.settings()
			for i := range table {
				if v, ok := tc.set[table[i].Key]; ok {
					if err := table[i].val.Set(v); err != nil {
						t.Fatal(err)
					}
					changed = append(changed, &table[i])
				}
			}
			if err := writeSettings(file, changed, tc.set); err != nil {
				t.Fatal(err)
			}
			out, _ := os.ReadFile(file)
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("want %q in:\n%s", w, out)
				}
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", fi.Mode())
			}
			got, err := Load([]string{"--config", file}, nil, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.set {
				if s := valueOf(got, k); s != v {
					t.Errorf("%s reads back as %q, want %q", k, s, v)
				}
			}
		})
	}
}
