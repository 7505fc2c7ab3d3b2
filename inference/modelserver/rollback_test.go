package modelserver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tfserving"
)

// With latest:2, an upload keeps the version before it loaded (rollback is a
// routing change, not a reload), and deleting a version unloads it at once.
func TestPreviousVersionStaysAndDeleteVersion(t *testing.T) {
	base := t.TempDir()
	writeVersion(t, base, 1, addModel(t, 1))
	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "add", BasePath: base, Policy: tfserving.VersionPolicy{Latest: 2}}))
	if v, err := s.UploadVersion("add", 0, addModel(t, 2)); err != nil || v != 2 {
		t.Fatalf("upload: %d %v", v, err)
	}
	if got := available(s, "add"); !slices.Equal(got, []int64{2, 1}) {
		t.Fatalf("available after upload = %v, want [2 1]", got)
	}
	res, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "add", Version: 1}, addInput(1))
	if err != nil || res.Version != 1 {
		t.Fatalf("version 1 after upload: %v %v", res, err)
	}

	if err := s.SetLabel("add", "stable", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVersion("add", 1); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("deleting a labelled version: %v, want FAILED_PRECONDITION", err)
	}
	if err := s.SetLabel("add", "stable", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVersion("add", 9); status.Code(err) != codes.NotFound {
		t.Fatalf("deleting a missing version: %v, want NOT_FOUND", err)
	}
	if err := s.DeleteVersion("nope", 1); status.Code(err) != codes.NotFound {
		t.Fatalf("deleting from an unknown model: %v, want NOT_FOUND", err)
	}
	if err := s.DeleteVersion("add", 1); err != nil {
		t.Fatal(err)
	}
	if got := available(s, "add"); !slices.Equal(got, []int64{2}) {
		t.Fatalf("available after delete = %v, want [2]", got)
	}
	if _, err := os.Stat(filepath.Join(base, "1")); !os.IsNotExist(err) {
		t.Fatalf("version directory still there: %v", err)
	}
	if _, err := s.InProcess().Predict(context.Background(), model.Spec{Name: "add", Version: 1}, addInput(1)); status.Code(err) != codes.NotFound {
		t.Fatalf("deleted version still answers: %v", err)
	}
	if err := s.DeleteVersion("add", 2); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("deleting the only available version: %v, want FAILED_PRECONDITION", err)
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if e.Name() != "2" {
			t.Errorf("left over %s", e.Name())
		}
	}
}
