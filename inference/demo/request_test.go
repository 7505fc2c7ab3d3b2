package demo_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/infergate/infergate/inference/demo"
)

func TestScore(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{`{"prediction":[0.25]}`, 0.25, true},
		{`{"prediction":0.5}`, 0.5, true},
		{`{"prediction":[0.1,0.2]}`, 0, false},
		{`{"outputs":{"output":[0.1]}}`, 0, false},
		{`not json`, 0, false},
	} {
		got, ok := demo.Score([]byte(tc.in))
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: got %v %v", tc.in, got, ok)
		}
	}
}

// AppendRequest writes what encoding/json would read back as the same
// Request, whatever the id holds.
func TestAppendRequestRoundTrips(t *testing.T) {
	g := demo.NewGenerator(3)
	for i, id := range []string{"demo-1", `quote " back \ slash`, "tab\tnewline\n", "ünïcode", ""} {
		features, _ := g.Reading()
		if i == 0 {
			features = []float32{1e-7, -3.5e12, 0, 0.1}
		}
		b := demo.AppendRequest([]byte("x"), id, features)[1:]
		var got demo.Request
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got.RequestID != id || !slices.Equal(got.Features, features) {
			t.Errorf("%s read back as %+v", b, got)
		}
	}
}

func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "models")
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, demo.Name, "1", demo.FileName)
	if b, err := os.ReadFile(path); err != nil || !slices.Equal(b, demo.ONNX) {
		t.Fatalf("%s: %v (%d bytes)", path, err, len(b))
	}
	if mc := demo.ModelConfig(dir); mc.Name != demo.Name || mc.BasePath != filepath.Join(dir, demo.Name) {
		t.Errorf("ModelConfig = %+v", mc)
	}
	// An existing demo/ is the operator's: left alone.
	if err := os.WriteFile(path, []byte("replaced"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "replaced" {
		t.Errorf("Install overwrote the operator's model")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("models dir holds %d entries, want demo/ only (no temporary directory left)", len(entries))
	}
}
