package modelserver

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// TestCorruptNewestVersionFallsBack is row 9 of issue 9: the newest version
// of a model is corrupt on disk at start. The server must serve the newest
// version that loads, say which version failed and why, and list only the
// models that have no loadable version at all.
func TestCorruptNewestVersionFallsBack(t *testing.T) {
	good, bad, none := t.TempDir(), t.TempDir(), t.TempDir()
	writeVersion(t, good, 1, addModel(t, 1))
	writeVersion(t, good, 2, addModel(t, 2))
	writeVersion(t, good, 3, []byte("\x08\x07 a truncated model"))
	writeVersion(t, bad, 1, []byte("not a model either"))
	cfg := testConfig(ModelConfig{Name: "add", BasePath: good}, ModelConfig{Name: "broken", BasePath: bad},
		ModelConfig{Name: "empty", BasePath: none})
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-errc })
	eventually(t, "the first scan", func() bool { return s.GRPCAddr() != "" })

	// Version 2, the newest that loads, serves over gRPC.
	c := dial(t, s.GRPCAddr())
	resp, err := c.pred.Predict(ctx, &servingpb.PredictRequest{ModelSpec: specFor("add"), Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{1, 4}, []float32{0, 1, 2, 3}, false)}})
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.GetModelSpec().GetVersion().GetValue(); v != 2 {
		t.Fatalf("served version %d, want 2 (3 is corrupt)", v)
	}
	v3, _ := stateOf(s, "add", 3)
	if v3.State != StateEnd || v3.Code != codes.InvalidArgument || !strings.Contains(v3.Error, "3/model.onnx") {
		t.Fatalf("version 3 must have ended with why it failed: %+v", v3)
	}
	if !s.Serving("add") || s.Serving("broken") {
		t.Fatalf("Serving: add %v, broken %v", s.Serving("add"), s.Serving("broken"))
	}

	// Failed names the two models that cannot be served, not "add".
	var msgs []string
	for _, e := range s.Failed() {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	if len(msgs) != 2 || !strings.Contains(all, "model broken: no version loads (version 1:") ||
		!strings.Contains(all, "model empty has no version") || strings.Contains(all, "add") {
		t.Fatalf("Failed: %q", msgs)
	}

	// A newer version that loads takes over.
	writeVersionAtomic(t, good, 4, addModel(t, 4))
	eventually(t, "version 4", func() bool { return slices.Equal(available(s, "add"), []int64{4}) })
}

// TestListenAfterReadyServesOlderVersion: tensorflow_model_server's start-up
// (ModelServerMain) no longer gives up when only the newest version is corrupt.
func TestListenAfterReadyServesOlderVersion(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	writeVersion(t, base, 2, []byte("corrupt"))
	cfg := testConfig(ModelConfig{Name: "add", BasePath: base})
	cfg.ListenAfterReady = true
	s := startServer(t, cfg)
	if got := available(s, "add"); !slices.Equal(got, []int64{1}) {
		t.Fatalf("available %v", got)
	}
}

// TestUploadVersionOverflow is row 13 of issue 9: after an upload as version
// math.MaxInt64, an upload without a version must not wrap around to a
// negative version; it is refused with INVALID_ARGUMENT saying why.
func TestUploadVersionOverflow(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	s := startServer(t, testConfig(ModelConfig{Name: "add", BasePath: base}))
	v, err := s.UploadVersion("add", math.MaxInt64, addModel(t, 5))
	if err != nil || v != math.MaxInt64 {
		t.Fatalf("upload as MaxInt64: %d %v", v, err)
	}
	v, err = s.UploadVersion("add", 0, addModel(t, 6))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "no next version") {
		t.Fatalf("next version after MaxInt64: %d %v", v, err)
	}
	if _, err := s.UploadVersion("add", -3, addModel(t, 6)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("negative version: %v", err)
	}
	// An explicit unused version still works.
	if v, err := s.UploadVersion("add", 2, addModel(t, 2)); err != nil || v != 2 {
		t.Fatalf("explicit version: %d %v", v, err)
	}
	for _, v := range available(s, "add") {
		if v < 0 {
			t.Fatalf("a negative version is served: %v", available(s, "add"))
		}
	}
}
