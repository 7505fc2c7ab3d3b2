package modelserver

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/tfserving"
	"google.golang.org/protobuf/encoding/prototext"
)

func TestParseModelConfigText(t *testing.T) {
	models, err := ParseModelConfigText([]byte(`
# comment
model_config_list {
  config {
    name: 'demo'  base_path: '/abs/models/demo'  model_platform: 'tensorflow'
    model_version_policy { latest { num_versions: 2 } }
    version_labels { key: 'stable' value: 3 }
    version_labels { key: 'canary' value: 4 }
  }
  config { name: "b" base_path: "/b" model_version_policy { specific { versions: 3 versions: 4 } } }
  config { name: "c" base_path: "/c" model_version_policy { all {} } }
}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []tfserving.ModelConfig{
		{Name: "demo", BasePath: "/abs/models/demo", Platform: "tensorflow", Policy: tfserving.VersionPolicy{Latest: 2}, Labels: map[string]int64{"stable": 3, "canary": 4}},
		{Name: "b", BasePath: "/b", Policy: tfserving.VersionPolicy{Specific: []int64{3, 4}}},
		{Name: "c", BasePath: "/c", Policy: tfserving.VersionPolicy{All: true}},
	}
	if !reflect.DeepEqual(models, want) {
		t.Fatalf("got %+v", models)
	}
	for _, bad := range []struct{ text, msg string }{
		{`model_config_list { config { name: "a" base_path: "/a" } config { name: "a" base_path: "/b" } }`, "used twice"},
		{`model_config_list { config { base_path: "/a" } }`, "Name is empty"},
		{`model_config_list { config { name: "a" } }`, "BasePath is empty"},
		{`model_config_list { config { name: "a" base_path: "/a" model_version_policy { specific {} } } }`, "lists no versions"},
		{`custom_model_config { }`, "custom_model_config"},
		{`model_config_list { config { name: "a" base_path: "/a" bogus: 1 } }`, "bogus"},
	} {
		if _, err := ParseModelConfigText([]byte(bad.text)); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%s: %v, want %q", bad.text, err, bad.msg)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mod func(*Config)
		msg string
	}{
		{func(c *Config) { c.GRPCListen, c.RESTListen = "127.0.0.1:8500", "127.0.0.1:8500" }, "must differ"},
		{func(c *Config) {
			c.ModelConfigFile = "x"
			c.Models = []tfserving.ModelConfig{{Name: "a", BasePath: "/a"}}
		}, "Models and ModelConfigFile"},
		{func(c *Config) { c.ModelConfigFilePoll = time.Second }, "ModelConfigFilePoll"},
		{func(c *Config) { c.MonitoringPath = "metrics" }, "MonitoringPath"},
		{func(c *Config) { c.MonitoringPath = "/v1/metrics" }, "MonitoringPath"},
		{func(c *Config) { c.RESTTimeout = -1 }, "RESTTimeout"},
		{func(c *Config) {
			c.Models = []tfserving.ModelConfig{{Name: "a", BasePath: "/a", Policy: tfserving.VersionPolicy{Latest: 1, All: true}}}
		}, "Policy"},
		{func(c *Config) {
			c.Models = []tfserving.ModelConfig{{Name: "a", BasePath: "/a", Labels: map[string]int64{"": 1}}}
		}, "Labels"},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("want %q, got %v", tc.msg, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseModelConfigText: the model config file is outside input. It must
// never panic, and what it accepts must survive a round trip through
// ModelsToProto.
func FuzzParseModelConfigText(f *testing.F) {
	for _, seed := range []string{
		`model_config_list { config { name: 'demo' base_path: '/m/demo' model_platform: 'tensorflow' } }`,
		`model_config_list { config { name: "a" base_path: "/a" model_version_policy { latest { num_versions: 3 } } version_labels { key: "x" value: 2 } } }`,
		`model_config_list { config { name: "a" base_path: "/a" model_version_policy { specific { versions: 1 versions: 9 } } } }`,
		`model_config_list { config { name: "a" base_path: "/a" model_version_policy { all {} } } }`,
		`custom_model_config {}`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		models, err := ParseModelConfigText(data)
		if err != nil {
			return
		}
		text, err := prototext.Marshal(ModelsToProto(models))
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseModelConfigText(text)
		if err != nil {
			t.Fatalf("round trip of %q: %v", text, err)
		}
		if len(again) != len(models) {
			t.Fatalf("round trip changed %d models into %d", len(models), len(again))
		}
		for i := range models {
			a, b := models[i], again[i]
			if a.Name != b.Name || a.BasePath != b.BasePath || a.Policy.String() != b.Policy.String() || len(a.Labels) != len(b.Labels) {
				t.Fatalf("round trip: %+v != %+v", a, b)
			}
		}
	})
}
