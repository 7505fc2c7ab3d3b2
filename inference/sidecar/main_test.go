package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/sidecar"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
)

// The test binary doubles as the programs the supervisor runs: with
// SIDECAR_TEST_FAKE set it is a misbehaving tensorflow_model_server, with
// SIDECAR_TEST_SUPERVISE a supervisor process (for the orphan test).
const (
	envFake      = "SIDECAR_TEST_FAKE"
	envSupervise = "SIDECAR_TEST_SUPERVISE"
)

var (
	// standIn is the tensorflow_model_server stand-in: a script exec'ing
	// `infergate model-server`, or this test binary running the same
	// ModelServerMain when the infergate binary has no model-server
	// command (yet) or does not build.
	standIn string
	// binDir holds the scripts.
	binDir string
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envFake); mode != "" {
		os.Exit(fakeMain(mode, os.Args[1:]))
	}
	if cfg := os.Getenv(envSupervise); cfg != "" {
		os.Exit(superviseMain(cfg))
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "sidecar-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	standIn = buildStandIn(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildStandIn builds cmd/infergate once and wraps it as
// tensorflow_model_server. When that binary cannot serve (another package
// of the module is mid-change, or model-server is not wired into the
// command yet) the wrapper runs this test binary's copy of ModelServerMain.
func buildStandIn(dir string) string {
	bin := filepath.Join(dir, "infergate")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/infergate/infergate/cmd/infergate").CombinedOutput()
	if err == nil {
		ver, verr := exec.Command(bin, "model-server", "--version").CombinedOutput()
		if verr == nil && bytes.Contains(ver, []byte("TensorFlow ModelServer")) {
			return writeScript(dir, "tensorflow_model_server", fmt.Sprintf("exec %q model-server \"$@\"\n", bin))
		}
		fmt.Fprintf(os.Stderr, "sidecar tests: `infergate model-server` does not serve in this build (%s); using the test binary's ModelServerMain\n",
			strings.TrimSpace(string(ver)))
	} else {
		fmt.Fprintf(os.Stderr, "sidecar tests: building cmd/infergate failed; using the test binary's ModelServerMain:\n%s\n", out)
	}
	return fakeScript(dir, "modelserver")
}

func writeScript(dir, name, body string) string {
	d := filepath.Join(dir, name+".d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		panic(err)
	}
	// The file is called tensorflow_model_server like the real one, in a
	// directory of its own, so PATH lookups can be tested too.
	path := filepath.Join(d, "tensorflow_model_server")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		panic(err)
	}
	return path
}

// fakeScript is a tensorflow_model_server that runs this test binary in a
// fake mode.
func fakeScript(dir, mode string) string {
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	name := strings.NewReplacer(":", "_", "/", "_").Replace(mode)
	return writeScript(dir, "fake-"+name, fmt.Sprintf("%s=%q exec %q \"$@\"\n", envFake, mode, self))
}

// fakeMain implements the fake modes:
//
//	modelserver      infergate's ModelServerMain (the stand-in itself)
//	exit:N           print a line and exit with code N at once
//	crash-after:D    serve like modelserver, exit with code 3 after D
//	hang             never open a port, ignore SIGTERM (needs SIGKILL)
//	never-ready      answer GetModelStatus with LOADING forever
func fakeMain(mode string, args []string) int {
	kind, arg, _ := strings.Cut(mode, ":")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch kind {
	case "modelserver":
		if err := modelserver.ModelServerMain(ctx, args, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "exit":
		code, _ := strconv.Atoi(arg)
		fmt.Fprintf(os.Stderr, "fake tensorflow_model_server: failing on purpose with code %d\n", code)
		return code
	case "crash-after":
		d, _ := time.ParseDuration(arg)
		go func() {
			time.Sleep(d)
			fmt.Fprintln(os.Stderr, "fake tensorflow_model_server: crashing now")
			os.Exit(3)
		}()
		if err := modelserver.ModelServerMain(ctx, args, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "hang":
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "fake tensorflow_model_server: loading forever")
		select {}
	case "never-ready":
		port := 0
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--port="); ok {
				port, _ = strconv.Atoi(v)
			}
		}
		lis, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		srv := grpc.NewServer()
		servingpb.RegisterModelServiceServer(srv, loadingForever{})
		fmt.Fprintln(os.Stderr, "fake tensorflow_model_server: models stay LOADING")
		go func() {
			<-ctx.Done()
			srv.Stop()
		}()
		_ = srv.Serve(lis)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown fake mode %q\n", mode)
	return 2
}

type loadingForever struct {
	servingpb.UnimplementedModelServiceServer
}

func (loadingForever) GetModelStatus(context.Context, *servingpb.GetModelStatusRequest) (*servingpb.GetModelStatusResponse, error) {
	return &servingpb.GetModelStatusResponse{ModelVersionStatus: []*servingpb.ModelVersionStatus{
		{Version: 1, State: servingpb.ModelVersionStatus_LOADING, Status: &servingpb.StatusProto{}},
	}}, nil
}

// superviseConfig is what the orphan test hands its supervisor process.
type superviseConfig struct {
	Binary, DataDir, ModelsDir string
}

// superviseMain runs a supervisor until killed and prints the child's PID
// once it is ready.
func superviseMain(raw string) int {
	var c superviseConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := sidecar.DefaultConfig()
	cfg.Binary, cfg.DataDir = c.Binary, c.DataDir
	cfg.Models = []tfserving.ModelConfig{{Name: "demo", BasePath: filepath.Join(c.ModelsDir, "demo")}}
	// Ready polling from a separate goroutine moves the supervisor's work
	// across threads, which is what the locked starter is for.
	cfg.ReadyPoll = 20 * time.Millisecond
	s, err := sidecar.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	go func() {
		if err := s.WaitReady(ctx); err == nil {
			fmt.Printf("PID %d\n", s.Status().PID)
		}
	}()
	if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
