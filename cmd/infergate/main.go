// Command infergate is the streaming-inference appliance: `infergate run`
// starts it; the other subcommands talk to it. main only parses, builds,
// runs and maps the error to an exit code; the wiring is in package appliance.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad flags, arguments or settings: nothing was started
)

// command is one subcommand. Commands read stdin/stdout/stderr only through
// these parameters so tests and the help stay honest.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdio stdio) error
}

type stdio struct {
	in       io.Reader
	out, err io.Writer
	environ  []string
}

func commands() []command {
	return []command{
		{"run", "run the appliance (broker, model server, pipeline, store, dashboard)", cmdRun},
		{"model-server", "run only the TF-Serving-compatible model server (tensorflow_model_server's flags)", cmdModelServer},
		{"produce", "send JSON lines (stdin or FILE) as records to a topic", cmdProduce},
		{"consume", "print the records of a topic, one value per line", cmdConsume},
		{"dlq", "list, show and replay dead-lettered requests", cmdDLQ},
		{"model", "model bench FILE|DIR: time a model on its own; model rollback|serve|delete-version|label: versions of a running appliance", cmdModel},
		{"rollout", "shadow a candidate version, shift traffic to it step by step, promote or abort (rollout start|status|report|percent|promote|abort)", cmdRollout},
		{"bench", "measure throughput and latency with an open-loop load generator (self-contained or --brokers)", cmdBench},
		{"service", "install, uninstall or run infergate as a Windows service", cmdService},
		{"version", "print the version (also: infergate --version)", cmdVersion},
		{"completion", "print a shell completion script: completion bash|zsh|fish", cmdCompletion},
	}
}

func main() {
	// The first SIGINT/SIGTERM cancels ctx and the appliance drains; a
	// second one kills the process the default way (NotifyContext's stop
	// restores default handling once ctx is done).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := dispatch(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr, environ: os.Environ()})
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, io stdio) int {
	switch {
	case len(args) == 2 && args[0] == "help":
		args = []string{args[1], "--help"} // help CMD is CMD --help
	case len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		usage(io.err)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	case args[0] == "--version" || args[0] == "-version":
		args = append([]string{"version"}, args[1:]...)
	case args[0] == completeCommand:
		complete(ctx, args[1:], io)
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], io)
		if err == nil {
			return exitOK
		}
		var ue usageError
		isUsage := errors.As(err, &ue)
		if !isUsage || !ue.printed {
			fmt.Fprintf(io.err, "infergate %s: %v\n", c.name, err)
		}
		if isUsage {
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(io.err, "infergate: unknown command %q\n\n", args[0])
	usage(io.err)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: infergate <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'infergate <command> --help' (or 'infergate help <command>') for the flags of a command;\n"+
		"'infergate --version' for the version; 'infergate completion bash|zsh|fish' for shell completion.")
}

// usageError marks errors in what the user asked for (exit code 2).
// printed means the flag package already reported it.
type usageError struct {
	error
	printed bool
}

func (u usageError) Unwrap() error { return u.error }

func usageErr(err error) error {
	if err == nil {
		return nil
	}
	return usageError{error: err}
}
