// Package buildinfo is the one source of the binary's version: the CLI's
// `infergate version`, the dashboard, /metrics' infergate_build_info and
// `infergate model-server --version` all read Get.
//
// A release build stamps the three values with the linker
// (scripts/release.sh does):
//
//	-X github.com/infergate/infergate/buildinfo.version=v1.2.3
//	-X github.com/infergate/infergate/buildinfo.commit=<git sha>
//	-X github.com/infergate/infergate/buildinfo.date=2026-12-04T17:00:00Z
//
// A plain `go build` in a git checkout is stamped by the go command instead
// (the module's pseudo-version, vcs.revision, vcs.time, vcs.modified), which
// Get falls back to, so such a build still names its commit.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set with -ldflags -X; empty in a build that does not set them.
var (
	version string
	commit  string
	date    string
)

// Info describes the running binary.
type Info struct {
	Version   string // "v1.2.3", a pseudo-version, or "devel"
	Commit    string // git commit, "-dirty" appended for a modified tree; "unknown" without VCS data
	Date      string // build date (release builds) or commit time (plain go build), RFC 3339; "unknown"
	GoVersion string
	Platform  string // GOOS/GOARCH, with GOARM for 32-bit ARM
}

// Get returns the stamped values, else those the go command recorded.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
}

// resolve prefers the linker-stamped values and fills the rest from bi.
func resolve(version, commit, date string, bi *debug.BuildInfo) Info {
	in := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	var modified, fromVCS bool
	var goarm string
	if bi != nil {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit, fromVCS = s.Value, true
				}
			case "vcs.time":
				if in.Date == "" {
					in.Date = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			case "GOARM":
				goarm = s.Value
			}
		}
	}
	if fromVCS && modified {
		in.Commit += "-dirty"
	}
	if runtime.GOARCH == "arm" && goarm != "" {
		in.Platform += "v" + goarm
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	if in.Date == "" {
		in.Date = "unknown"
	}
	return in
}

// String is the one-line form: "v1.2.3 (commit abc123, built 2026-12-04T17:00:00Z, go1.26 linux/arm64)".
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s %s)", i.Version, i.Commit, i.Date, i.GoVersion, i.Platform)
}

// Collector is the infergate_build_info gauge: always 1, the build in its labels,
// so a dashboard can join it to any other series.
func Collector() prometheus.Collector {
	in := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "infergate_build_info",
		Help: "1, labelled with the version, commit, build date and Go version of the running infergate.",
		ConstLabels: prometheus.Labels{
			"version": in.Version, "commit": in.Commit, "date": in.Date,
			"goversion": in.GoVersion, "platform": in.Platform,
		},
	})
	g.Set(1)
	return g
}
