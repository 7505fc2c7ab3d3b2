package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// Issue 9 row 10: 64 flipped bytes in a store .sst made records silently unreadable
// ("dlq list" failed "not found") with no warning. With checksums verified, Open finds the
// damaged table, Health names it and the time range of dead letters it held, and reads of
// the damaged records fail with ErrCorrupt instead of returning garbage or nothing.
func TestCorruptTableIsReported(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig(dir)
	s, err := Open(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	rng := rand.New(rand.NewPCG(1, 2))
	var all []*Record
	for i := range 3000 {
		r := rec("decode", "m", base.Add(time.Duration(i)*time.Millisecond))
		v := make([]byte, 300)
		for j := range v {
			v[j] = byte('a' + rng.IntN(26)) // little to compress, so the table has many blocks
		}
		r.Value = v
		all = append(all, r)
	}
	for i := 0; i < len(all); i += 500 {
		mustPut(t, s, all[i:i+500]...)
	}
	if h := s.Health(); len(h.Corrupt) != 0 {
		t.Fatalf("fresh store reports corruption: %+v", h.Corrupt)
	}
	if err := s.Close(); err != nil { // flushes the memtable into a table
		t.Fatal(err)
	}
	sst := largestTable(t, dir)
	flipBytes(t, sst, 64)

	s, err = Open(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatalf("Open with a damaged table must still open (the other data is good): %v", err)
	}
	defer s.Close()
	var h Health
	testutil.Eventually(t, 30*time.Second, func() error {
		if h = s.Health(); len(h.Corrupt) == 0 || h.LostRecords == 0 {
			return fmt.Errorf("no corruption or no lost records reported after Open: %+v", h)
		}
		return nil
	})
	if len(h.Corrupt) != 1 || h.Corrupt[0].Table != filepath.Base(sst) {
		t.Fatalf("Health after opening with %s damaged: %+v", filepath.Base(sst), h.Corrupt)
	}
	c := h.Corrupt[0]
	if !strings.Contains(c.String(), filepath.Base(sst)) || !strings.Contains(c.String(), "lost") {
		t.Errorf("message does not say what was lost: %s", c)
	}
	// Every record is either read back intact or reported as corrupt: nothing silently wrong.
	// and Health names exactly the ones that are not (the index survived: it is in other blocks).
	lost := map[string]bool{}
	for _, id := range h.LostIDs {
		lost[id] = true
	}
	bad := 0
	for _, r := range all {
		got, err := s.Get(r.ID)
		switch {
		case err == nil:
			if string(got.Value) != string(r.Value) {
				t.Fatalf("record %s read back different data without an error", r.ID)
			}
			if lost[r.ID] {
				t.Errorf("record %s reads fine but is reported lost", r.ID)
			}
		case errors.Is(err, ErrCorrupt):
			bad++
			if !lost[r.ID] {
				t.Errorf("record %s is unreadable but not reported lost", r.ID)
			}
		default:
			t.Fatalf("record %s: %v (want the record or ErrCorrupt)", r.ID, err)
		}
	}
	if bad == 0 || bad != h.LostRecords {
		t.Fatalf("%d records unreadable, %d reported lost", bad, h.LostRecords)
	}
	t.Logf("%d of %d records unreadable; %s", bad, len(all), c)
}

// largestTable is the biggest .sst in dir: the one the records are in.
func largestTable(t *testing.T, dir string) string {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	var best string
	var size int64
	for _, m := range ms {
		if fi, err := os.Stat(m); err == nil && fi.Size() > size {
			best, size = m, fi.Size()
		}
	}
	if best == "" {
		t.Fatalf("no .sst in %s", dir)
	}
	return best
}

// flipBytes inverts n bytes at a third of the file: inside a data block, not the index.
func flipBytes(t *testing.T, path string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := len(b) / 3
	for i := at; i < at+n && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
