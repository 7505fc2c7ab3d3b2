package onnxrt_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// portableSkip are the tests TestPortablePaths leaves out of the portable
// builds: itself, and the allocation counts, which check the same Go code
// on every platform and take minutes under qemu.
const portableSkip = "^(TestPortablePaths|TestConvModelAllocations|TestRecurrentAllocations|TestRunAllocations|TestExportAllocations)$"

var topLevelPass = regexp.MustCompile(`(?m)^--- PASS: (Test\w+) `)

// TestPortablePaths runs the package's tests on the code that amd64 machines
// with AVX-512 never execute: built with -tags purego (no assembly) for
// amd64 and run natively, and cross-built for arm64 and 32-bit ARMv7 and
// run under qemu-user (Debian's qemu-user-static, which .ci/run installs;
// skipped where it is absent, except under CI). Every kernel with assembly
// on amd64 (GEMM in its packed, direct and in-place forms, pooling, softmax,
// exp, erf, tanh) is checked there against its definition and through the
// exported models. It runs from linux/amd64 only, not with -short; about 20 s
// per platform under qemu once built.
func TestPortablePaths(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds and emulates the package's tests; not with -short")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("cross-builds from linux/amd64")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	for _, tc := range []struct {
		name, goarch, goarm, tags, qemu string
	}{
		{"amd64-purego", "amd64", "", "purego", ""},
		{"arm64", "arm64", "", "", "qemu-aarch64-static"},
		{"armv7", "arm", "7", "", "qemu-arm-static"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var prefix []string
			if tc.qemu != "" {
				p, err := exec.LookPath(tc.qemu)
				if err != nil {
					if os.Getenv("CI") != "" {
						t.Fatalf("%s is not installed; .ci/run's PACKAGES should have installed it", tc.qemu)
					}
					t.Skipf("%s is not installed (Debian: qemu-user-static); skipping", tc.qemu)
				}
				prefix = []string{p}
			}
			bin := filepath.Join(t.TempDir(), "onnxrt.test")
			args := []string{"test", "-c", "-o", bin}
			if tc.tags != "" {
				args = append(args, "-tags", tc.tags)
			}
			build := exec.Command(goTool, append(args, ".")...)
			// GOFLAGS cleared: a -race there cannot cross-build without cgo.
			build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tc.goarch, "GOARM="+tc.goarm, "GOFLAGS=")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go %s for %s: %v\n%s", strings.Join(args, " "), tc.name, err, out)
			}
			// The package directory, so testdata/ is found; the kernel
			// choice left to the binary (INFERGATE_GEMM_KERNEL unset).
			run := exec.Command(bin, "-test.skip", portableSkip, "-test.count", "1", "-test.v")
			if prefix != nil {
				run = exec.Command(prefix[0], append(prefix[1:], run.Args...)...)
			}
			run.Env = append(os.Environ(), "INFERGATE_GEMM_KERNEL=")
			out, err := run.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.name, err, out)
			}
			// The binary exits non-zero on a failure; check that the tests
			// did run, and that the kernel tests were among them.
			passed := map[string]bool{}
			for _, m := range topLevelPass.FindAllStringSubmatch(string(out), -1) {
				passed[m[1]] = true
			}
			for _, name := range []string{"TestPackedGEMMMatchesNaive", "TestIndirectKernelMatchesNaive", "TestConvMatchesDefinition",
				"TestMaxPool2x2", "TestSoftmaxRows", "TestErfSlice", "TestTanhVec", "TestConvModelsMatchTorch", "TestTransformerExport",
				"TestRecurrentExports", "TestFloat16Model"} {
				if !passed[name] {
					t.Errorf("%s: %s did not pass\n%s", tc.name, name, out)
				}
			}
			t.Logf("%s: %d tests passed", tc.name, len(passed))
		})
	}
}
