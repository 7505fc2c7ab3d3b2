package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infergate/infergate/appliance"
)

// openPTY opens a pseudo-terminal pair: what a child writes to the slave
// (its terminal) is read from the master.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlocking the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("opening the pty's slave: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// runOnTerminal runs `infergate run` with its stderr on a terminal until it
// logs that it is ready, and returns what the terminal showed.
func runOnTerminal(t *testing.T, dataDir string) string {
	t.Helper()
	master, slave := openPTY(t)
	var screen syncBuffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			screen.Write(b[:n])
			if err != nil {
				return
			}
		}
	}()
	cmd := exec.Command(binary, applianceArgs(dataDir, freePort(t))...)
	cmd.Dir, cmd.Env = t.TempDir(), cleanEnv()
	cmd.Stderr = slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(screen.String(), "infergate is ready") {
		select {
		case err := <-done:
			t.Fatalf("infergate exited during start (%v):\n%s", err, screen.String())
		case <-deadline:
			t.Fatalf("infergate not ready after 2m:\n%s", screen.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return screen.String()
}

// TestFirstTokenOnTerminalOnly: the admin token generated on the first
// start is shown on a terminal, once, and never written to a stderr that
// is not one (a log file, a pipe to a collector, the journal).
func TestFirstTokenOnTerminalOnly(t *testing.T) {
	// A pipe: the token is in the file, not in what the pipe carried.
	piped := filepath.Join(t.TempDir(), "data")
	a := startAppliance(t, piped, freePort(t))
	tok, err := appliance.ReadAdminToken(piped)
	if err != nil || tok == "" {
		t.Fatalf("admin token file: %q %v", tok, err)
	}
	if strings.Contains(a.logs.String(), tok) {
		t.Fatalf("the token went into a stderr that is a pipe:\n%s", a.logs.String())
	}
	a.kill()

	// A terminal: shown on the first start, not on the next.
	dataDir := filepath.Join(t.TempDir(), "data")
	first := runOnTerminal(t, dataDir)
	tok, err = appliance.ReadAdminToken(dataDir)
	if err != nil || tok == "" {
		t.Fatalf("admin token file: %q %v", tok, err)
	}
	if !strings.Contains(first, "admin token (shown only this once") || !strings.Contains(first, tok) {
		t.Fatalf("the first start on a terminal did not show the token %q:\n%s", tok, first)
	}
	if again := runOnTerminal(t, dataDir); strings.Contains(again, tok) {
		t.Fatalf("the second start showed the token again:\n%s", again)
	}
}
