package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/infergate/infergate/internal/testutil"
)

// infergateEnv is infergate with extra environment variables.
func infergateEnv(t *testing.T, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = cleanEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("infergate %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestCLIDeadAddress: every client command (produce, consume, each dlq
// subcommand, model, rollout, bench against a running appliance) pointed at
// a closed port or at one that accepts and never answers exits 1 with a message naming the
// address (and, for the silent one, the timeout it waited), instead of
// hanging.
func TestCLIDeadAddress(t *testing.T) {
	closed := "127.0.0.1:" + strconv.Itoa(freePort(t))
	silent := testutil.SilentListener(t)
	request := `{"request_id": "r-1", "features": [1]}` + "\n"
	for _, tc := range []struct {
		name, addr, want string
	}{
		{"closed", closed, "connection refused"},
		{"silent", silent, "gave up after 2s (--timeout) waiting for"},
	} {
		for _, args := range [][]string{
			{"produce", "--brokers", tc.addr, "--no-validate"},
			{"consume", "--brokers", tc.addr, "--idle-timeout", "1s"},
			{"dlq", "list", "--url", "http://" + tc.addr},
			{"dlq", "show", "01J00000000000000000000000", "--url", "http://" + tc.addr},
			{"dlq", "replay", "--all", "--url", "http://" + tc.addr},
			{"dlq", "delete", "01J00000000000000000000000", "--url", "http://" + tc.addr},
			{"dlq", "purge", "--yes", "--url", "http://" + tc.addr},
			{"model", "serve", "demo", "1", "--url", "http://" + tc.addr},
			{"rollout", "status", "--url", "http://" + tc.addr},
			{"bench", "--brokers", tc.addr, "--duration", "1s", "--quiet"},
		} {
			t.Run(tc.name+"/"+strings.Join(args[:2], " "), func(t *testing.T) {
				_, stderr, code := infergate(t, request, append(args, "--timeout", "2s")...)
				if code != exitFailure || !strings.Contains(stderr, tc.addr) || !strings.Contains(stderr, tc.want) {
					t.Fatalf("exit %d (want %d), stderr:\n%s\nwant it to name %s and say %q", code, exitFailure, stderr, tc.addr, tc.want)
				}
			})
		}
	}
}

// TestCLIDatasetCommandsFindASilentAPIQuickly: capture and replay may take
// minutes (their --timeout defaults to 10m), but an admin API that does not
// answer at all is found within the usual 10 s, not after 10 minutes.
func TestCLIDatasetCommandsFindASilentAPIQuickly(t *testing.T) {
	silent := testutil.SilentListener(t)
	for _, args := range [][]string{
		{"rollout", "capture", "x", "--last", "5"},
		{"rollout", "replay", "x", "--candidate", "2"},
	} {
		_, stderr, code := infergate(t, "", append(args, "--url", "http://"+silent)...)
		if code != exitFailure || !strings.Contains(stderr, "gave up after 10s (--timeout) waiting for the admin API at http://"+silent) {
			t.Errorf("%s against a silent API: exit %d, want %d and the 10 s it waited:\n%s", strings.Join(args[:2], " "), code, exitFailure, stderr)
		}
	}
}

// TestCLIFindsApplianceAndChecksRequests: with only --data-dir (the
// appliance on random ports), produce and consume find the broker and the
// model server through the data dir; produce refuses a request the model
// would reject, naming the line and the problem, and sends nothing; consume
// prints headers; a data dir whose appliance was killed is not trusted.
func TestCLIFindsApplianceAndChecksRequests(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	a := startAppliance(t, dataDir, freePort(t))
	// The endpoints file is written once the model server listens, just
	// before the log says ready.
	good := `{"request_id": "good-1", "features": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]}` + "\n"
	_, stderr, code := infergate(t, good, "produce", "--data-dir", dataDir, "--key-field", "request_id", "--header", "site=line-3")
	if code != 0 || !strings.Contains(stderr, "produced 1 of 1 records to inference_requests (acknowledged by the broker at "+a.broker+")") {
		t.Fatalf("produce: exit %d:\n%s", code, stderr)
	}

	bad := good +
		`{"request_id": "short", "features": [1, 2]}` + "\n" +
		`{"request_id": "nomodel", "model": "nosuch", "features": [1]}` + "\n" +
		`{"request_id": "noinput", "inputs": {"x": [[1]]}}` + "\n" +
		`{"request_id": "empty"}` + "\n"
	_, stderr, code = infergate(t, bad, "produce", "--data-dir", dataDir)
	for _, want := range []string{
		`stdin line 2: validation error: input "input": shape [1,2] does not match the signature's [-1,16]`,
		`stdin line 3: validation error: model nosuch:`,
		`stdin line 4: validation error: input "x" is not in signature "serving_default"`,
		`stdin line 5: decode error: request has none of "features", "inputs", "instances"`,
		"nothing was sent: 4 of 5 lines are invalid",
	} {
		if code != exitUsage || !strings.Contains(stderr, want) {
			t.Fatalf("produce of bad requests: exit %d (want %d), stderr:\n%s\nwant it to contain %q", code, exitUsage, stderr, want)
		}
	}
	ends, err := kadm.NewClient(client(t, a.broker)).ListEndOffsets(context.Background(), "inference_requests")
	if err != nil {
		t.Fatal(err)
	}
	var sent int64
	ends.Each(func(o kadm.ListedOffset) { sent += o.Offset })
	if sent != 1 {
		t.Fatalf("%d requests in the topic, want 1 (the good line of the refused file must not have been sent)", sent)
	}

	stdout, stderr, code := infergate(t, "", "consume", "--data-dir", dataDir, "--from-beginning", "-n", "1", "--format", `%k|%h|%s\n`)
	if code != 0 || !strings.HasPrefix(stdout, "good-1|site=line-3|{") || !strings.Contains(stdout, `"request_id":"good-1"`) {
		t.Fatalf("consume --format: exit %d:\n%s\n%s", code, stdout, stderr)
	}
	stdout, _, code = infergate(t, "", "consume", "--data-dir", dataDir, "--from-beginning", "-n", "1", "--print-key", "--print-headers")
	if code != 0 || !strings.HasPrefix(stdout, "good-1\tsite=line-3\t{") {
		t.Fatalf("consume --print-key --print-headers: exit %d:\n%s", code, stdout)
	}

	// Killed: its endpoints file stays, naming a PID that is gone; the
	// CLI falls back to the settings and says so.
	a.kill()
	closed := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, stderr, code = infergateEnv(t, []string{"INFERGATE_BROKER_LISTEN=" + closed}, good, "produce", "--data-dir", dataDir, "--no-validate", "--timeout", "2s")
	if code != exitFailure || !strings.Contains(stderr, closed) || !strings.Contains(stderr, "no appliance runs on data dir "+dataDir) {
		t.Fatalf("produce after the appliance was killed: exit %d:\n%s", code, stderr)
	}
}

// TestCLIHelpVersionCompletion: one help style for every command (the flag
// blocks `infergate run --help` prints), --version, help CMD, and shell
// completion whose flag names come from that help.
func TestCLIHelpVersionCompletion(t *testing.T) {
	version, _, code := infergate(t, "", "version")
	if code != 0 {
		t.Fatalf("version: exit %d", code)
	}
	if out, _, code := infergate(t, "", "--version"); code != 0 || out != version {
		t.Errorf("--version: exit %d, %q; want %q", code, out, version)
	}
	for _, cmd := range [][]string{{"run"}, {"model-server"}, {"produce"}, {"consume"}, {"dlq", "list"}, {"dlq", "purge"},
		{"rollout", "start"}, {"rollout", "capture"}, {"model", "serve"}, {"model", "bench"}, {"bench"}, {"version"}} {
		stdout, stderr, code := infergate(t, "", append(cmd, "--help")...)
		help := stdout + stderr
		if code != 0 || !strings.HasPrefix(help, "Usage: infergate "+cmd[0]) || !strings.Contains(help, "\n  --") {
			t.Errorf("%s --help: exit %d, want 0, \"Usage: infergate %s\" and flag blocks:\n%s", strings.Join(cmd, " "), code, cmd[0], tail(help, 8))
		}
	}
	if _, stderr, code := infergate(t, "", "help", "consume"); code != 0 || !strings.Contains(stderr, "--print-headers") {
		t.Errorf("help consume: exit %d:\n%s", code, stderr)
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"dl"}, "dlq \n"},
		{[]string{"dlq", "pu"}, "purge \n"},
		{[]string{"produce", "--ti"}, "--timeout \n"},
		{[]string{"consume", "--print-h"}, "--print-headers \n"},
		{[]string{"run", "--broker-li"}, "--broker-listen \n"},
		{[]string{"model-server", "--rest_api_p"}, "--rest_api_port \n"},
		{[]string{"dlq", "list", "--class", "valid"}, "validation \n"},
		{[]string{"completion", "f"}, "fish \n"},
	} {
		if out, _, code := infergate(t, "", append([]string{"__complete"}, tc.words...)...); code != 0 || out != tc.want {
			t.Errorf("__complete %q: exit %d, %q; want %q", tc.words, code, out, tc.want)
		}
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, _, code := infergate(t, "", "completion", sh)
		if code != 0 || !strings.Contains(out, "infergate __complete") {
			t.Errorf("completion %s: exit %d:\n%s", sh, code, out)
		}
		if path, err := exec.LookPath(sh); err == nil {
			if msg, err := exec.Command(path, "-n", "-c", out).CombinedOutput(); err != nil && sh == "bash" {
				t.Errorf("completion %s does not parse: %v\n%s", sh, err, msg)
			}
		}
	}
	if _, stderr, code := infergate(t, "", "completion", "tcsh"); code != exitUsage || !strings.Contains(stderr, "bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d: %s", code, stderr)
	}
}

// TestProduceTransactional: a line too large for the topic's
// max.message.bytes, which the broker would refuse alone while taking the
// lines around it, is found before anything is sent (line named, exit 2).
// What no check can foresee — here the same line sent with --no-validate —
// is all or nothing with --transactional for a read_committed reader (the
// pipeline): the transaction is aborted, exit 1, and the rerun of the fixed
// input is the only copy the pipeline sees.
func TestProduceTransactional(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	startAppliance(t, dataDir, freePort(t))
	features := `[-1.42, 0.06, 1.32, -0.38, -1.40, 0.42, 0.64, -0.58, -1.14, 1.06, 0.37, -0.72, -0.05, 1.06, 0.12, -0.50]`
	line := func(id, extra string) string {
		return `{"request_id": "` + id + `", "features": ` + features + extra + "}\n"
	}
	dir := t.TempDir()
	withBig := filepath.Join(dir, "with-big.jsonl")
	fixed := filepath.Join(dir, "fixed.jsonl")
	big := `, "note": "` + strings.Repeat("x", 2<<20) + `"`
	if err := os.WriteFile(withBig, []byte(line("t-1", "")+line("t-2", big)+line("t-3", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixed, []byte(line("t-1", "")+line("t-2", "")+line("t-3", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	// committed are the request ids a read_committed reader of the
	// requests topic sees.
	committed := func() []string {
		t.Helper()
		out, stderr, code := infergate(t, "", "consume", "--data-dir", dataDir, "--topic", "inference_requests", "--from-beginning", "--idle-timeout", "2s", "--format", `%k\n`)
		if code != 0 {
			t.Fatalf("consume: exit %d: %s", code, stderr)
		}
		var ids []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l != "" {
				ids = append(ids, l)
			}
		}
		return ids
	}

	_, stderr, code := infergate(t, "", "produce", "--data-dir", dataDir, "--key-field", "request_id", withBig)
	if code != exitUsage || !strings.Contains(stderr, withBig+" line 2: 2 MiB with its key, headers and framing; topic inference_requests takes at most 977 KiB a record (max.message.bytes)") ||
		!strings.Contains(stderr, "nothing was sent: 1 of 3 lines are too large for topic inference_requests") {
		t.Fatalf("plain produce with a line too large: exit %d (want %d):\n%s", code, exitUsage, stderr)
	}
	if got := committed(); len(got) != 0 {
		t.Fatalf("after the refused produce the topic has %q, want nothing", got)
	}

	_, stderr, code = infergate(t, "", "produce", "--data-dir", dataDir, "--key-field", "request_id", "--no-validate", "--transactional", withBig)
	if code != exitFailure || !strings.Contains(stderr, "transaction aborted: none of them will be read by the pipeline") || !strings.Contains(stderr, "MESSAGE_TOO_LARGE") {
		t.Fatalf("transactional produce with a record too large: exit %d:\n%s", code, stderr)
	}
	if got := committed(); len(got) != 0 {
		t.Fatalf("after the aborted transaction a read_committed reader sees %q, want nothing", got)
	}

	_, stderr, code = infergate(t, "", "produce", "--data-dir", dataDir, "--key-field", "request_id", "--transactional", fixed)
	if code != 0 || !strings.Contains(stderr, "produced 3 records to inference_requests in one transaction, committed") {
		t.Fatalf("transactional produce of the fixed input: exit %d:\n%s", code, stderr)
	}
	if got := committed(); len(got) != 3 {
		t.Fatalf("after the committed transaction a read_committed reader sees %q, want t-1, t-2, t-3", got)
	}
}
