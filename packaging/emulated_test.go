package packaging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// needTool returns the path of an outside tool, or skips the test: a
// developer may not have it, but CI (.ci/run installs it) must.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; .ci/run's PACKAGES should have installed it", name)
		}
		t.Skipf("%s is not installed (Debian: see PACKAGES in .ci/run); skipping", name)
	}
	return p
}

// testVersion is stamped into the binaries the tests build, so that every
// place that reports the version can be compared with it.
const testVersion = "v0.0.0-packaging-test"

// buildRelease builds cmd/infergate the way scripts/release.sh does (static,
// trimmed, stripped, stamped) for goos/goarch[/goarm]. With the release
// script's cross-build earlier in .ci/run the packages come from the build
// cache and only the link is new.
func buildRelease(t *testing.T, goos, goarch, goarm string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "infergate")
	pkg := "github.com/infergate/infergate/buildinfo"
	cmd := exec.Command(goTool(), "build", "-trimpath",
		"-ldflags", fmt.Sprintf("-s -w -X %s.version=%s -X %s.commit=0000000 -X %s.date=2026-01-01T00:00:00Z", pkg, testVersion, pkg, pkg),
		"-o", bin, "../cmd/infergate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOARM="+goarm)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building for %s/%s%s: %v\n%s", goos, goarch, goarm, err, out)
	}
	return bin
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestEmulated runs the ARM release binaries as a Raspberry Pi would, under
// qemu-user: `version`, then `run --demo` until /readyz answers 200, results
// flowing for a few seconds, then SIGTERM and a clean exit. The native build
// runs the same steps, so the version checks also run where qemu is absent;
// it is stopped with SIGINT instead (os.Interrupt: Ctrl+C in a terminal, and
// the only signal a Windows console delivers — Go maps CTRL_C_EVENT and
// CTRL_BREAK_EVENT to it), so the interactive stop a Windows user makes is
// shown draining to exit status 0 by the same code on Linux. SIGTERM is
// what systemd sends and is covered by the ARM runs and cmd/infergate's
// tests.
// Start-to-ready and RSS are logged; under emulation they are relative
// figures only (qemu translates every instruction and adds its own memory).
//
// The ARMv6 build is the one the armhf .deb carries (Raspberry Pi OS 32-bit
// on every Pi); it runs on qemu's ARM1176, the Pi Zero/1 CPU, so an
// instruction newer than ARMv6 in it would fault here.
func TestEmulated(t *testing.T) {
	for _, tc := range []struct {
		name, goarch, goarm, platform string
		qemu                          []string
		stop                          os.Signal
	}{
		{"native", runtime.GOARCH, "", "linux/" + runtime.GOARCH, nil, os.Interrupt},
		{"arm64", "arm64", "", "linux/arm64", []string{"qemu-aarch64-static"}, syscall.SIGTERM},
		{"armv7", "arm", "7", "linux/armv7", []string{"qemu-arm-static"}, syscall.SIGTERM},
		{"armv6", "arm", "6", "linux/armv6", []string{"qemu-arm-static", "-cpu", "arm1176"}, syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if runtime.GOOS != "linux" {
				t.Skip("reads /proc and runs qemu-user: Linux only")
			}
			var prefix []string
			if tc.qemu != nil {
				prefix = append([]string{needTool(t, tc.qemu[0])}, tc.qemu[1:]...)
			}
			bin := buildRelease(t, "linux", tc.goarch, tc.goarm)
			run := func(args ...string) string {
				t.Helper()
				all := append(append(append([]string(nil), prefix...), bin), args...)
				out, err := exec.Command(all[0], all[1:]...).CombinedOutput()
				if err != nil {
					t.Fatalf("infergate %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			if out := run("version"); !strings.Contains(out, "infergate "+testVersion+"\n") || !strings.Contains(out, tc.platform) {
				t.Fatalf("infergate version printed %q; want %s on %s", out, testVersion, tc.platform)
			}
			if out := run("model-server", "--version"); !strings.Contains(out, "infergate-"+testVersion) {
				t.Fatalf("model-server --version printed %q; want infergate-%s", out, testVersion)
			}
			if out := run("version", "--notices"); !strings.HasPrefix(out, "THIRD-PARTY NOTICES FOR INFERGATE\n") || !strings.Contains(out, "github.com/twmb/franz-go") {
				t.Fatalf("version --notices printed %.300q; want the third-party notices", out)
			}
			demoSmoke(t, prefix, bin, tc.stop)
		})
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects what a process writes while the test reads it.
type lockedBuffer = testutil.Buffer

// subprocess is one `infergate run` subprocess on free ports.
type subprocess struct {
	t       *testing.T
	cmd     *exec.Cmd
	exited  chan error
	base    string
	dataDir string
	ready   time.Duration // start to /readyz 200
	logs    *lockedBuffer
}

func startAppliance(t *testing.T, prefix []string, bin string, extra ...string) *subprocess {
	t.Helper()
	a := &subprocess{t: t, dataDir: t.TempDir(), exited: make(chan error, 1)}
	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	a.base = "http://" + httpAddr
	args := append(append(append([]string(nil), prefix...), bin), "run",
		"--data-dir", a.dataDir,
		"--broker-listen", "127.0.0.1:"+strconv.Itoa(freePort(t)),
		"--grpc-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0",
		"--http-listen", httpAddr,
		"--broker-durability", "os")
	a.cmd = exec.Command(args[0], append(args[1:], extra...)...)
	logs := &lockedBuffer{}
	a.cmd.Stdout, a.cmd.Stderr, a.logs = logs, logs, logs
	a.cmd.Env = cleanEnv()
	started := time.Now()
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			a.cmd.Process.Kill()
			<-a.exited
		}
		if t.Failed() {
			t.Logf("infergate output:\n%s", logs.String())
		}
	})
	// Generous: under emulation on a loaded 2-core CI machine a start takes
	// tens of seconds.
	waitFor(t, 4*time.Minute, a.exited, "/readyz to answer 200", func() bool {
		code, _ := get(a.base+"/readyz", "")
		return code == http.StatusOK
	})
	a.ready = time.Since(started)
	return a
}

// waitResults waits until n more results are counted on /metrics.
func (a *subprocess) waitResults(n float64) {
	a.t.Helper()
	first := -1.0
	waitFor(a.t, 2*time.Minute, a.exited, fmt.Sprintf("%.0f more results on /metrics", n), func() bool {
		_, body := get(a.base+"/metrics", "")
		v, ok := metricSum(body, "infergate_results_total")
		if !ok {
			return false
		}
		if first < 0 {
			first = v
		}
		return v >= first+n
	})
}

// stop sends SIGTERM and requires a clean exit.
func (a *subprocess) stop() { a.stopWith(syscall.SIGTERM) }

// stopWith sends sig and requires a clean exit.
func (a *subprocess) stopWith(sig os.Signal) {
	a.t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		a.t.Fatal(err)
	}
	select {
	case err := <-a.exited:
		a.exited <- err // for the cleanup
		if err != nil {
			a.t.Fatalf("after %v: %v (want exit 0)", sig, err)
		}
		// Exit 0 alone would also follow an exit that skipped the drain.
		if logs := a.logs.String(); !strings.Contains(logs, `msg="shutting down"`) || !strings.Contains(logs, "msg=stopped component=pipeline") {
			a.t.Fatalf("after %v: exit 0 but no supervised shutdown (no \"shutting down\" and pipeline \"stopped\" in the log):\n%s", sig, logs)
		}
	case <-time.After(2 * time.Minute):
		a.t.Fatalf("no exit within 2 minutes of %v", sig)
	}
}

// demoSmoke runs `infergate run --demo` and checks readiness, results,
// the version on /metrics and /api/v1/status, and a clean stop on sig.
func demoSmoke(t *testing.T, prefix []string, bin string, sig os.Signal) {
	a := startAppliance(t, prefix, bin, "--demo")
	rssReady, _ := procRSS(a.cmd.Process.Pid)
	a.waitResults(60) // about 3 s of the demo's 20 requests/s
	rssDemo, hwm := procRSS(a.cmd.Process.Pid)
	t.Logf("start to ready %.1fs; RSS at ready %.0f MiB, after results flowed %.0f MiB (peak %.0f MiB)",
		a.ready.Seconds(), mib(rssReady), mib(rssDemo), mib(hwm))

	_, metrics := get(a.base+"/metrics", "")
	if !strings.Contains(metrics, `infergate_build_info{`) || !strings.Contains(metrics, `version="`+testVersion+`"`) {
		t.Errorf("/metrics has no infergate_build_info with version %q", testVersion)
	}
	token, err := os.ReadFile(filepath.Join(a.dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(a.base+"/api/v1/status", strings.TrimSpace(string(token)))
	var st struct {
		Version string `json:"version"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || st.Version != testVersion {
		t.Errorf("/api/v1/status: %d %q; want version %q", code, body, testVersion)
	}
	a.stopWith(sig)
}

// TestFootprint measures what docs/install.md reports, for the default and
// the small profile: start to ready, idle RSS (no traffic, 10 s after
// ready), RSS with the demo running for 30 s at its default 20 requests/s,
// and RSS and results/s with the demo at 200 requests/s for 30 s (load;
// VmHWM of that process is the peak). It takes minutes, so it runs only
// with INFERGATE_FOOTPRINT=1:
//
//	INFERGATE_FOOTPRINT=1 go test ./packaging -run TestFootprint -v -timeout 60m
func TestFootprint(t *testing.T) {
	if os.Getenv("INFERGATE_FOOTPRINT") == "" {
		t.Skip("minutes long; set INFERGATE_FOOTPRINT=1")
	}
	t.Log("| arch | profile | binary | start to ready | RSS idle | RSS demo 20/s | RSS at 200/s | results/s at 200/s | peak RSS |")
	for _, tc := range []struct {
		name, goarch, goarm string
		qemu                []string
	}{
		{"native", runtime.GOARCH, "", nil},
		{"arm64", "arm64", "", []string{"qemu-aarch64-static"}},
		{"armv7", "arm", "7", []string{"qemu-arm-static"}},
		{"armv6", "arm", "6", []string{"qemu-arm-static", "-cpu", "arm1176"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var prefix []string
			if tc.qemu != nil {
				prefix = append([]string{needTool(t, tc.qemu[0])}, tc.qemu[1:]...)
			}
			bin := buildRelease(t, "linux", tc.goarch, tc.goarm)
			fi, err := os.Stat(bin)
			if err != nil {
				t.Fatal(err)
			}
			for _, profile := range []string{"default", "small"} {
				idle := startAppliance(t, prefix, bin, "--profile", profile)
				time.Sleep(10 * time.Second) // a measurement interval, not a wait for a condition
				rssIdle, _ := procRSS(idle.cmd.Process.Pid)
				idle.stop()

				demo := startAppliance(t, prefix, bin, "--profile", profile, "--demo")
				demo.waitResults(20)
				time.Sleep(30 * time.Second) // measurement interval
				rssDemo, _ := procRSS(demo.cmd.Process.Pid)
				demo.stop()

				load := startAppliance(t, prefix, bin, "--profile", profile, "--demo", "--demo-rate", "200")
				load.waitResults(200)
				before := load.results()
				time.Sleep(30 * time.Second) // measurement interval
				rate := (load.results() - before) / 30
				rssLoad, hwm := procRSS(load.cmd.Process.Pid)
				load.stop()
				t.Logf("| %s | %s | %.1f MiB | %.1f s | %.0f MiB | %.0f MiB | %.0f MiB | %.0f | %.0f MiB |", tc.name, profile,
					mib(fi.Size()), idle.ready.Seconds(), mib(rssIdle), mib(rssDemo), mib(rssLoad), rate, mib(hwm))
			}
		})
	}
}

// results reads infergate_results_total from /metrics.
func (a *subprocess) results() float64 {
	_, body := get(a.base+"/metrics", "")
	v, _ := metricSum(body, "infergate_results_total")
	return v
}

// waitFor polls cond until it holds; it fails if the deadline passes or the
// process exits first.
func waitFor(t *testing.T, d time.Duration, exited chan error, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, d, what, func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("infergate exited (%v) while waiting for %s", err, what)
		default:
		}
		return cond()
	})
}

func get(url, token string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// metricSum adds up the samples of one family in Prometheus text format.
func metricSum(body, name string) (float64, bool) {
	var sum float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// procRSS reads VmRSS and VmHWM of a process (for qemu-user: the emulator
// with the guest in it).
func procRSS(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// cleanEnv drops INFERGATE_* variables so a developer's settings stay out.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "INFERGATE_") {
			env = append(env, kv)
		}
	}
	return env
}
