package appliance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/proto/servingpb"
)

func writeModelVersion(t *testing.T, dataDir, name, version string, data []byte) {
	t.Helper()
	dir := filepath.Join(dataDir, ModelsDir, name, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptNewestVersionAtStart is row 9 of issue 9 on the appliance: the
// newest version of the default model is corrupt. The appliance starts and
// serves the older version.
func TestCorruptNewestVersionAtStart(t *testing.T) {
	c := testConfig(t)
	writeModelVersion(t, c.DataDir, demo.Name, "1", demo.ONNX)
	writeModelVersion(t, c.DataDir, demo.Name, "2", demo.ONNX[:len(demo.ONNX)/2])
	a := start(t, c)
	md, err := a.ModelServer().InProcess().Metadata(context.Background(), model.Spec{Name: demo.Name})
	if err != nil || md.Version != 1 {
		t.Fatalf("served: %+v %v", md, err)
	}
}

// TestModelWithNoLoadableVersionFailsStart: a model of the repository whose
// every version is corrupt stops the start at once (not after the 2 minute
// ready timeout), and the error names that model only.
func TestModelWithNoLoadableVersionFailsStart(t *testing.T) {
	c := testConfig(t)
	writeModelVersion(t, c.DataDir, "broken", "4", []byte("not an onnx file"))
	a, err := New(c, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if !errors.Is(err, errNeverReady) {
		t.Fatalf("Run: %v; want an error that does not wait for the ready timeout", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "model broken: no version loads (version 4:") || strings.Contains(msg, demo.Name) {
		t.Fatalf("the error must name only the model that failed: %s", msg)
	}
}

func reloadRPC(t *testing.T, addr string, md metadata.MD) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.NewOutgoingContext(context.Background(), md)
	_, err = servingpb.NewModelServiceClient(conn).HandleReloadConfigRequest(ctx,
		&servingpb.ReloadConfigRequest{Config: modelserver.ModelsToProto(nil)})
	return err
}

func auditActions(t *testing.T, a *running, action string) []string {
	t.Helper()
	entries, err := a.Store().AuditLog(100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Action == action {
			out = append(out, e.Detail)
		}
	}
	return out
}

// TestReloadRPCIsAnAdminOperation is row 2 of issue 9 on the appliance: by
// default HandleReloadConfigRequest on the embedded server's gRPC port is
// refused; with model_server.reload_rpc it needs the admin token; every call
// is in the audit log; and a reload that unloads the default model turns
// readiness red.
func TestReloadRPCIsAnAdminOperation(t *testing.T) {
	c := testConfig(t)
	a := start(t, c)
	if err := reloadRPC(t, a.ModelServer().GRPCAddr(), nil); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("default: %v", err)
	}
	if err := a.Ready(); err != nil {
		t.Fatalf("a refused reload changed readiness: %v", err)
	}
	if got := auditActions(t, a, "models.reload_rpc"); len(got) != 1 || !strings.Contains(got[0], "refused") {
		t.Fatalf("audit %q", got)
	}

	c = testConfig(t)
	c.ModelServer.ReloadRPC = true
	a = start(t, c)
	addr := a.ModelServer().GRPCAddr()
	if err := reloadRPC(t, addr, metadata.Pairs("authorization", "Bearer not-the-token")); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v", err)
	}
	if err := a.Ready(); err != nil {
		t.Fatalf("a refused reload changed readiness: %v", err)
	}
	if err := reloadRPC(t, addr, metadata.Pairs("authorization", "Bearer "+a.AdminToken())); err != nil {
		t.Fatalf("with the admin token: %v", err)
	}
	err := a.Ready()
	if err == nil || !strings.Contains(err.Error(), demo.Name) {
		t.Fatalf("after unloading the default model, Ready = %v", err)
	}
	got := auditActions(t, a, "models.reload_rpc")
	if len(got) != 2 || !strings.Contains(strings.Join(got, "\n"), "refused: HandleReloadConfigRequest needs the admin token") ||
		!strings.Contains(strings.Join(got, "\n"), "0 models []: applied") {
		t.Fatalf("audit %q", got)
	}
}

// zeros is an endless reader of zero bytes that allocates nothing.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func leftoverUploads(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".upload-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestLargeUploadStreamsToDisk is row 6 of issue 9: a 300 MiB upload was
// refused with 413 at 256 MiB, but read into memory first (953 MB peak RSS).
// Uploads are now streamed to a temporary file in the model repository, the
// size limit enforced while streaming: the refusal allocates a few MiB, not
// the body, and leaves no temporary file. An accepted multipart upload (the
// version field after the file, as the dashboard sends it) is renamed into
// its version directory. Row 13 over HTTP closes it.
func TestLargeUploadStreamsToDisk(t *testing.T) {
	c := testConfig(t)
	a := start(t, c)
	models := filepath.Join(c.DataDir, ModelsDir)
	const size = 300 << 20
	var code int
	var body []byte
	got := allocDuring(func() {
		req, err := http.NewRequest("POST", a.WebURL()+"/api/v1/models/demo/versions", io.LimitReader(zeros{}, size))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Authorization", "Bearer "+a.AdminToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
	})
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "http.max_upload_bytes") {
		t.Fatalf("300 MiB upload: HTTP %d %s", code, body)
	}
	if got > 32<<20 {
		t.Fatalf("refusing a 300 MiB upload allocated %d MiB, want under 32 MiB", got>>20)
	}
	t.Logf("300 MiB upload refused at 256 MiB: %d KiB allocated in the test process (client and server)", got>>10)
	if left := leftoverUploads(t, models); len(left) > 0 {
		t.Fatalf("temporary files left in the model repository: %v", left)
	}

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "model.onnx")
	_, _ = fw.Write(demo.ONNX)
	_ = mw.WriteField("version", "5")
	_ = mw.Close()
	req, _ := http.NewRequest("POST", a.WebURL()+"/api/v1/models/demo/versions", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+a.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"version":5`) {
		t.Fatalf("multipart upload: HTTP %d %s", resp.StatusCode, body)
	}
	if b, err := os.ReadFile(filepath.Join(models, demo.Name, "5", "model.onnx")); err != nil || !bytes.Equal(b, demo.ONNX) {
		t.Fatalf("version 5 on disk: %d bytes, %v", len(b), err)
	}
	if left := leftoverUploads(t, models); len(left) > 0 {
		t.Fatalf("temporary files left in the model repository: %v", left)
	}

	// Row 13 over HTTP: the highest int64 version is accepted, the next
	// automatic one is a clear 400, and a version past int64 too.
	api := newAPIClient(t, a)
	if code, body := api.do("POST", "/api/v1/models/demo/versions?version=9223372036854775807", demo.ONNX); code != http.StatusCreated {
		t.Fatalf("version MaxInt64: %d %s", code, body)
	}
	if code, body := api.do("POST", "/api/v1/models/demo/versions", demo.ONNX); code != http.StatusBadRequest || !strings.Contains(string(body), "no next version") {
		t.Fatalf("next version after MaxInt64: %d %s", code, body)
	}
	if code, body := api.do("POST", "/api/v1/models/demo/versions?version=9223372036854775808", demo.ONNX); code != http.StatusBadRequest ||
		!strings.Contains(string(body), "want an integer from 1 to 9223372036854775807") {
		t.Fatalf("version past int64: %d %s", code, body)
	}
}

// allocDuring returns the bytes the process allocated while fn ran (a bound
// on it is asserted, never a time).
func allocDuring(fn func()) uint64 {
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	fn()
	goruntime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
