package modelserver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// available lists the AVAILABLE versions of a model, highest first.
func available(s *Server, name string) []int64 {
	var out []int64
	for _, ms := range s.Models() {
		if ms.Name != name {
			continue
		}
		for _, v := range ms.Versions {
			if v.State == StateAvailable {
				out = append(out, v.Version)
			}
		}
	}
	return out
}

func stateOf(s *Server, name string, version int64) (VersionStatus, bool) {
	for _, ms := range s.Models() {
		if ms.Name != name {
			continue
		}
		for _, v := range ms.Versions {
			if v.Version == version {
				return v, true
			}
		}
	}
	return VersionStatus{}, false
}

func addInput(rows int64) map[string]*tensor.Tensor {
	x := make([]float32, rows*4)
	for i := range x {
		x[i] = float32(i)
	}
	return map[string]*tensor.Tensor{"x": tensor.FromFloat32(x, rows, 4)}
}

// checkAdd verifies y = x + version, which is how the test repositories
// build each version's model.
func checkAdd(t testing.TB, res *model.Result) {
	t.Helper()
	y := res.Outputs["y"].Float32s()
	for i, v := range y {
		if v != float32(i)+float32(res.Version) {
			t.Errorf("version %d: y[%d] = %v", res.Version, i, v)
			return
		}
	}
}

// TestRolloverWhileRequestsFlow writes a new version while goroutines send
// requests over gRPC and in-process: not one may fail, and the new version
// must take over.
func TestRolloverWhileRequestsFlow(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "add", BasePath: base}))
	c := dial(t, s.GRPCAddr())
	l := s.InProcess()

	var failures, total atomic.Int64
	var seen [4]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &servingpb.PredictRequest{ModelSpec: specFor("add"), Inputs: map[string]*tfpb.TensorProto{
				"x": floatProto([]int64{1, 4}, []float32{0, 1, 2, 3}, false)}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				var version int64
				if g%2 == 0 {
					res, err := l.Predict(context.Background(), model.Spec{Name: "add"}, addInput(1))
					if err != nil {
						t.Errorf("in-process: %v", err)
						failures.Add(1)
						continue
					}
					checkAdd(t, res)
					version = res.Version
				} else {
					resp, err := c.pred.Predict(context.Background(), req)
					if err != nil {
						t.Errorf("gRPC: %v", err)
						failures.Add(1)
						continue
					}
					version = resp.ModelSpec.GetVersion().GetValue()
					if got := resp.Outputs["y"].FloatVal; got[0] != float32(version) {
						t.Errorf("gRPC version %d answered %v", version, got)
					}
				}
				total.Add(1)
				seen[version].Add(1)
			}
		}()
	}
	testutil.WaitFor(t, 20*time.Second, "requests on version 1", func() bool { return seen[1].Load() > 50 })
	writeVersionAtomic(t, base, 2, addModel(t, 2))
	testutil.WaitFor(t, 20*time.Second, "requests on version 2", func() bool { return seen[2].Load() > 50 })
	testutil.WaitFor(t, 20*time.Second, "version 1 unloaded", func() bool {
		v, _ := stateOf(s, "add", 1)
		return v.State == StateEnd
	})
	writeVersionAtomic(t, base, 3, addModel(t, 3))
	testutil.WaitFor(t, 20*time.Second, "requests on version 3", func() bool { return seen[3].Load() > 50 })
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d requests failed during rollover", failures.Load(), total.Load())
	}
	if got := available(s, "add"); !slices.Equal(got, []int64{3}) {
		t.Fatalf("available %v", got)
	}
	t.Logf("%d requests, per version %d/%d/%d", total.Load(), seen[1].Load(), seen[2].Load(), seen[3].Load())
}

// newIdle builds a server whose polls the test drives by hand.
func newIdle(t *testing.T, models ...tfserving.ModelConfig) *Server {
	t.Helper()
	s, err := New(testConfig(models...), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.m.stopAll)
	return s
}

func TestHalfWrittenVersion(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	s := newIdle(t, tfserving.ModelConfig{Name: "add", BasePath: base})
	s.m.pollAll(true)
	if got := available(s, "add"); !slices.Equal(got, []int64{1}) {
		t.Fatalf("available %v", got)
	}

	// A version directory without its model file yet: seen first (START),
	// then, unchanged on the next scan, it ends with NOT_FOUND; version 1
	// keeps serving.
	if err := os.Mkdir(filepath.Join(base, "2"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.m.pollAll(false)
	if v, _ := stateOf(s, "add", 2); v.State != StateStart {
		t.Fatalf("after one scan: %+v", v)
	}
	s.m.pollAll(false)
	v, _ := stateOf(s, "add", 2)
	if v.State != StateEnd || v.Code != codes.NotFound || !strings.Contains(v.Error, "Could not find model.onnx") {
		t.Fatalf("missing model file: %+v", v)
	}
	res, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "add"}, addInput(2))
	if err != nil || res.Version != 1 {
		t.Fatalf("old version must keep serving: %v %v", res, err)
	}

	// The file appears and grows across scans: never loaded while it changes.
	full := addModel(t, 2)
	path := filepath.Join(base, "2", ModelFileName)
	loads := s.m.loads.Load()
	for _, n := range []int{10, 40, len(full) - 5} {
		if err := os.WriteFile(path, full[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		s.m.pollAll(false)
		if v, _ := stateOf(s, "add", 2); v.State != StateStart {
			t.Fatalf("growing file (%d bytes): %+v", n, v)
		}
	}
	if s.m.loads.Load() != loads {
		t.Fatal("a changing file was loaded")
	}
	if err := os.WriteFile(path, full, 0o644); err != nil {
		t.Fatal(err)
	}
	s.m.pollAll(false) // changed again: wait
	s.m.pollAll(false) // unchanged: load
	if got := available(s, "add"); !slices.Equal(got, []int64{2}) {
		t.Fatalf("after the file settled: available %v, %+v", got, s.Models())
	}
	res, err = s.InProcess().Predict(context.Background(), model.Spec{Name: "add"}, addInput(2))
	if err != nil || res.Version != 2 {
		t.Fatalf("new version: %v %v", res, err)
	}
	checkAdd(t, res)
}

func TestCorruptVersionKeepsOldServing(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "add", BasePath: base}))
	c := dial(t, s.GRPCAddr())

	writeVersionAtomic(t, base, 2, []byte("this is not an ONNX model"))
	testutil.WaitFor(t, 20*time.Second, "version 2 to fail", func() bool {
		v, _ := stateOf(s, "add", 2)
		return v.State == StateEnd
	})
	v, _ := stateOf(s, "add", 2)
	if v.Code != codes.InvalidArgument || !strings.Contains(v.Error, filepath.Join(base, "2", "model.onnx")) {
		t.Fatalf("failure status %+v", v)
	}
	// The failure is visible through GetModelStatus, highest version first.
	st, err := c.models.GetModelStatus(context.Background(), &servingpb.GetModelStatusRequest{ModelSpec: specFor("add")})
	if err != nil {
		t.Fatal(err)
	}
	mvs := st.ModelVersionStatus
	if len(mvs) != 2 || mvs[0].Version != 2 || mvs[0].State != servingpb.ModelVersionStatus_END ||
		mvs[0].Status.GetErrorCode() == 0 || mvs[0].Status.GetErrorMessage() == "" ||
		mvs[1].Version != 1 || mvs[1].State != servingpb.ModelVersionStatus_AVAILABLE {
		t.Fatalf("status %v", st)
	}
	// Version 1 keeps serving.
	res, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "add"}, addInput(1))
	if err != nil || res.Version != 1 {
		t.Fatalf("old version: %v %v", res, err)
	}
	// Not retried while the file stays the same.
	loads := s.m.loads.Load()
	for range 3 {
		<-s.m.waitChange() // every scan publishes
	}
	if s.m.loads.Load() != loads {
		t.Fatal("a failed version was retried with unchanged files")
	}
	// Fixed in place: retried and served.
	if err := os.WriteFile(filepath.Join(base, "2", ModelFileName), addModel(t, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "fixed version 2", func() bool { return slices.Equal(available(s, "add"), []int64{2}) })
}

func TestVersionPolicies(t *testing.T) {
	base := t.TempDir()
	for v := int64(1); v <= 4; v++ {
		writeVersion(t, base, v, addModel(t, float32(v)))
	}
	// Non-numeric children and plain files are ignored.
	if err := os.MkdirAll(filepath.Join(base, "tmp-copy"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "9"), []byte("not a dir"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy tfserving.VersionPolicy
		want   []int64
	}{
		{tfserving.VersionPolicy{}, []int64{4}},
		{tfserving.VersionPolicy{Latest: 2}, []int64{4, 3}},
		{tfserving.VersionPolicy{Specific: []int64{1, 3, 7}}, []int64{3, 1}},
		{tfserving.VersionPolicy{All: true}, []int64{4, 3, 2, 1}},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			s := newIdle(t, tfserving.ModelConfig{Name: "add", BasePath: base, Policy: tc.policy})
			s.m.pollAll(true)
			if got := available(s, "add"); !slices.Equal(got, tc.want) {
				t.Fatalf("available %v, want %v", got, tc.want)
			}
			for _, v := range tc.want {
				res, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "add", Version: v}, addInput(1))
				if err != nil || res.Version != v {
					t.Fatalf("version %d: %v %v", v, res, err)
				}
				checkAdd(t, res)
			}
			res, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "add"}, addInput(1))
			if err != nil || res.Version != tc.want[0] {
				t.Fatalf("latest: %v %v", res, err)
			}
		})
	}
}

func TestRemovedVersionIsUnloaded(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	writeVersion(t, base, 2, addModel(t, 2))
	s := newIdle(t, tfserving.ModelConfig{Name: "add", BasePath: base, Policy: tfserving.VersionPolicy{All: true}})
	s.m.pollAll(true)
	if err := os.RemoveAll(filepath.Join(base, "2")); err != nil {
		t.Fatal(err)
	}
	s.m.pollAll(false)
	if got := available(s, "add"); !slices.Equal(got, []int64{1}) {
		t.Fatalf("available %v", got)
	}
	if v, _ := stateOf(s, "add", 2); v.State != StateEnd || v.Code != codes.OK {
		t.Fatalf("removed version %+v", v)
	}
	_, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "add", Version: 2}, addInput(1))
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "Specific(add, 2)") {
		t.Fatalf("removed version: %v", err)
	}
	// Even the last version goes when its directory does.
	if err := os.RemoveAll(filepath.Join(base, "1")); err != nil {
		t.Fatal(err)
	}
	s.m.pollAll(false)
	if got := available(s, "add"); len(got) != 0 || s.Ready() {
		t.Fatalf("available %v, ready %v", got, s.Ready())
	}
}

func labelSpec(name, label string) *servingpb.ModelSpec {
	return &servingpb.ModelSpec{Name: name, VersionChoice: &servingpb.ModelSpec_VersionLabel{VersionLabel: label}}
}

func TestLabels(t *testing.T) {
	base := t.TempDir()
	for v := int64(1); v <= 3; v++ {
		writeVersion(t, base, v, addModel(t, float32(v)))
	}
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "add", BasePath: base, Policy: tfserving.VersionPolicy{Specific: []int64{1, 2}},
		Labels: map[string]int64{"stable": 1, "canary": 2}}))
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()
	l := s.InProcess()

	for label, want := range map[string]int64{"stable": 1, "canary": 2} {
		res, err := l.Predict(ctx, model.Spec{Name: "add", Label: label}, addInput(1))
		if err != nil || res.Version != want {
			t.Fatalf("label %s: %v %v", label, res, err)
		}
		resp, err := c.pred.Predict(ctx, &servingpb.PredictRequest{ModelSpec: labelSpec("add", label),
			Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{1, 4}, make([]float32, 4), false)}})
		if err != nil || resp.ModelSpec.GetVersion().GetValue() != want {
			t.Fatalf("gRPC label %s: %v %v", label, resp, err)
		}
		st, err := c.models.GetModelStatus(ctx, &servingpb.GetModelStatusRequest{ModelSpec: labelSpec("add", label)})
		if err != nil || len(st.ModelVersionStatus) != 1 || st.ModelVersionStatus[0].Version != want {
			t.Fatalf("status by label %s: %v %v", label, st, err)
		}
	}
	// Version and label together is INVALID_ARGUMENT.
	if _, err := l.Predict(ctx, model.Spec{Name: "add", Version: 1, Label: "stable"}, addInput(1)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("version+label: %v", err)
	}
	// A label may only point at an AVAILABLE version.
	err := s.SetLabel("add", "canary", 3)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not currently available") {
		t.Fatalf("label to unavailable version: %v", err)
	}
	if err := s.SetLabel("add", "canary", 1); err != nil {
		t.Fatal(err)
	}
	if res, err := l.Predict(ctx, model.Spec{Name: "add", Label: "canary"}, addInput(1)); err != nil || res.Version != 1 {
		t.Fatalf("moved label: %v %v", res, err)
	}
	if err := s.SetLabel("nope", "canary", 1); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown model: %v", err)
	}
	// Version 0 removes a label.
	if err := s.SetLabel("add", "canary", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Predict(ctx, model.Spec{Name: "add", Label: "canary"}, addInput(1)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("removed label: %v", err)
	}
	if got := s.Models()[0].Labels; len(got) != 1 || got["stable"] != 1 {
		t.Fatalf("labels %v", got)
	}

	// Reload with a label on an unavailable version: FAILED_PRECONDITION and
	// the labels stay; with a good one the labels move.
	cfg := ModelsToProto([]tfserving.ModelConfig{{Name: "add", BasePath: base, Policy: tfserving.VersionPolicy{Specific: []int64{1, 2}},
		Labels: map[string]int64{"stable": 3}}})
	_, err = c.models.HandleReloadConfigRequest(ctx, &servingpb.ReloadConfigRequest{Config: cfg})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("reload with bad label: %v", err)
	}
	if got := s.Models()[0].Labels; got["stable"] != 1 {
		t.Fatalf("labels after failed reload %v", got)
	}
	cfg = ModelsToProto([]tfserving.ModelConfig{{Name: "add", BasePath: base, Policy: tfserving.VersionPolicy{Specific: []int64{1, 2}},
		Labels: map[string]int64{"stable": 2}}})
	if _, err := c.models.HandleReloadConfigRequest(ctx, &servingpb.ReloadConfigRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	if res, err := l.Predict(ctx, model.Spec{Name: "add", Label: "stable"}, addInput(1)); err != nil || res.Version != 2 {
		t.Fatalf("label after reload: %v %v", res, err)
	}
}

func TestReloadConfig(t *testing.T) {
	baseA, baseB := t.TempDir(), t.TempDir()
	writeVersion(t, baseA, 1, addModel(t, 1))
	writeVersion(t, baseB, 5, addModel(t, 5))
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "a", BasePath: baseA}))
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()
	l := s.InProcess()

	reload := func(models ...tfserving.ModelConfig) error {
		_, err := c.models.HandleReloadConfigRequest(ctx, &servingpb.ReloadConfigRequest{Config: ModelsToProto(models)})
		return err
	}
	// Add b: loaded when the call returns.
	if err := reload(tfserving.ModelConfig{Name: "a", BasePath: baseA}, tfserving.ModelConfig{Name: "b", BasePath: baseB}); err != nil {
		t.Fatal(err)
	}
	res, err := l.Predict(ctx, model.Spec{Name: "b"}, addInput(1))
	if err != nil || res.Version != 5 {
		t.Fatalf("b after reload: %v %v", res, err)
	}
	checkAdd(t, res)
	// Drop a: unloaded, its status shows END.
	if err := reload(tfserving.ModelConfig{Name: "b", BasePath: baseB}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Predict(ctx, model.Spec{Name: "a"}, addInput(1)); status.Code(err) != codes.NotFound {
		t.Fatalf("a after removal: %v", err)
	}
	st, err := c.models.GetModelStatus(ctx, &servingpb.GetModelStatusRequest{ModelSpec: specFor("a")})
	if err != nil || st.ModelVersionStatus[0].State != servingpb.ModelVersionStatus_END {
		t.Fatalf("status of removed model: %v %v", st, err)
	}
	if !s.Ready() {
		t.Fatal("a removed model must not count for readiness")
	}
	// A model whose only version is corrupt: the reload reports the load error.
	baseC := t.TempDir()
	writeVersion(t, baseC, 1, []byte("garbage"))
	err = reload(tfserving.ModelConfig{Name: "b", BasePath: baseB}, tfserving.ModelConfig{Name: "c", BasePath: baseC})
	if err == nil || !strings.Contains(err.Error(), "model c version 1 failed to load") {
		t.Fatalf("reload with a broken model: %v", err)
	}
	// Invalid configs.
	if err := reload(tfserving.ModelConfig{Name: "b", BasePath: baseB}, tfserving.ModelConfig{Name: "b", BasePath: baseA}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("duplicate names: %v", err)
	}
	// Re-adding a is fine, and it serves again.
	if err := reload(tfserving.ModelConfig{Name: "a", BasePath: baseA}, tfserving.ModelConfig{Name: "b", BasePath: baseB}); err != nil {
		t.Fatal(err)
	}
	if res, err := l.Predict(ctx, model.Spec{Name: "a"}, addInput(1)); err != nil || res.Version != 1 {
		t.Fatalf("a re-added: %v %v", res, err)
	}
	// A specific version and policy change through reload.
	writeVersion(t, baseA, 2, addModel(t, 2))
	if err := reload(tfserving.ModelConfig{Name: "a", BasePath: baseA, Policy: tfserving.VersionPolicy{All: true}}, tfserving.ModelConfig{Name: "b", BasePath: baseB}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "a serving 1 and 2", func() bool { return slices.Equal(available(s, "a"), []int64{2, 1}) })
	resp, err := c.pred.Predict(ctx, &servingpb.PredictRequest{
		ModelSpec: &servingpb.ModelSpec{Name: "a", VersionChoice: &servingpb.ModelSpec_Version{Version: wrapperspb.Int64(1)}},
		Inputs:    map[string]*tfpb.TensorProto{"x": floatProto([]int64{1, 4}, make([]float32, 4), false)}})
	if err != nil || resp.ModelSpec.GetVersion().GetValue() != 1 {
		t.Fatalf("specific version: %v %v", resp, err)
	}
}

func TestUploadVersion(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "add", BasePath: base}))
	v, err := s.UploadVersion("add", 0, addModel(t, 2))
	if err != nil || v != 2 {
		t.Fatalf("upload: %d %v", v, err)
	}
	// Loaded by the time UploadVersion returns.
	res, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "add"}, addInput(1))
	if err != nil || res.Version != 2 {
		t.Fatalf("after upload: %v %v", res, err)
	}
	if _, err := s.UploadVersion("add", 2, addModel(t, 2)); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := s.UploadVersion("add", 0, []byte("junk")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("junk: %v", err)
	}
	if _, err := s.UploadVersion("nope", 0, addModel(t, 1)); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown model: %v", err)
	}
	if v, err := s.UploadVersion("add", 7, addModel(t, 7)); err != nil || v != 7 {
		t.Fatalf("explicit version: %d %v", v, err)
	}
	// No temporary directories left behind.
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left over %s", e.Name())
		}
	}
}

func TestHealthFollowsReadiness(t *testing.T) {
	base := t.TempDir() // no versions yet
	s, err := New(testConfig(tfserving.ModelConfig{Name: "add", BasePath: base}), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	testutil.WaitFor(t, 20*time.Second, "listening", func() bool { return s.GRPCAddr() != "" })
	hc := healthpb.NewHealthClient(dial(t, s.GRPCAddr()).conn)
	r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("before a version exists: %v %v", r, err)
	}
	if s.Ready() {
		t.Fatal("ready without versions")
	}
	writeVersionAtomic(t, base, 1, addModel(t, 1))
	wctx, wcancel := context.WithTimeout(context.Background(), 20*1e9)
	defer wcancel()
	if err := s.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	r, err = hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "tensorflow.serving.PredictionService"})
	if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after loading: %v %v", r, err)
	}
}

func TestDemoInstall(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "demo", "1", ModelFileName)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	// An existing demo directory is left alone.
	if err := os.WriteFile(path, []byte("operator's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "operator's" {
		t.Fatal("demo.Install overwrote an existing model")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left overs: %v", entries)
	}
}

// demo.Install writes the file this server loads; demo cannot import the
// server (the server's tests import demo), so the name is checked here.
func TestDemoFileName(t *testing.T) {
	if demo.FileName != ModelFileName {
		t.Fatalf("demo.FileName %q, ModelFileName %q", demo.FileName, ModelFileName)
	}
}
