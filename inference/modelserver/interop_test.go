package modelserver

import (
	"context"
	"encoding/json"
	"github.com/infergate/infergate/inference/tfserving"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// python is Debian's interpreter, which has python3-grpcio and
// python3-grpc-tools (a pyenv shim on PATH may not).
const python = "/usr/bin/python3"

// repoRoot is where proto/ lives, relative to this package.
const repoRoot = "../.."

// TestPythonGRPCClient generates Python stubs from proto/ with grpc_tools and
// drives the server with them: Predict (both encodings, by label),
// GetModelMetadata, GetModelStatus, an error, HandleReloadConfigRequest.
// Needs Debian's python3-grpcio and python3-grpc-tools.
func TestPythonGRPCClient(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns python")
	}
	if err := exec.Command(python, "-c", "import grpc, grpc_tools.protoc").Run(); err != nil {
		t.Skipf("python3-grpcio / python3-grpc-tools not installed (%v)", err)
	}
	stubs := t.TempDir()
	var protos []string
	for _, sub := range []string{"tensorflow", "tensorflow_serving"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, "proto", sub), func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".proto") {
				rel, _ := filepath.Rel(filepath.Join(repoRoot, "proto"), p)
				protos = append(protos, rel)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	gen := exec.Command(python, append([]string{"-m", "grpc_tools.protoc", "-I", filepath.Join(repoRoot, "proto"), "-I", "/usr/include",
		"--python_out=" + stubs, "--grpc_python_out=" + stubs}, protos...)...)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("generating stubs: %v\n%s", err, out)
	}

	demoCfg := demoRepo(t)
	addBase := t.TempDir()
	writeVersion(t, addBase, 1, addModel(t, 1))
	writeVersion(t, addBase, 2, addModel(t, 2))
	s := startServer(t, testConfig(demoCfg, tfserving.ModelConfig{Name: "add", BasePath: addBase, Policy: tfserving.VersionPolicy{All: true},
		Labels: map[string]int64{"stable": 1, "canary": 2}}))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/tfs_client.py", stubs, s.GRPCAddr(),
		filepath.Join(repoRoot, "inference", "onnxrt", "testdata", "demo.json"), demoCfg.BasePath, addBase)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("python client: %v\n%s\n%s", err, out, stderr)
	}
	var summary map[string]any
	if err := json.Unmarshal(out, &summary); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	t.Logf("python client: %s", out)
	if summary["reloaded"] != true || summary["unknown_model"] != "NOT_FOUND" {
		t.Fatalf("summary %v", summary)
	}
}

// TestCurlREST drives the REST port with curl, as an operator would.
func TestCurlREST(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns curl")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	s := startServer(t, testConfig(demoRepo(t)))
	base := "http://" + s.RESTAddr() + "/v1/models/demo"
	row := "[" + strings.TrimSuffix(strings.Repeat("0.25,", 16), ",") + "]"
	for _, tc := range []struct {
		name string
		args []string
		code string
		body string
	}{
		{"predict rows", []string{"-X", "POST", "-H", "Content-Type: application/json", "-d", `{"instances": [` + row + `, ` + row + `]}`, base + ":predict"}, "200", `"predictions"`},
		{"predict columns", []string{"-d", `{"inputs": {"input": [` + row + `]}}`, base + "/versions/1:predict"}, "200", `"outputs"`},
		{"status", []string{base}, "200", `"state": "AVAILABLE"`},
		{"metadata", []string{base + "/metadata"}, "200", `"serving_default"`},
		{"unknown model", []string{"-d", `{"instances": [` + row + `]}`, "http://" + s.RESTAddr() + "/v1/models/nope:predict"}, "404", `"error"`},
		{"bad input", []string{"-d", `{"instances": [[1, 2]]}`, base + ":predict"}, "400", `"error"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-s", "-S", "--max-time", "30", "-w", "\n%{http_code}"}, tc.args...)
			out, err := exec.Command(curl, args...).Output()
			if err != nil {
				t.Fatalf("curl: %v", err)
			}
			i := strings.LastIndex(string(out), "\n")
			body, code := string(out[:i+1]), string(out[i+1:])
			compact := strings.ReplaceAll(body, `":"`, `": "`)
			if code != tc.code || !strings.Contains(compact, tc.body) {
				t.Fatalf("got %s %s, want %s with %s", code, body, tc.code, tc.body)
			}
		})
	}
}
