package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = ""

func cmdVersion(_ context.Context, args []string, io stdio) error {
	fs := newFlagSet("version", "version", io.err)
	if err := fs.Parse(args); err != nil {
		return helpOrUsage(err)
	}
	v, commit, modified := version, "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if commit == "" {
		commit = "unknown"
	} else if modified {
		commit += "-dirty"
	}
	fmt.Fprintf(io.out, "infergate %s\ncommit %s\n%s %s/%s\n", v, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
