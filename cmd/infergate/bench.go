package main

import (
	"context"
	"errors"

	"github.com/infergate/infergate/bench"
)

// cmdBench is `infergate bench`; the load generator lives in package bench.
// A lost request or an error during the run exits with 1 after the report.
func cmdBench(ctx context.Context, args []string, io stdio) error {
	err := bench.Main(ctx, args, io.out, io.err)
	var ue *bench.UsageError
	if errors.As(err, &ue) {
		return usageError{error: ue.Err, printed: ue.Printed}
	}
	return err
}
