package main

import (
	"context"
	"fmt"

	"github.com/infergate/infergate/buildinfo"
	"github.com/infergate/infergate/notices"
)

// cmdVersion prints the build (see package buildinfo for where each value
// comes from); the dashboard, /metrics and model-server --version read the same.
func cmdVersion(_ context.Context, args []string, io stdio) error {
	fs := newFlagSet("version", "version [--notices]", io.err)
	showNotices := fs.Bool("notices", false, "print the licenses and notices of the third-party code in this binary")
	if err := fs.Parse(args); err != nil {
		return helpOrUsage(err)
	}
	if *showNotices {
		fmt.Fprint(io.out, notices.Text())
		return nil
	}
	in := buildinfo.Get()
	fmt.Fprintf(io.out, "infergate %s\ncommit %s\nbuilt %s\n%s %s\n", in.Version, in.Commit, in.Date, in.GoVersion, in.Platform)
	return nil
}
