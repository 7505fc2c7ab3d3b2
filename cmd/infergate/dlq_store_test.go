package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/store"
)

// TestDLQStoreDeleteAndPurge: with no appliance running, delete and purge
// work on the store in the data dir, and purge needs --yes.
func TestDLQStoreDeleteAndPurge(t *testing.T) {
	dataDir := t.TempDir()
	st, err := store.Open(store.DefaultConfig(appliance.DataPaths(dataDir).Store), nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := []*store.Record{
		{Class: "decode", Value: []byte("not json"), Message: "request is not a JSON object"},
		{Class: "validation", Value: []byte(`{"features":[1]}`), Message: "shape"},
		{Class: "validation", Value: []byte(`{"features":[2]}`), Message: "shape"},
	}
	if err := st.Put(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(code int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args = append(args, "--data-dir", dataDir)
		if got := dispatch(context.Background(), args, stdio{in: strings.NewReader(""), out: &out, err: &errb}); got != code {
			t.Fatalf("infergate %s: exit %d, want %d\n%s%s", strings.Join(args, " "), got, code, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	if out := run(exitUsage, "dlq", "purge", "--class", "validation"); !strings.Contains(out, "add --yes") {
		t.Fatalf("purge without --yes: %s", out)
	}
	if out := run(exitOK, "dlq", "delete", recs[0].ID); !strings.Contains(out, "deleted 1 records") {
		t.Fatalf("delete: %s", out)
	}
	if out := run(exitOK, "dlq", "purge", "--class", "validation", "--since", "1w", "--yes"); !strings.Contains(out, "deleted 2 records") {
		t.Fatalf("purge: %s", out)
	}
	if out := run(exitOK, "dlq", "list", "--json"); strings.TrimSpace(out) != "" {
		t.Fatalf("records left after delete and purge: %s", out)
	}
}

// TestDLQReplayRefusedWithMemoryBroker: with no appliance running, a replay
// produces through the data dir's embedded broker opened for the purpose.
// With broker.durability memory (the default on Windows) that broker would
// drop the requests when the command exits, so the replay is refused and the
// record stays unreplayed, instead of being marked replayed and lost.
func TestDLQReplayRefusedWithMemoryBroker(t *testing.T) {
	dataDir := t.TempDir()
	st, err := store.Open(store.DefaultConfig(appliance.DataPaths(dataDir).Store), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &store.Record{Class: "validation", Value: []byte(`{"features":[1]}`), Message: "shape"}
	if err := st.Put(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	io := stdio{in: strings.NewReader(""), out: &out, err: &errb, environ: []string{"INFERGATE_BROKER_DURABILITY=memory"}}
	if code := dispatch(context.Background(), []string{"dlq", "replay", rec.ID, "--data-dir", dataDir}, io); code == exitOK ||
		!strings.Contains(errb.String(), "keeps its topics in memory") || !strings.Contains(errb.String(), "start infergate") {
		t.Fatalf("replay with a memory broker: exit %d\n%s%s", code, out.String(), errb.String())
	}
	st, err = store.Open(store.DefaultConfig(appliance.DataPaths(dataDir).Store), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.Get(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Replays != 0 {
		t.Errorf("record marked replayed %d times after a refused replay", got.Replays)
	}
}
