package main

import (
	"context"
	"fmt"

	"github.com/infergate/infergate/buildinfo"
)

// cmdVersion prints the build (see package buildinfo for where each value
// comes from); the dashboard, /metrics and model-server --version read the same.
func cmdVersion(_ context.Context, args []string, io stdio) error {
	fs := newFlagSet("version", "version", io.err)
	if err := fs.Parse(args); err != nil {
		return helpOrUsage(err)
	}
	in := buildinfo.Get()
	fmt.Fprintf(io.out, "infergate %s\ncommit %s\nbuilt %s\n%s %s\n", in.Version, in.Commit, in.Date, in.GoVersion, in.Platform)
	return nil
}
