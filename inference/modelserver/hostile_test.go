package modelserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/internal/testutil"
	onnxpb "github.com/infergate/infergate/proto/onnx"
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
	cfg := testConfig(tfserving.ModelConfig{Name: "add", BasePath: good}, tfserving.ModelConfig{Name: "broken", BasePath: bad},
		tfserving.ModelConfig{Name: "empty", BasePath: none})
	s, err := New(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-errc })
	testutil.WaitFor(t, 20*time.Second, "the first scan", func() bool { return s.GRPCAddr() != "" })

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
	testutil.WaitFor(t, 20*time.Second, "version 4", func() bool { return slices.Equal(available(s, "add"), []int64{4}) })
}

// TestListenAfterReadyServesOlderVersion: tensorflow_model_server's start-up
// (ModelServerMain) no longer gives up when only the newest version is corrupt.
func TestListenAfterReadyServesOlderVersion(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	writeVersion(t, base, 2, []byte("corrupt"))
	cfg := testConfig(tfserving.ModelConfig{Name: "add", BasePath: base})
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
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "add", BasePath: base}))
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

// allocDuring returns the bytes the process allocated while fn ran. Only a
// bound on it is asserted, never a time.
func allocDuring(fn func()) uint64 {
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	fn()
	goruntime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func limitedConfig(models ...tfserving.ModelConfig) Config {
	cfg := testConfig(models...)
	cfg.Limits = DefaultLimits
	return cfg
}

// TestRepeatLastValueBomb is row 3 of issue 9: gRPC Predict with shape
// [16777216,16] and one float_val (TF repeats the last value) used to
// allocate 1 GiB per call. It is refused from the shape, before decoding,
// with INVALID_ARGUMENT naming the setting; three concurrent calls allocate
// a few MiB in all. Rows over max_request_rows are refused the same way.
func TestRepeatLastValueBomb(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	s := startServer(t, limitedConfig(tfserving.ModelConfig{Name: "add", BasePath: base}))
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()
	bomb := &servingpb.PredictRequest{ModelSpec: specFor("add"),
		Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{16777216, 16}, []float32{1}, false)}}

	var errs [3]error
	got := allocDuring(func() {
		var wg sync.WaitGroup
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = c.pred.Predict(ctx, bomb) }()
		}
		wg.Wait()
	})
	for _, err := range errs {
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "model_server.max_request_elements") ||
			!strings.Contains(err.Error(), "268435456") {
			t.Fatalf("bomb: %v", err)
		}
	}
	if got > 16<<20 {
		t.Fatalf("three refused bombs allocated %d bytes, want under 16 MiB (each would decode to 1 GiB)", got)
	}
	t.Logf("three concurrent bombs: %d KiB allocated in the test process", got>>10)

	rows := &servingpb.PredictRequest{ModelSpec: specFor("add"),
		Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{DefaultLimits.MaxRequestRows + 1, 4}, []float32{1}, false)}}
	if _, err := c.pred.Predict(ctx, rows); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "model_server.max_request_rows") {
		t.Fatalf("rows: %v", err)
	}
	// A request within the limits is answered.
	ok := &servingpb.PredictRequest{ModelSpec: specFor("add"),
		Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{1000, 4}, []float32{1}, false)}}
	if _, err := c.pred.Predict(ctx, ok); err != nil {
		t.Fatal(err)
	}
}

// TestRESTMillionInstances is row 4 of issue 9: a REST predict body with
// 1.9 million instances used to take 4.3 GB. It is refused with 400 naming
// the setting after a count of the body's values, before the body is
// parsed: the server allocates about the body once.
func TestRESTMillionInstances(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	s := startServer(t, limitedConfig(tfserving.ModelConfig{Name: "add", BasePath: base}))
	url := "http://" + s.RESTAddr() + "/v1/models/add:predict"

	const instances = 1_900_000
	body := make([]byte, 0, instances*10+32)
	body = append(body, `{"instances":[`...)
	for i := range instances {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, "[1,2,3,4]"...)
	}
	body = append(body, "]}"...)

	var code int
	var msg string
	got := allocDuring(func() { code, msg = postJSON(t, url, body) })
	if code != http.StatusBadRequest || !strings.Contains(msg, "model_server.max_request_elements") || !strings.Contains(msg, "7600000") {
		t.Fatalf("HTTP %d %s", code, msg)
	}
	if limit := uint64(len(body)) + 16<<20; got > limit {
		t.Fatalf("a refused body of %d bytes allocated %d bytes, want under %d", len(body), got, limit)
	}
	t.Logf("body %d MiB: %d MiB allocated in the test process", len(body)>>20, got>>20)

	// Under the element limit but over the rows limit: 400 naming it.
	body = append(body[:0], `{"instances":[`...)
	for i := range DefaultLimits.MaxRequestRows + 1 {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, "[1,2,3,4]"...)
	}
	body = append(body, "]}"...)
	if code, msg := postJSON(t, url, body); code != http.StatusBadRequest || !strings.Contains(msg, "model_server.max_request_rows") {
		t.Fatalf("rows: HTTP %d %s", code, msg)
	}
	if code, msg := postJSON(t, url, []byte(`{"instances":[[1,2,3,4]]}`)); code != http.StatusOK {
		t.Fatalf("small request: HTTP %d %s", code, msg)
	}
}

func postJSON(t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestInflightBytesBound: the requests decoded at once share
// Limits.MaxInflightBytes. With the whole budget held, a call waits and ends
// at its deadline (DEADLINE_EXCEEDED, not decoded); once the budget is
// released the same call is answered.
func TestInflightBytesBound(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	cfg := limitedConfig(tfserving.ModelConfig{Name: "add", BasePath: base})
	cfg.Limits.MaxInflightBytes = 64 << 10
	s := startServer(t, cfg)
	c := dial(t, s.GRPCAddr())
	req := &servingpb.PredictRequest{ModelSpec: specFor("add"),
		Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{2, 4}, []float32{1}, false)}}

	_, release, err := s.adm.admit(context.Background(), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = c.pred.Predict(ctx, req)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("with the budget held: %v", err)
	}
	release()
	if _, err := c.pred.Predict(context.Background(), req); err != nil {
		t.Fatalf("after release: %v", err)
	}
	// A request estimated above the whole budget runs alone, it is not refused.
	big := &servingpb.PredictRequest{ModelSpec: specFor("add"),
		Inputs: map[string]*tfpb.TensorProto{"x": floatProto([]int64{16000, 4}, []float32{1}, false)}}
	if _, err := c.pred.Predict(context.Background(), big); err != nil {
		t.Fatalf("request larger than the budget: %v", err)
	}
}

// TestFoldedConstantsLimitOnLoad is row 5 of issue 9 at the server: a model
// whose constants fold into more than Limits.MaxFoldedConstantBytes ends
// END with an error naming the setting, and other versions keep serving.
func TestFoldedConstantsLimitOnLoad(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	writeVersion(t, base, 2, foldBombModel(t, 16, 1<<20)) // 16 × 4 MiB
	cfg := limitedConfig(tfserving.ModelConfig{Name: "add", BasePath: base})
	cfg.Limits.MaxFoldedConstantBytes = 8 << 20
	s := startServer(t, cfg)
	v2, _ := stateOf(s, "add", 2)
	if v2.State != StateEnd || !strings.Contains(v2.Error, "constant folding needs more than 8388608 bytes") ||
		!strings.Contains(v2.Error, "max_folded_constant_bytes") {
		t.Fatalf("version 2: %+v", v2)
	}
	if got := available(s, "add"); !slices.Equal(got, []int64{1}) {
		t.Fatalf("available %v", got)
	}
}

// foldBombModel is addModel whose graph also folds n constants of elems
// float32 zeros each (ConstantOfShape of a constant shape).
func foldBombModel(t testing.TB, n int, elems int64) []byte {
	inits := []*onnxpb.TensorProto{
		{Name: "c", Dims: []int64{4}, DataType: onnxFloat, FloatData: []float32{1, 1, 1, 1}},
		{Name: "shape", Dims: []int64{1}, DataType: onnxInt64, Int64Data: []int64{elems}},
	}
	nodes := []*onnxpb.NodeProto{{OpType: "Add", Input: []string{"x", "c"}, Output: []string{"y"}}}
	for i := range n {
		nodes = append(nodes, &onnxpb.NodeProto{OpType: "ConstantOfShape", Input: []string{"shape"}, Output: []string{fmt.Sprint("z", i)}})
	}
	return buildModel(t, []vi{{"x", onnxFloat, []int64{-1, 4}}}, []vi{{"y", onnxFloat, []int64{-1, 4}}}, nodes, inits)
}

// TestReloadRPCNeedsAdminToken is row 2 of issue 9: HandleReloadConfigRequest
// from anyone who reaches the gRPC port used to unload every model. Off by
// default (PERMISSION_DENIED); with ReloadRPCToken it needs the admin token
// in the metadata; every call, allowed or refused, is audited.
func TestReloadRPCNeedsAdminToken(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	var mu sync.Mutex
	var audit []string
	record := func(action, detail string) {
		mu.Lock()
		defer mu.Unlock()
		audit = append(audit, action+" "+detail)
	}
	empty := &servingpb.ReloadConfigRequest{Config: ModelsToProto(nil)}
	ctx := context.Background()

	cfg := testConfig(tfserving.ModelConfig{Name: "add", BasePath: base})
	cfg.ReloadRPC, cfg.Audit = ReloadRPCOff, record
	s := startServer(t, cfg)
	c := dial(t, s.GRPCAddr())
	if _, err := c.models.HandleReloadConfigRequest(ctx, empty); status.Code(err) != codes.PermissionDenied ||
		!strings.Contains(err.Error(), "model_server.reload_rpc") {
		t.Fatalf("default: %v", err)
	}
	if !s.Serving("add") {
		t.Fatal("a refused reload unloaded the model")
	}

	cfg = testConfig(tfserving.ModelConfig{Name: "add", BasePath: base})
	cfg.ReloadRPC, cfg.AdminToken, cfg.Audit = ReloadRPCToken, "s3cret-token", record
	s = startServer(t, cfg)
	c = dial(t, s.GRPCAddr())
	for _, md := range []metadata.MD{nil, metadata.Pairs("authorization", "Bearer wrong"), metadata.Pairs("authorization", "s3cret-token")} {
		_, err := c.models.HandleReloadConfigRequest(metadata.NewOutgoingContext(ctx, md), empty)
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "authorization: Bearer") {
			t.Fatalf("metadata %v: %v", md, err)
		}
	}
	if !s.Serving("add") {
		t.Fatal("an unauthenticated reload unloaded the model")
	}
	authed := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer s3cret-token"))
	if _, err := c.models.HandleReloadConfigRequest(authed, empty); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	if s.Serving("add") {
		t.Fatal("the authorized reload to no models left add served")
	}

	mu.Lock()
	defer mu.Unlock()
	want := []string{"refused: HandleReloadConfigRequest is turned off", "refused: HandleReloadConfigRequest needs the admin token",
		"refused: HandleReloadConfigRequest needs the admin token", "refused: HandleReloadConfigRequest needs the admin token", "0 models []: applied"}
	if len(audit) != len(want) {
		t.Fatalf("audit log %q", audit)
	}
	for i, w := range want {
		if !strings.HasPrefix(audit[i], "models.reload_rpc from 127.0.0.1:") || !strings.Contains(audit[i], w) {
			t.Errorf("audit[%d] = %q, want it to contain %q", i, audit[i], w)
		}
	}
}

// TestExamplesContextBomb: Classify/Regress examples that are empty take
// their values from one shared context feature, so a small message can
// stand for rows × width values. The row and element limits apply to them
// before the input tensor is built.
func TestExamplesContextBomb(t *testing.T) {
	cfg := limitedConfig(demoRepo(t))
	cfg.Limits.MaxRequestElements = 1000 // the demo model takes 16 values per example
	s := startServer(t, cfg)
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()
	withCtx := func(n int) *servingpb.Input {
		return &servingpb.Input{Kind: &servingpb.Input_ExampleListWithContext{ExampleListWithContext: &servingpb.ExampleListWithContext{
			Examples: make([]*tfpb.Example, n), Context: floatExample("input", make([]float32, 16))}}}
	}
	_, err := c.pred.Regress(ctx, &servingpb.RegressionRequest{ModelSpec: specFor("demo"), Input: withCtx(100)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "model_server.max_request_elements") {
		t.Fatalf("100 examples × 16 values over a limit of 1000: %v", err)
	}
	_, err = c.pred.Classify(ctx, &servingpb.ClassificationRequest{ModelSpec: specFor("demo"), Input: withCtx(int(DefaultLimits.MaxRequestRows) + 1)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "model_server.max_request_rows") {
		t.Fatalf("too many examples: %v", err)
	}
	if _, err := c.pred.Regress(ctx, &servingpb.RegressionRequest{ModelSpec: specFor("demo"), Input: withCtx(10)}); err != nil {
		t.Fatalf("within the limits: %v", err)
	}
}

// TestRESTAnnouncedBodyWaitsForBudget: a client that announces a large body
// (Content-Length) and sends none of it must not make the server allocate
// that much up front: the announced length is admitted against
// MaxInflightBytes first. With the budget held, the request waits and ends
// with the REST timeout (504), having allocated next to nothing.
func TestRESTAnnouncedBodyWaitsForBudget(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	cfg := limitedConfig(tfserving.ModelConfig{Name: "add", BasePath: base})
	cfg.Limits.MaxInflightBytes = 1 << 20
	cfg.RESTTimeout = 300 * time.Millisecond
	// Go's server tries to drain an unread body before it answers; the
	// client never sends it, so the answer comes at the read timeout.
	cfg.RESTReadTimeout = time.Second
	s := startServer(t, cfg)
	_, release, err := s.adm.admit(context.Background(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	conn, err := net.Dial("tcp", s.RESTAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var resp *http.Response
	got := allocDuring(func() {
		fmt.Fprintf(conn, "POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 60<<20)
		resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("HTTP %d, want 504 (the admission wait ended with the REST timeout)", resp.StatusCode)
	}
	if got > 8<<20 {
		t.Fatalf("an announced, unsent 60 MiB body allocated %d bytes", got)
	}
}

// Two million one-value instances stay under the element limit in scalars but
// are four million parse-tree values: refused before parsing (the soak saw 679 MB).
func TestRESTOneValueInstancesRefusedBeforeParsing(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	s := startServer(t, limitedConfig(tfserving.ModelConfig{Name: "add", BasePath: base}))
	url := "http://" + s.RESTAddr() + "/v1/models/add:predict"

	const instances = 2_000_000
	body := make([]byte, 0, instances*4+32)
	body = append(body, `{"instances":[`...)
	for i := range instances {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, "[1]"...)
	}
	body = append(body, "]}"...)

	var code int
	var msg string
	got := allocDuring(func() { code, msg = postJSON(t, url, body) })
	if code != http.StatusBadRequest || !strings.Contains(msg, "model_server.max_request_elements") {
		t.Fatalf("HTTP %d %s", code, msg)
	}
	if limit := uint64(len(body)) + 16<<20; got > limit {
		t.Fatalf("a refused body of %d bytes allocated %d bytes, want under %d", len(body), got, limit)
	}
}
