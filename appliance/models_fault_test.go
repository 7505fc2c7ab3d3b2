package appliance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
	a, err := New(c, testLogger(t))
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
