package packaging

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWindowsUnderWine runs the windows/amd64 release build under Wine, the
// nearest thing to Windows on a Linux machine: `version`, `run --demo` with
// no settings (so the Windows defaults: data dir under %ProgramData%, the
// embedded broker in memory) until ready and results flow, the version on
// /metrics and /api/v1/status, `dlq list` from a second process while the
// first holds the store (it must turn to the admin API), and Ctrl+C
// (SIGINT to the Wine process, which Wine delivers as a console Ctrl+C, Go
// as os.Interrupt) draining to exit status 0.
//
// It needs wine64 (Debian: wine64) and mingw-w64 (gcc-mingw-w64-x86-64-win32)
// for the stand-in bcryptprimitives.dll that Wine 8.0 lacks
// (testdata/wine/processprng.c); CI does not install them, so there it
// skips. What Wine cannot stand in for (the service manager, ACLs) is in
// docs/install.md.
func TestWindowsUnderWine(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("runs the windows/amd64 build under Wine on linux/amd64")
	}
	wine, err := exec.LookPath("wine64")
	if err != nil {
		if wine = "/usr/lib/wine/wine64"; !fileExists(wine) {
			t.Skip("wine64 is not installed (Debian: apt-get install wine64)")
		}
	}
	mingw, err := exec.LookPath("x86_64-w64-mingw32-gcc")
	if err != nil {
		t.Skip("x86_64-w64-mingw32-gcc is not installed (Debian: gcc-mingw-w64-x86-64-win32); it builds Wine's missing ProcessPrng")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "infergate.exe")
	if err := os.Rename(buildRelease(t, "windows", "amd64", ""), exe); err != nil {
		t.Fatal(err)
	}
	dll := filepath.Join(dir, "bcryptprimitives.dll")
	if out, err := exec.Command(mingw, "-shared", "-O2", "-o", dll, "testdata/wine/processprng.c", "-ladvapi32").CombinedOutput(); err != nil {
		t.Fatalf("building the ProcessPrng stand-in: %v\n%s", err, out)
	}

	prefix := filepath.Join(dir, "prefix")
	env := append(cleanEnv(), "WINEPREFIX="+prefix, "WINEDEBUG=-all")
	wineCmd := func(args ...string) *exec.Cmd {
		c := exec.Command(wine, args...)
		c.Env, c.Dir = env, dir
		return c
	}
	t.Cleanup(func() {
		// Ends every process of this prefix (wineserver and services).
		k := exec.Command(filepath.Join(filepath.Dir(wine), "wineserver"), "-k")
		k.Env = env
		k.Run()
	})
	if out, err := wineCmd("wineboot", "--init").CombinedOutput(); err != nil {
		t.Fatalf("wineboot --init: %v\n%s", err, out)
	}
	system32 := filepath.Join(prefix, "drive_c", "windows", "system32")
	if b, err := os.ReadFile(dll); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(filepath.Join(system32, "bcryptprimitives.dll"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := wineCmd("infergate.exe", "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "infergate "+testVersion) || !strings.Contains(string(out), "windows/amd64") {
		t.Fatalf("infergate.exe version: %v\n%s", err, out)
	}

	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	base := "http://" + httpAddr
	run := wineCmd("infergate.exe", "run", "--demo", "--http-listen", httpAddr,
		"--broker-listen", "127.0.0.1:"+strconv.Itoa(freePort(t)), "--grpc-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0")
	logs := &lockedBuffer{}
	run.Stdout, run.Stderr = logs, logs
	a := &subprocess{t: t, cmd: run, exited: make(chan error, 1), base: base, logs: logs}
	started := time.Now()
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- run.Wait() }()
	t.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			run.Process.Kill()
			<-a.exited
		}
		if t.Failed() {
			t.Logf("infergate.exe output:\n%s", logs.String())
		}
	})
	waitFor(t, 4*time.Minute, a.exited, "/readyz to answer 200", func() bool {
		code, _ := get(base+"/readyz", "")
		return code == http.StatusOK
	})
	t.Logf("start to ready under Wine %.1fs (Wine's own start included)", time.Since(started).Seconds())
	a.waitResults(60)

	dataDir := filepath.Join(prefix, "drive_c", "ProgramData", "infergate", "data")
	token, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		t.Fatalf("the admin token is not under %%ProgramData%%\\infergate\\data: %v", err)
	}
	code, body := get(base+"/api/v1/status", strings.TrimSpace(string(token)))
	var st struct {
		Version string `json:"version"`
		Broker  struct {
			Detail string `json:"detail"`
		} `json:"broker"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || st.Version != testVersion || st.Broker.Detail != "durability memory" {
		t.Errorf("/api/v1/status: %d %.300q; want version %q and the broker in memory", code, body, testVersion)
	}
	if _, metrics := get(base+"/metrics", ""); !strings.Contains(metrics, `platform="windows/amd64"`) {
		t.Error(`/metrics: infergate_build_info has no platform="windows/amd64"`)
	}
	if entries, _ := os.ReadDir(filepath.Join(dataDir, "broker")); len(entries) > 1 {
		t.Errorf("the broker wrote %d files to its data dir; in memory it keeps only the lock", len(entries))
	}

	// A second process: the store is held by the running one, so dlq must
	// use the admin API (Badger's Windows lock text, store.heldByAnotherProcess).
	if out, err := wineCmd("infergate.exe", "dlq", "list").CombinedOutput(); err != nil || !strings.Contains(string(out), "FAILED AT") {
		t.Errorf("infergate.exe dlq list next to the running appliance: %v\n%s", err, out)
	}
	if code, _ := get(base+"/readyz", ""); code != http.StatusOK {
		t.Fatalf("after dlq list the appliance answers /readyz %d", code)
	}

	a.stopWith(os.Interrupt)
}
