package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/infergate/infergate/appliance"
)

// `infergate service install|uninstall|run` makes infergate a Windows service
// (service_windows.go). Elsewhere the platform's service manager runs
// `infergate run`: the .deb ships a systemd unit (docs/install.md). What does
// not depend on Windows is here, so that it is tested on Linux.

const serviceName = "infergate"

const serviceSynopsis = `service install [run flags] | uninstall | run [run flags]

  install    register infergate as a Windows service (automatic start, restart on
             failure) that runs 'infergate run' with the flags given here;
             settings: %ProgramData%\infergate\infergate.yaml, data: %ProgramData%\infergate\data
  uninstall  stop and remove the service (the data stays)
  run        what the service manager starts; not for interactive use`

// parseService splits `service` arguments into the verb and the flags of
// `infergate run`, which are checked now so that a typo fails the install
// rather than every start of the service.
func parseService(args []string) (verb string, runArgs []string, err error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		return "", nil, usageErr(errors.New("want install, uninstall or run; usage: infergate " + serviceSynopsis))
	}
	verb, runArgs = args[0], args[1:]
	switch verb {
	case "install", "run":
		// Only parsed, not validated: the config file the service reads may
		// complete the settings.
		if _, err := appliance.Load(runArgs, nil, io.Discard); err != nil {
			return "", nil, usageErr(fmt.Errorf("%s: %w", verb, err))
		}
	case "uninstall":
		if len(runArgs) > 0 {
			return "", nil, usageErr(fmt.Errorf("uninstall takes no arguments, got %q", runArgs))
		}
	default:
		return "", nil, usageErr(fmt.Errorf("unknown service command %q: want install, uninstall or run", verb))
	}
	return verb, runArgs, nil
}

// svcState is what the service reports to the service manager.
type svcState int

const (
	svcStarting svcState = iota
	svcRunning
	svcStopping
	svcStopped
)

// svcRequest is a control request of the service manager.
type svcRequest int

const (
	svcInterrogate svcRequest = iota // report the current state again
	svcStop                          // stop or system shutdown
)

// serviceLoop runs the appliance for the service manager: run until it
// returns on its own (a component failed) or a stop request cancels it and
// the drain finishes. Every state change goes through report, and an
// interrogation repeats the current state.
func serviceLoop(ctx context.Context, reqs <-chan svcRequest, report func(svcState), run func(context.Context) error) error {
	report(svcStarting)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	state := svcRunning
	report(state)
	for {
		select {
		case err := <-done:
			report(svcStopped)
			return err
		case r, ok := <-reqs:
			if !ok {
				reqs = nil // the manager went away: keep running until run ends
				continue
			}
			switch r {
			case svcInterrogate:
				report(state)
			case svcStop:
				state = svcStopping
				report(state)
				cancel()
				err := <-done
				report(svcStopped)
				return err
			}
		}
	}
}
