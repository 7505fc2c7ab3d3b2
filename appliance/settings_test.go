package appliance

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/bytesize"
	"github.com/infergate/infergate/web"
)

// Every validation error names a setting that exists, as "key (--flag,
// ENV)", and a setting whose value alone is invalid is named by the error it
// causes (or, for the few checks about how settings go together, by the
// setting the message tells the operator to change). Each setting is tried
// with values that are wrong for some kind of setting.
func TestEveryErrorNamesItsKey(t *testing.T) {
	def := Default()
	table := def.settings()
	described := map[string]string{}
	for _, s := range table {
		described[s.Key] = s.describe()
	}
	// Setting only the key on the left is refused with an error about the
	// key on the right, which must be changed together with it.
	together := map[string][]string{
		"broker.tls.ca_file":                        {"broker.tls.enabled"},
		"broker.tls.cert_file":                      {"broker.tls.enabled", "broker.tls.key_file"},
		"broker.tls.key_file":                       {"broker.tls.enabled"},
		"broker.tls.server_name":                    {"broker.tls.enabled"},
		"broker.tls.insecure_skip_verify":           {"broker.tls.enabled"},
		"broker.tls.enabled":                        {"broker.mode"},
		"broker.sasl.mechanism":                     {"broker.sasl.username", "broker.sasl.password", "broker.mode"},
		"broker.sasl.username":                      {"broker.sasl.mechanism"},
		"broker.sasl.password":                      {"broker.sasl.mechanism"},
		"broker.listen":                             {"broker.advertise"},
		"http.tls_key":                              {"http.tls_cert"},
		"model_server.sidecar.max_batch_size":       {"model_server.sidecar.enable_batching"},
		"model_server.sidecar.batch_timeout":        {"model_server.sidecar.enable_batching"},
		"model_server.sidecar.max_enqueued_batches": {"model_server.sidecar.enable_batching"},
		"model_server.sidecar.num_batch_threads":    {"model_server.sidecar.enable_batching"},
		"model_server.sidecar.allowed_batch_sizes":  {"model_server.sidecar.enable_batching"},
		"model_server.mode":                         {"model_server.tfserving_endpoints"},
		"broker.mode":                               {"broker.brokers"},
		"ingress.tls_cert":                          {"ingress.tls_key"},
		"pipeline.retry_backoff":                    {"pipeline.retry_backoff_max"},
		"model_server.sidecar.restart_backoff":      {"model_server.sidecar.restart_backoff_max"},
	}
	candidates := []string{"", "0", "-1", "-5", "1", "70000", "1e9", "99999999999", "x y", "-1s", "0s", "1ns", "2h",
		"true", "0.0.0.0:9092", "127.0.0.1:8080", "127.0.0.1:70000", "inference_requests", "--port=1", "3,2"}
	head := regexp.MustCompile(`^([a-z_.]+) \(`)
	for i, s := range table {
		named, failed := false, false
		for _, raw := range candidates {
			c := Default()
			if c.settings()[i].val.Set(raw) != nil {
				continue
			}
			err := c.Validate()
			if err == nil {
				continue
			}
			failed = true
			for _, line := range strings.Split(err.Error(), "\n") {
				m := head.FindStringSubmatch(line)
				if m == nil || !strings.HasPrefix(line, described[m[1]]+": ") {
					t.Errorf("%s=%q: error names no setting as \"key (--flag, ENV)\": %s", s.Key, raw, line)
					continue
				}
				if m[1] == s.Key || slices.Contains(together[s.Key], m[1]) {
					named = true
				}
			}
		}
		if failed && !named {
			t.Errorf("%s: invalid values are refused, but no error names it", s.Key)
		}
	}
}

// Every setting can be set from the config file, the environment and its
// flag, and each lands in the field its row binds — the field the component
// reads, since the package Configs are composed into Config rather than
// copied (HTTP is web.Config, Pipeline is pipeline.Config, Broker.TLS and
// .SASL are broker's types).
func TestEverySettingReachesItsField(t *testing.T) {
	def := Default()
	for i, s := range def.settings() {
		raw := map[string]string{}
		switch v := s.val.(type) {
		case stringValue:
			raw["v"] = "set-" + strings.ReplaceAll(s.Key, ".", "-")
		case intValue:
			raw["v"] = strconv.Itoa(*v.p + 7)
		case int64Value:
			raw["v"] = strconv.FormatInt(*v.p+7, 10)
		case sizeValue:
			raw["v"] = bytesize.Format(*v.p + 3<<20) // with a unit, as String writes it
		case floatValue:
			raw["v"] = strconv.FormatFloat(*v.p+0.25, 'g', -1, 64)
		case boolValue:
			raw["v"] = strconv.FormatBool(!*v.p)
		case durationValue:
			raw["v"] = (*v.p + 7*time.Second).String()
		case listValue:
			raw["v"] = "a:1,b:2"
		case int64ListValue:
			raw["v"] = "3,5"
		default:
			t.Fatalf("%s: no test value for %T", s.Key, s.val)
		}
		want := raw["v"]
		if s.Key == "profile" {
			want = "small" // the only values Load accepts
		}
		check := func(how string, args, env []string, file string) {
			t.Helper()
			if file != "" {
				path := filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", path)
			}
			c, err := Load(args, env, io.Discard)
			if err != nil {
				t.Errorf("%s via %s: %v", s.Key, how, err)
				return
			}
			if got := c.settings()[i].val.String(); got != want {
				t.Errorf("%s via %s: field is %q, want %q", s.Key, how, got, want)
			}
			if src := c.origin.sources[s.Key]; src != how {
				t.Errorf("%s via %s: source %q", s.Key, how, src)
			}
		}
		parts := strings.Split(s.Key, ".")
		var doc strings.Builder
		for j, p := range parts {
			doc.WriteString(strings.Repeat("  ", j) + p + ":")
			if j < len(parts)-1 {
				doc.WriteString("\n")
			}
		}
		doc.WriteString(" " + strconv.Quote(want) + "\n")
		if _, isList := s.val.(lister); isList {
			doc.Reset()
			for j, p := range parts {
				doc.WriteString(strings.Repeat("  ", j) + p + ":\n")
			}
			for _, item := range strings.Split(want, ",") {
				doc.WriteString(strings.Repeat("  ", len(parts)) + "- " + strconv.Quote(item) + "\n")
			}
		}
		check(SourceFile, nil, nil, doc.String())
		check(SourceEnv, nil, []string{s.envName() + "=" + want}, "")
		if s.Flag != "" {
			check(SourceFlag, []string{"--" + s.Flag + "=" + want}, nil, "")
		}
	}
}

// Every field of a package Config composed into Config is a setting (a
// table row binds it, so TestEverySettingReachesItsField covers it), or is
// listed here with how it is set instead. A field added to a package's
// Config without a row, or a section copied instead of composed, fails.
func TestEveryPackageFieldIsASetting(t *testing.T) {
	var c Config
	bound := map[any]bool{}
	for _, s := range c.settings() {
		bound[s.val.ptr()] = true
	}
	notSettings := map[string]string{
		"HTTP.UploadDir":           "the data dir's models/ (appliance/web.go)",
		"HTTP.UploadMinFree":       "min_free_bytes (appliance/web.go)",
		"HTTP.ShutdownTimeout":     "not tunable",
		"HTTP.RotateAdminToken":    "the appliance's token file (appliance/web.go)",
		"HTTP.Version":             "buildinfo (appliance/web.go)",
		"HTTP.Logs":                "the appliance's log ring (appliance/web.go)",
		"HTTP.Predictions":         "the pipeline's prediction feed (appliance/web.go)",
		"Rollout.CallTimeout":      "not tunable",
		"Rollout.MaxReportRecords": "not tunable",
		"Rollout.Now":              "the clock",
		"Store.Dir":                "the data dir's store/ (appliance.go storeComponent)",
		"Store.MinFreeBytes":       "min_free_bytes (appliance.go storeComponent)",
		"Store.GCInterval":         "not tunable",
		"Store.InMemory":           "not tunable",
		"Store.Now":                "the clock",
	}
	sections := map[string]any{
		"Pipeline":    &c.Pipeline,
		"HTTP":        &c.HTTP,
		"Rollout":     &c.Rollout,
		"Store":       &c.Store,
		"Broker.TLS":  &c.Broker.TLS,
		"Broker.SASL": &c.Broker.SASL,
	}
	for name, sec := range sections {
		v := reflect.ValueOf(sec).Elem()
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			path := name + "." + f.Name
			why, listed := notSettings[path]
			isBound := bound[v.Field(i).Addr().Interface()]
			switch {
			case isBound && listed && why != "":
				t.Errorf("%s is bound by a setting but listed as set by %s", path, why)
			case !isBound && !listed:
				t.Errorf("%s: no setting binds it; add a row to settings() or say here how it is set", path)
			}
		}
	}
}

// TestSizeUnits: every size setting takes a unit in the file, the environment and on the
// command line, and a bad size names the setting and the source.
func TestSizeUnits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "infergate.yaml")
	if err := os.WriteFile(path, []byte("http:\n  max_upload_bytes: 64MiB\ntopics:\n  dlq_bytes: 1.5GiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"--config", path, "--min-free-bytes", "512MiB"},
		[]string{"INFERGATE_MODEL_SERVER_MAX_MESSAGE_BYTES=8MB"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for what, got := range map[string][2]int64{
		"file http.max_upload_bytes": {c.HTTP.MaxUploadBytes, 64 << 20},
		"file topics.dlq_bytes":      {c.Topics.DLQBytes, 3 << 29},
		"flag min_free_bytes":        {c.MinFreeBytes, 512 << 20},
		"env max_message_bytes":      {c.ModelServer.MaxMessageBytes, 8_000_000},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %d, want %d", what, got[0], got[1])
		}
	}
	// Every BYTES setting is a size.
	for _, s := range c.settings() {
		if s.Arg == "BYTES" {
			if _, ok := s.val.(sizeValue); !ok {
				t.Errorf("%s takes BYTES but is a %T", s.Key, s.val)
			}
		}
	}
	_, err = Load([]string{"--config", path, "--ingress-max-store", "lots"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "ingress.max_store") || !strings.Contains(err.Error(), "--ingress-max-store") || !strings.Contains(err.Error(), `"lots"`) {
		t.Errorf("bad size: %v", err)
	}
}

// TestHTTPTestTimeout: http.test_timeout (added by following the "add a
// setting" recipe of docs/architecture.md) from the file, the environment
// and the flag, later ones winning, and refused at 0 naming its key.
func TestHTTPTestTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "infergate.yaml")
	if err := os.WriteFile(path, []byte("http:\n  test_timeout: 45s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		args []string
		want time.Duration
	}{
		{nil, nil, 45 * time.Second},
		{[]string{"INFERGATE_HTTP_TEST_TIMEOUT=1m"}, nil, time.Minute},
		{[]string{"INFERGATE_HTTP_TEST_TIMEOUT=1m"}, []string{"--http-test-timeout", "2m30s"}, 150 * time.Second},
	} {
		c, err := Load(append([]string{"--config", path}, tc.args...), tc.env, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.HTTP.TestTimeout != tc.want {
			t.Errorf("env %v args %v: http.test_timeout = %s, want %s", tc.env, tc.args, c.HTTP.TestTimeout, tc.want)
		}
	}
	if d := Default(); d.HTTP.TestTimeout != web.DefaultTestTimeout {
		t.Errorf("default %s, want web.DefaultTestTimeout %s", d.HTTP.TestTimeout, web.DefaultTestTimeout)
	}
	c, err := Load([]string{"--config", path, "--http-test-timeout", "0s"}, nil, nil)
	if err == nil {
		err = c.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "http.test_timeout (--http-test-timeout, INFERGATE_HTTP_TEST_TIMEOUT)") {
		t.Fatalf("http.test_timeout 0: %v", err)
	}
}

// TestHTTPErrorsNameTheSetting: web checks its own fields (web.Config's
// ValidateSettings) and the appliance names each by its setting, flag and
// variable — the checks are not written a second time in validate.go.
func TestHTTPErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		mutate func(c *Config)
		want   string
	}{
		{func(c *Config) { c.HTTP.SessionTTL = -time.Second }, "http.session_ttl (--http-session-ttl, INFERGATE_HTTP_SESSION_TTL): must be a positive duration"},
		{func(c *Config) { c.HTTP.ReadTimeout = 0 }, "http.read_timeout (--http-read-timeout, INFERGATE_HTTP_READ_TIMEOUT): must be a positive duration"},
		{func(c *Config) { c.HTTP.LoginFreeFailures = -1 }, "http.login_free_failures (--http-login-free-failures, INFERGATE_HTTP_LOGIN_FREE_FAILURES): must be >= 0"},
		{func(c *Config) { c.HTTP.LoginBackoff, c.HTTP.LoginMaxBackoff = time.Minute, time.Second }, "http.login_max_backoff (--http-login-max-backoff, INFERGATE_HTTP_LOGIN_MAX_BACKOFF)"},
		{func(c *Config) { c.HTTP.EventsInterval = time.Microsecond }, "http.events_interval (--http-events-interval, INFERGATE_HTTP_EVENTS_INTERVAL): must be between"},
		{func(c *Config) { c.HTTP.MaxUploadBytes = -1 }, "http.max_upload_bytes (--http-max-upload-bytes, INFERGATE_HTTP_MAX_UPLOAD_BYTES): must be positive"},
		{func(c *Config) { c.HTTP.TLSCert = "cert.pem" }, "http.tls_cert (--http-tls-cert, INFERGATE_HTTP_TLS_CERT)"},
		{func(c *Config) { c.HTTP.AdminToken = "short" }, "http.admin_token (INFERGATE_ADMIN_TOKEN): is 5 characters; use at least 16"},
	} {
		c := Default()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "not a setting") {
			t.Errorf("got %v\nwant an error containing %q", err, tc.want)
		}
	}
	// An empty listen (the dashboard off) and an empty token (generated) are fine.
	c := Default()
	c.HTTP.Listen, c.HTTP.AdminToken = "", ""
	if err := c.Validate(); err != nil {
		t.Errorf("no dashboard, no token: %v", err)
	}
}
