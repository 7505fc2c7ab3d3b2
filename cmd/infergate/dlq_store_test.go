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
