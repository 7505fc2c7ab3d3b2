package packaging

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/appliance"
)

// readUnit parses deb/infergate.service into key → values (a key may repeat).
func readUnit(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("deb/infergate.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("infergate.service: not a setting: %q", line)
		}
		unit[k] = append(unit[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

// TestUnitHardening checks the unit against what issue 16 asks of it, and
// its limits against the settings the package ships: every directive the
// issue names, write access to the data dir only, a stop timeout that
// covers the drain, and a memory limit above GOMEMLIMIT.
func TestUnitHardening(t *testing.T) {
	unit := readUnit(t)
	one := func(k string) string {
		t.Helper()
		if len(unit[k]) != 1 {
			t.Errorf("%s: %q, want exactly one", k, unit[k])
			return ""
		}
		return unit[k][0]
	}
	for k, want := range map[string]string{
		"User":            "infergate",
		"Group":           "infergate",
		"Restart":         "on-failure",
		"StateDirectory":  "infergate",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
		"ReadWritePaths":  "/var/lib/infergate",
		"KillSignal":      "SIGTERM",
		// The settings error exit code (cmd/infergate exitUsage): a restart
		// would only repeat it.
		"RestartPreventExitStatus": "2",
		"ExecStart":                "/usr/bin/infergate run --config /etc/infergate/infergate.yaml",
	} {
		if got := one(k); got != want && len(unit[k]) == 1 {
			t.Errorf("%s=%s, want %s", k, got, want)
		}
	}
	if got := one("CapabilityBoundingSet"); got != "" {
		t.Errorf("CapabilityBoundingSet=%s, want empty (no capabilities)", got)
	}
	if n, err := strconv.Atoi(one("LimitNOFILE")); err != nil || n < 4096 {
		t.Errorf("LimitNOFILE=%s, want a number well above the default 1024", one("LimitNOFILE"))
	}

	// The settings the service runs with: the packaged config file.
	cfg, err := appliance.Load([]string{"--config", "deb/infergate.yaml"}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != one("ReadWritePaths") {
		t.Errorf("data_dir %s is not the unit's only writable path %s", cfg.DataDir, one("ReadWritePaths"))
	}
	// A stop waits for the pipeline's drain (at most shutdown_timeout; with
	// exactly-once, the wait and then the end of the open transaction, each
	// bounded by it), then the model server, broker and store close. systemd
	// kills the service after TimeoutStopSec, so it must leave room for both.
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if drain := cfg.Pipeline.ShutdownTimeout; stop < 2*drain {
		t.Errorf("TimeoutStopSec=%s does not cover twice the packaged pipeline.shutdown_timeout %s", stop, drain)
	}

	// GOMEMLIMIT makes the Go runtime collect harder before the kernel's
	// MemoryMax would kill the service, so it must be below it, and above
	// the highest peak measured (203 MB, taken here as MiB: a backlog
	// drained at full load, docs/performance.md) so that normal work does
	// not run the collector hot.
	memMax := parseBytes(t, "MemoryMax", one("MemoryMax"))
	var goMemLimit int64
	for _, env := range unit["Environment"] {
		if v, ok := strings.CutPrefix(env, "GOMEMLIMIT="); ok {
			goMemLimit = parseBytes(t, "GOMEMLIMIT", v)
		}
	}
	const measuredPeak = 203 << 20
	if goMemLimit <= measuredPeak || goMemLimit >= memMax {
		t.Errorf("GOMEMLIMIT %d MiB: want above the measured peak %d MiB and below MemoryMax %d MiB",
			goMemLimit>>20, measuredPeak>>20, memMax>>20)
	}
}

// parseBytes reads systemd's K/M/G suffixes and Go's KiB/MiB/GiB (both 1024-based).
func parseBytes(t *testing.T, what, s string) int64 {
	t.Helper()
	num := strings.TrimRight(s, "KMGiB")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		t.Fatalf("%s=%s: %v", what, s, err)
	}
	switch strings.TrimSuffix(strings.TrimSuffix(s[len(num):], "B"), "i") {
	case "":
	case "K":
		n <<= 10
	case "M":
		n <<= 20
	case "G":
		n <<= 30
	default:
		t.Fatalf("%s=%s: unknown unit", what, s)
	}
	return n
}

// TestUnitSecurity scores the unit with systemd's own review,
// `systemd-analyze security --offline`, and fails if the exposure rises
// above what it is today (3.2 of 10, "OK", on systemd 252): a directive
// dropped or weakened shows here. What keeps it above 0 is listed in
// docs/install.md.
func TestUnitSecurity(t *testing.T) {
	sa := needTool(t, "systemd-analyze")
	if exec.Command(sa, "security", "--help").Run() != nil {
		t.Skip("this systemd-analyze has no security verb")
	}
	b, err := exec.Command(sa, "security", "--offline=true", "--threshold=32", "deb/infergate.service").CombinedOutput()
	out := string(b)
	if strings.Contains(out, "Unknown option") || strings.Contains(out, "unrecognized option") {
		t.Skipf("this systemd-analyze cannot review offline (systemd < 250): %s", out)
	}
	i := strings.Index(out, "Overall exposure level")
	if i < 0 {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(out[i:]))
	if err != nil {
		t.Errorf("systemd-analyze security --threshold=32 (3.2 of 10): %v\n%s", err, out)
	}
}
