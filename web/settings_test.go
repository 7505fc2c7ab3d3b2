package web

import (
	"encoding/json"
	"testing"
)

// TestSettingText: a JSON value of PUT /api/v1/settings becomes the text the config file
// takes, as the appliance's settings table parses it.
func TestSettingText(t *testing.T) {
	for in, want := range map[string]string{
		`"250ms"`: "250ms", `64`: "64", `0.05`: "0.05", `1e3`: "1e3", `true`: "true", `false`: "false",
		`null`: "", `["a", "b"]`: "a,b", `[4, 8]`: "4,8", `""`: "",
	} {
		got, err := settingText(json.RawMessage(in))
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`{"a": 1}`, `[[1]]`, `[null]`} {
		if _, err := settingText(json.RawMessage(in)); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

// TestSettingsUpdateUnsupported: a backend that cannot change its settings answers 501.
func TestSettingsUpdateUnsupported(t *testing.T) {
	env := newEnv(t)
	expectCode(t, env.api("PUT", "/api/v1/settings", map[string]any{"log.level": "debug"}), 501)
}
