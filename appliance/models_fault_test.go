package appliance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
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
