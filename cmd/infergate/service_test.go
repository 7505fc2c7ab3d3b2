package main

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseService(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		verb    string
		runArgs []string
		errLike string
	}{
		{args: []string{"install", "--demo", "--http-listen", "0.0.0.0:8080"}, verb: "install", runArgs: []string{"--demo", "--http-listen", "0.0.0.0:8080"}},
		{args: []string{"run"}, verb: "run", runArgs: []string{}},
		{args: []string{"uninstall"}, verb: "uninstall", runArgs: []string{}},
		{args: nil, errLike: "want install, uninstall or run"},
		{args: []string{"start"}, errLike: `unknown service command "start"`},
		{args: []string{"uninstall", "--force"}, errLike: "uninstall takes no arguments"},
		// A typo in the run flags fails the install, not every service start.
		{args: []string{"install", "--demoo"}, errLike: "install: flag provided but not defined: -demoo"},
		{args: []string{"install", "--topic-partitions", "many"}, errLike: "topics.partitions"},
	} {
		verb, runArgs, err := parseService(tc.args)
		if tc.errLike != "" {
			var ue usageError
			if err == nil || !strings.Contains(err.Error(), tc.errLike) || !errors.As(err, &ue) {
				t.Errorf("%q: err %v, want a usage error containing %q", tc.args, err, tc.errLike)
			}
			continue
		}
		if err != nil || verb != tc.verb || !slices.Equal(runArgs, tc.runArgs) {
			t.Errorf("%q: got %q %q %v, want %q %q", tc.args, verb, runArgs, err, tc.verb, tc.runArgs)
		}
	}
}

func TestServiceCommandElsewhere(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the real service commands run on Windows")
	}
	var out, errOut strings.Builder
	code := dispatch(context.Background(), []string{"service", "install"}, stdio{out: &out, err: &errOut})
	if code != exitUsage || !strings.Contains(errOut.String(), "Windows only") || !strings.Contains(errOut.String(), "systemd") {
		t.Errorf("exit %d, stderr %q: want exit %d and a pointer to the systemd unit", code, errOut.String(), exitUsage)
	}
}

// stateLog collects the states serviceLoop reports.
type stateLog struct{ ch chan svcState }

func (l stateLog) report(s svcState) { l.ch <- s }

func (l stateLog) next(t *testing.T, want svcState) {
	t.Helper()
	select {
	case got := <-l.ch:
		if got != want {
			t.Fatalf("state %d, want %d", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no state reported, want %d", want)
	}
}

func TestServiceLoopStop(t *testing.T) {
	reqs := make(chan svcRequest)
	log := stateLog{make(chan svcState, 10)}
	drained := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- serviceLoop(context.Background(), reqs, log.report, func(ctx context.Context) error {
			<-ctx.Done()
			close(drained) // the appliance drains here before returning
			return nil
		})
	}()
	log.next(t, svcStarting)
	log.next(t, svcRunning)
	reqs <- svcInterrogate
	log.next(t, svcRunning)
	reqs <- svcStop
	log.next(t, svcStopping)
	log.next(t, svcStopped)
	if err := <-result; err != nil {
		t.Fatalf("serviceLoop: %v", err)
	}
	select {
	case <-drained:
	default:
		t.Fatal("serviceLoop returned before run returned")
	}
}

func TestServiceLoopRunFails(t *testing.T) {
	boom := errors.New("broker.listen: address in use")
	log := stateLog{make(chan svcState, 10)}
	err := serviceLoop(context.Background(), make(chan svcRequest), log.report, func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("serviceLoop: %v, want %v", err, boom)
	}
	log.next(t, svcStarting)
	log.next(t, svcRunning)
	log.next(t, svcStopped)
}
