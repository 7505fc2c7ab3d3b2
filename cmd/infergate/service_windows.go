package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/infergate/infergate/appliance"
)

// stopWaitHint tells the service manager how long a stop may take: the
// pipeline's drain (30 s by default) and the components after it.
const stopWaitHint = 60 * time.Second

func cmdService(ctx context.Context, args []string, io stdio) error {
	verb, runArgs, err := parseService(args)
	if err != nil {
		return err
	}
	switch verb {
	case "install":
		return installService(runArgs, io)
	case "uninstall":
		return uninstallService(io)
	}
	return runService(runArgs)
}

func installService(runArgs []string, io stdio) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return err
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connecting to the service manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		return fmt.Errorf("service %s already exists; 'infergate service uninstall' first", serviceName)
	}
	s, err := m.CreateService(serviceName, exe, mgr.Config{
		DisplayName: "infergate",
		Description: "infergate streaming inference appliance (Kafka in, model, Kafka out)",
		StartType:   mgr.StartAutomatic,
	}, append([]string{"service", "run"}, runArgs...)...)
	if err != nil {
		return fmt.Errorf("creating service %s: %w", serviceName, err)
	}
	defer s.Close()
	// Restart after a failure, as systemd's Restart=on-failure does; a
	// failure is also an exit with an error, not only a crash.
	err = s.SetRecoveryActions([]mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
		{Type: mgr.ServiceRestart, Delay: time.Minute},
	}, uint32((24 * time.Hour).Seconds()))
	if err == nil {
		err = s.SetRecoveryActionsOnNonCrashFailures(true)
	}
	if err != nil {
		// A half-configured service would not restart after a failure and
		// would make the next install fail with "already exists": remove it.
		// (Wine 8.0's service manager refuses this call: "Invalid level".)
		if derr := s.Delete(); derr != nil {
			return fmt.Errorf("setting the restart policy of service %s: %w; removing the service again also failed: %v", serviceName, err, derr)
		}
		return fmt.Errorf("setting the restart policy of service %s: %w (the service was removed again)", serviceName, err)
	}
	home := appliance.WindowsHome()
	fmt.Fprintf(io.out, "installed service %s: %s service run %q\nsettings: %s\\infergate.yaml (optional)\ndata and admin token: %s\\data\nlog: %s\\infergate.log\nstart it: sc.exe start %s\n",
		serviceName, exe, runArgs, home, home, home, serviceName)
	return nil
}

func uninstallService(io stdio) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connecting to the service manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(serviceName)
	if err != nil {
		return fmt.Errorf("service %s is not installed: %w", serviceName, err)
	}
	defer s.Close()
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		if _, err := s.Control(svc.Stop); err != nil {
			return fmt.Errorf("stopping service %s: %w", serviceName, err)
		}
		for deadline := time.Now().Add(stopWaitHint); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if st, err := s.Query(); err != nil || st.State == svc.Stopped {
				break
			}
		}
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("removing service %s: %w", serviceName, err)
	}
	fmt.Fprintf(io.out, "removed service %s; the data in %s stays\n", serviceName, appliance.WindowsHome())
	return nil
}

// runService is what the service manager starts. The working directory of
// a service is System32, so it moves to %ProgramData%\infergate, where
// ./infergate.yaml is read and the log is written.
func runService(runArgs []string) error {
	isService, err := svc.IsWindowsService()
	if err != nil {
		return err
	}
	if !isService {
		return usageErr(errors.New("run is started by the service manager; use 'infergate run' interactively"))
	}
	home := appliance.WindowsHome()
	if err := os.MkdirAll(home, 0o750); err != nil {
		return err
	}
	if err := os.Chdir(home); err != nil {
		return err
	}
	logFile, err := os.OpenFile("infergate.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer logFile.Close()
	h := &serviceHandler{run: func(ctx context.Context) error {
		return cmdRun(ctx, runArgs, stdio{in: os.Stdin, out: logFile, err: logFile, environ: os.Environ()})
	}}
	if err := svc.Run(serviceName, h); err != nil {
		fmt.Fprintf(logFile, "service %s: %v\n", serviceName, err)
		return err
	}
	return h.err
}

type serviceHandler struct {
	run func(context.Context) error
	err error
}

// Execute adapts serviceLoop to the service manager's channels.
func (h *serviceHandler) Execute(_ []string, r <-chan svc.ChangeRequest, changes chan<- svc.Status) (bool, uint32) {
	reqs := make(chan svcRequest)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case c := <-r:
				var q svcRequest
				switch c.Cmd {
				case svc.Interrogate:
					q = svcInterrogate
				case svc.Stop, svc.Shutdown:
					q = svcStop
				default:
					continue
				}
				select {
				case reqs <- q:
				case <-stop:
					return
				}
			case <-stop:
				return
			}
		}
	}()
	report := func(s svcState) {
		switch s {
		case svcStarting:
			changes <- svc.Status{State: svc.StartPending}
		case svcRunning:
			changes <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
		case svcStopping:
			changes <- svc.Status{State: svc.StopPending, WaitHint: uint32(stopWaitHint.Milliseconds())}
		case svcStopped:
			// Execute's return value reports the final state.
		}
	}
	h.err = serviceLoop(context.Background(), reqs, report, h.run)
	if h.err != nil {
		return true, 1
	}
	return false, 0
}
