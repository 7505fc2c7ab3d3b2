package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/appliance"
)

// TestDLQThroughAdminAPI runs `infergate dlq` against a running appliance
// (started in-process on random ports): with --url, and with only --data-dir,
// where the CLI finds the API and the token in the data dir.
func TestDLQThroughAdminAPI(t *testing.T) {
	c := appliance.Default()
	c.DataDir = t.TempDir()
	c.Broker.Listen = "127.0.0.1:0"
	c.Broker.Durability = "os"
	c.ModelServer.GRPCListen = "127.0.0.1:0"
	c.ModelServer.RESTListen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	c.Topics.Partitions = 2
	a, err := appliance.New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("appliance: %v", err)
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for a.Ready() != nil || a.WebURL() == "" {
		if time.Now().After(deadline) {
			t.Fatalf("appliance not ready: %v", a.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	url := a.WebURL()

	// Two poisoned requests, dead-lettered through the API's test request.
	for _, body := range []string{`{"request_id": "bad-1", "features": [1, 2]}`, "\xff\xfe not json"} {
		req, _ := http.NewRequest("POST", url+"/api/v1/test-request?key=k", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.AdminToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("test request %q: %s", body, resp.Status)
		}
	}

	run := func(env []string, args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := dispatch(context.Background(), args, stdio{in: strings.NewReader(""), out: &out, err: &errb, environ: env}); code != exitOK {
			t.Fatalf("infergate %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}
	withToken := []string{"INFERGATE_ADMIN_TOKEN=" + a.AdminToken()}

	out, _ := run(withToken, "dlq", "list", "--url", url, "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("dlq list: %q", out)
	}
	var rec struct {
		ID, Class, Value string
		ValueBase64      string `json:"value_base64"`
	}
	ids := map[string]string{}
	for _, l := range lines {
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		ids[rec.Class] = rec.ID
		if rec.Class == "decode" && rec.ValueBase64 == "" {
			t.Errorf("binary value not shown as base64: %s", l)
		}
	}
	if ids["validation"] == "" || ids["decode"] == "" {
		t.Fatalf("classes: %v", ids)
	}

	// Flags after the ID, as documented.
	out, _ = run(withToken, "dlq", "show", ids["validation"], "--url", url)
	if !strings.Contains(out, "bad-1") || !strings.Contains(out, `"class": "validation"`) {
		t.Fatalf("dlq show: %s", out)
	}
	_, msg := run(withToken, "dlq", "replay", "--all", "--class", "validation", "--url", url)
	if !strings.Contains(msg, "replayed 1 records") {
		t.Fatalf("dlq replay --all: %s", msg)
	}

	// No --url, no token: both come from the data dir of the running appliance.
	out, _ = run(nil, "dlq", "show", ids["validation"], "--data-dir", c.DataDir)
	if !strings.Contains(out, `"replays": 1`) {
		t.Fatalf("dlq show after replay: %s", out)
	}
	// The replayed request fails again (it is unfixed): its record is updated — it then
	// carries the replay's replay.of header, replays kept — instead of a second
	// validation record.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out, `"key": "replay.of"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			all, _ := run(nil, "dlq", "list", "--json", "--data-dir", c.DataDir)
			t.Fatalf("the replayed request did not fail again into record %s: %s\nall records:\n%s", ids["validation"], out, all)
		}
		out, _ = run(nil, "dlq", "show", ids["validation"], "--data-dir", c.DataDir)
	}
	if !strings.Contains(out, `"replays": 1`) {
		t.Fatalf("updated record lost its replay count: %s", out)
	}
	if out, _ = run(nil, "dlq", "list", "--class", "validation", "--json", "--data-dir", c.DataDir); strings.Count(out, "\n") != 1 {
		t.Fatalf("after the replay failed again: want the one validation record:\n%s", out)
	}
	_, msg = run(nil, "dlq", "replay", ids["decode"], "--data-dir", c.DataDir)
	if !strings.Contains(msg, "replayed 1 records") {
		t.Fatalf("dlq replay: %s", msg)
	}

	// Days and weeks; sizes and ages with units in the table.
	out, _ = run(nil, "dlq", "list", "--since", "1d", "--data-dir", c.DataDir)
	if !strings.Contains(out, ids["decode"]) || !strings.Contains(out, "ATTEMPTS") || !strings.Contains(out, " B ") {
		t.Fatalf("dlq list --since 1d:\n%s", out)
	}
	fails := func(code int, want string, args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		got := dispatch(context.Background(), args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
		if got != code || !strings.Contains(errb.String(), want) {
			t.Fatalf("infergate %s: exit %d (want %d)\n%s\nwant stderr to contain %q", strings.Join(args, " "), got, code, errb.String(), want)
		}
	}
	fails(exitUsage, `--class "validaton" is not an error class (did you mean validation?)`, "dlq", "list", "--class", "validaton", "--data-dir", c.DataDir)
	fails(exitUsage, `"1y" is not a duration`, "dlq", "list", "--since", "1y", "--data-dir", c.DataDir)
	fails(exitUsage, "add --yes to do it", "dlq", "purge", "--data-dir", c.DataDir)
	fails(exitFailure, "1 of the 1 IDs named no record", "dlq", "delete", "no-such-id", "--data-dir", c.DataDir)

	_, msg = run(nil, "dlq", "delete", ids["decode"], "--data-dir", c.DataDir)
	if !strings.Contains(msg, "deleted 1 records") {
		t.Fatalf("dlq delete: %s", msg)
	}
	fails(exitFailure, "no DLQ record with id", "dlq", "show", ids["decode"], "--data-dir", c.DataDir)
	_, msg = run(nil, "dlq", "purge", "--class", "validation", "--yes", "--data-dir", c.DataDir)
	if !strings.Contains(msg, "deleted ") {
		t.Fatalf("dlq purge: %s", msg)
	}
	fails(exitFailure, "no DLQ record with id", "dlq", "show", ids["validation"], "--data-dir", c.DataDir)
}
