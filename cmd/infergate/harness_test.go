package main

// The end-to-end tests run the real binary as a subprocess, the way an
// operator does: built once in TestMain, started on free ports in a temp data
// dir, driven with its own subcommands and with real Kafka clients.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
)

// binary is the infergate built for this test run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "infergate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "infergate")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	build := exec.Command(gobin, "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building infergate:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the test process's environment without INFERGATE_*
// variables, so a developer's settings do not leak into the tests.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "INFERGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// freePort returns a port that was free a moment ago. The broker needs a
// fixed port so that clients and a restarted appliance meet again.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects what a process writes while the test reads it.
type syncBuffer = testutil.Buffer

// proc is one `infergate run` subprocess.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	logs    *syncBuffer
	done    chan struct{}
	waitErr error
	dataDir string
	broker  string // host:port
	args    []string
}

// applianceArgs are the flags of a test appliance: the given data dir and
// broker port, everything else on free ports, 3 partitions, fast commits of
// the OS page cache rather than fsync (the kill tests are about process
// crashes, which both durability modes survive).
func applianceArgs(dataDir string, brokerPort int, extra ...string) []string {
	return append([]string{"run",
		"--data-dir", dataDir,
		"--broker-listen", "127.0.0.1:" + strconv.Itoa(brokerPort),
		"--grpc-listen", "127.0.0.1:0",
		"--rest-listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:0",
		"--topic-partitions", "3",
		"--broker-durability", "os",
	}, extra...)
}

// startAppliance runs the binary and waits until it logs that it is ready.
func startAppliance(t *testing.T, dataDir string, brokerPort int, extra ...string) *proc {
	t.Helper()
	a := &proc{t: t, logs: &syncBuffer{}, done: make(chan struct{}), dataDir: dataDir,
		broker: "127.0.0.1:" + strconv.Itoa(brokerPort), args: applianceArgs(dataDir, brokerPort, extra...)}
	a.cmd = exec.Command(binary, a.args...)
	a.cmd.Dir = t.TempDir() // no ./infergate.yaml from the repository
	a.cmd.Env = cleanEnv()
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.waitErr = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			t.Logf("appliance logs (%s):\n%s", strings.Join(a.args, " "), tail(a.logs.String(), 60))
		}
	})
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(a.logs.String(), "infergate is ready") {
		select {
		case <-a.done:
			t.Fatalf("infergate exited during start (%v):\n%s", a.waitErr, a.logs.String())
		case <-deadline:
			t.Fatalf("infergate not ready after 2m:\n%s", a.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return a
}

// kill sends SIGKILL and waits for the process to be gone.
func (a *proc) kill() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
}

// stop sends SIGTERM and expects a clean exit after the drain.
func (a *proc) stop() {
	a.t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(time.Minute):
		a.t.Fatal("infergate did not stop within a minute of SIGTERM")
	}
	if a.waitErr != nil {
		a.t.Fatalf("infergate exited with %v after SIGTERM:\n%s", a.waitErr, tail(a.logs.String(), 40))
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// infergate runs a subcommand to completion.
func infergate(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("infergate %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// client is a Kafka client of the appliance's broker for the test's own use.
func client(t *testing.T, broker string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(broker)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// needTool skips a test whose external tool is missing, except in CI, where
// .ci/run installs it and a missing tool is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (.ci/run installs it): %v", name, err)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
