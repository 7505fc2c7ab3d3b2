package buildinfo

import (
	"maps"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func vcs(kv ...string) *debug.BuildInfo {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/infergate/infergate", Version: "v0.0.0-20261204170000-0123456789ab+dirty"}}
	for i := 0; i < len(kv); i += 2 {
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
	}
	return bi
}

func TestResolve(t *testing.T) {
	plain := vcs("vcs.revision", "0123456789abcdef", "vcs.time", "2026-12-04T17:00:00Z", "vcs.modified", "true")
	for _, tc := range []struct {
		name                  string
		version, commit, date string
		bi                    *debug.BuildInfo
		want                  Info
	}{
		{"release build: the stamped values win", "v1.2.3", "abc", "2026-12-05T00:00:00Z", plain,
			Info{Version: "v1.2.3", Commit: "abc", Date: "2026-12-05T00:00:00Z"}},
		{"plain go build: the go command's VCS stamp", "", "", "", plain,
			Info{Version: "v0.0.0-20261204170000-0123456789ab+dirty", Commit: "0123456789abcdef-dirty", Date: "2026-12-04T17:00:00Z"}},
		{"clean tree: no -dirty", "", "", "", vcs("vcs.revision", "0123", "vcs.modified", "false"),
			Info{Version: "v0.0.0-20261204170000-0123456789ab+dirty", Commit: "0123", Date: "unknown"}},
		{"stamped commit is not marked dirty by the VCS stamp", "", "abc", "", plain,
			Info{Version: "v0.0.0-20261204170000-0123456789ab+dirty", Commit: "abc", Date: "2026-12-04T17:00:00Z"}},
		{"go run / go test: no VCS data", "", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			Info{Version: "devel", Commit: "unknown", Date: "unknown"}},
		{"no build info at all", "", "", "", nil, Info{Version: "devel", Commit: "unknown", Date: "unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resolve(tc.version, tc.commit, tc.date, tc.bi)
			if got.Version != tc.want.Version || got.Commit != tc.want.Commit || got.Date != tc.want.Date {
				t.Errorf("got %+v, want version %q commit %q date %q", got, tc.want.Version, tc.want.Commit, tc.want.Date)
			}
			if got.GoVersion == "" || !strings.Contains(got.Platform, "/") {
				t.Errorf("GoVersion %q / Platform %q not filled", got.GoVersion, got.Platform)
			}
		})
	}
}

func TestCollectorMatchesGet(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != 1 || fams[0].GetName() != "infergate_build_info" || len(fams[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, want one infergate_build_info series", fams)
	}
	m := fams[0].GetMetric()[0]
	if v := m.GetGauge().GetValue(); v != 1 {
		t.Errorf("value %v, want 1", v)
	}
	in := Get()
	want := map[string]string{"version": in.Version, "commit": in.Commit, "date": in.Date, "goversion": in.GoVersion, "platform": in.Platform}
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	if !maps.Equal(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
}
