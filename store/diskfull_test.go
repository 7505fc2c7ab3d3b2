//go:build linux

package store

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/internal/tmpfs"
)

// Issue 9 row 7: with the disk full under the data dir, Badger's mmapped value log and WAL
// SIGBUSed ("fatal error: fault") and the process died. Below store.min_free_bytes the store
// now refuses writes with ErrDiskFull, keeps serving reads, lets deletes through, and accepts
// writes again by itself once space returns — also after the file system was filled to the
// last byte by someone else while the store was open.
func TestDiskFullRefusesWritesAndRecovers(t *testing.T) {
	dir := tmpfs.Mount(t, 64<<20)
	cfg := DefaultConfig(dir)
	cfg.MinFreeBytes = 16 << 20
	s, err := Open(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	before := rec("decode", "m", s.cfg.Now())
	mustPut(t, s, before)

	filler := tmpfs.Fill(t, dir, 8<<20) // below the floor, above zero
	err = s.Put(ctx, rec("decode", "m", s.cfg.Now()))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Put with %d bytes free: %v, want ErrDiskFull", tmpfs.Free(t, dir), err)
	}
	if h := s.Health(); !h.DiskFull || h.FreeBytes >= cfg.MinFreeBytes {
		t.Fatalf("Health: %+v", h)
	}
	if err := s.Audit("test", "x"); !errors.Is(err, ErrDiskFull) {
		t.Errorf("Audit: %v, want ErrDiskFull", err)
	}
	if _, err := s.Get(before.ID); err != nil {
		t.Errorf("reads must go on: %v", err)
	}

	// Filled to the last byte by another writer: the store is quiescent, nothing faults,
	// writes are refused.
	full := tmpfs.Fill(t, dir, 0)
	for range 20 {
		if err := s.Put(ctx, rec("decode", "m", s.cfg.Now())); !errors.Is(err, ErrDiskFull) {
			t.Fatalf("Put on a full file system: %v, want ErrDiskFull", err)
		}
	}
	os.Remove(full)
	os.Remove(filler)

	// Space is back: writes resume without a reopen.
	after := rec("decode", "m", s.cfg.Now())
	if err := s.Put(ctx, after); err != nil {
		t.Fatalf("Put after space returned: %v", err)
	}
	if h := s.Health(); h.DiskFull {
		t.Fatalf("still disk full: %+v", h)
	}
	if _, err := s.Get(after.ID); err != nil {
		t.Fatal(err)
	}
}
