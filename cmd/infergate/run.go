package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/inference/modelserver"
)

// cmdRun is `infergate run`: settings errors exit with 2 before anything
// starts; a failure to start or a component failing later exits with 1; a
// signal is a clean stop (0).
func cmdRun(ctx context.Context, args []string, io stdio) error {
	cfg, err := appliance.Load(args, io.environ, io.out)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return usageErr(err)
	}
	if err := cfg.Validate(); err != nil {
		return usageErr(err)
	}
	logger := appliance.NewLogger(cfg.Log, io.err)
	for _, w := range cfg.Warnings() {
		logger.Warn(w)
	}
	a, err := appliance.New(*cfg, logger)
	if err != nil {
		return err
	}
	if t := a.GeneratedToken(); t != "" && isTerminal(io.err) {
		// On a terminal only: never into a log file or journal.
		fmt.Fprintf(io.err, "\nadmin token (shown only this once; also in %s):\n\n    %s\n\n", a.Paths().AdminToken, t)
	}
	return a.Run(ctx)
}

// cmdModelServer is `infergate model-server`, a stand-in for
// tensorflow_model_server with its flags.
func cmdModelServer(ctx context.Context, args []string, io stdio) error {
	// ModelServerMain prefixes its errors with "model-server:" itself.
	if err := modelserver.ModelServerMain(ctx, args, io.out, io.err); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "model-server: "))
	}
	return nil
}

// helpOrUsage turns a flag parsing error into the command's result: -h is
// not a failure; anything else was already printed by the flag package.
func helpOrUsage(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return usageError{error: err, printed: true}
}

// isTerminal says whether w is a terminal (a character device), so a secret
// shown on it does not end up in a file or a log collector.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
