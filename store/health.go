package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Sentinel errors of a store that cannot do its job.
var (
	// ErrDiskFull: the data dir's file system has less than MinFreeBytes free, so writes are
	// refused until space returns. Deletes still run: they are how space comes back.
	ErrDiskFull = errors.New("disk full")
	// ErrCorrupt: a table of the store failed its checksum; records in it are lost.
	ErrCorrupt = errors.New("store data corrupt")
)

// Why a free-space floor rather than a Badger option: Badger writes its write-ahead log, value
// log and new tables through shared mmaps of files it extends with ftruncate, without
// fallocate. On a full file system the first store to an unallocated page of such a file is a
// SIGBUS, which Go turns into "fatal error: fault" — no error return, no recovery, no Badger
// option to write through the file instead. So the store keeps a floor of free space and
// refuses writes below it: what Badger still writes after the last accepted write (that write's
// WAL entries, the flush of its memtable, the compactions that flush triggers) must fit into the
// floor. 64 MiB covers a memtable flush (8 MiB) and an L0 compaction (up to 5 memtables and the
// L1 tables they overlap) of a DLQ store of the size the defaults allow.

// Health is the store's own view of whether it can do its job.
type Health struct {
	// DiskFull: writes are refused because FreeBytes < MinFreeBytes.
	DiskFull     bool
	FreeBytes    int64 // -1 when not measured (in memory, or a platform without statfs)
	MinFreeBytes int64
	// Corrupt lists damaged tables found since Open (checksum failures), oldest first.
	Corrupt []Corruption
	// LostRecords counts dead-lettered records that the index lists but that cannot be read
	// back; LostIDs names the first maxLostIDs of them. Counted once after corruption is found.
	LostRecords int
	LostIDs     []string
}

// maxLostIDs bounds the IDs Health names; the count is exact.
const maxLostIDs = 1000

// Corruption is one damaged table. Records in its damaged blocks are lost; Health's
// LostRecords and LostIDs say which (as far as the index still lists them).
type Corruption struct {
	// Table is the file (e.g. 000003.sst); Err what the checksum check said.
	Table string
	Err   string
	// FirstKey and LastKey bound the keys the table held.
	FirstKey, LastKey string
	DetectedAt        time.Time
}

// String says what is damaged, for logs, the status page and the CLI.
func (c Corruption) String() string {
	s := fmt.Sprintf("table %s is corrupt (%s); dead letters in its damaged blocks are lost", c.Table, c.Err)
	if c.FirstKey != "" {
		s += fmt.Sprintf(" (the table holds keys %q to %q)", c.FirstKey, c.LastKey)
	}
	return s
}

// health is the mutable part of Health.
type health struct {
	mu       sync.Mutex
	diskFull bool
	free     int64
	corrupt  []Corruption
	seen     map[string]bool // tables already reported
	lost     int
	lostIDs  []string
	lostSet  map[string]bool
}

// Health reports free space (measured now) and corruption found so far.
func (s *Store) Health() Health {
	free := s.measureFree()
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return Health{DiskFull: s.h.diskFull, FreeBytes: free, MinFreeBytes: s.cfg.MinFreeBytes, Corrupt: append([]Corruption(nil), s.h.corrupt...),
		LostRecords: s.h.lost, LostIDs: append([]string(nil), s.h.lostIDs...)}
}

// CheckedHealth is Health once the table check that Open starts in the background has
// finished (or ctx ended): what a one-off reader such as the CLI should report.
func (s *Store) CheckedHealth(ctx context.Context) Health {
	select {
	case <-s.verified:
	case <-ctx.Done():
	}
	return s.Health()
}

// measureFree reads the free space of the data dir, updating the disk-full state; -1 when
// not measured.
func (s *Store) measureFree() int64 {
	if s.cfg.InMemory || s.cfg.MinFreeBytes <= 0 {
		return -1
	}
	free, ok := freeBytes(s.cfg.Dir)
	if !ok {
		return -1
	}
	full := free < s.cfg.MinFreeBytes
	s.h.mu.Lock()
	was := s.h.diskFull
	s.h.diskFull, s.h.free = full, free
	s.h.mu.Unlock()
	switch {
	case full && !was:
		s.log.Error("store: disk full: writes to the DLQ store are refused until space returns",
			"dir", s.cfg.Dir, "free_bytes", free, "min_free_bytes", s.cfg.MinFreeBytes, "setting", "min_free_bytes")
	case !full && was:
		s.log.Info("store: disk space is back; writes resume", "dir", s.cfg.Dir, "free_bytes", free)
	}
	return free
}

// checkSpace refuses a write when the data dir is below its free-space floor. Deletes
// (freeing) are let through down to half the floor: they write little, and they are how
// space comes back.
func (s *Store) checkSpace(freeing bool) error {
	free := s.measureFree()
	if free < 0 {
		return nil
	}
	floor := s.cfg.MinFreeBytes
	if freeing {
		floor /= 2
	}
	if free >= floor {
		return nil
	}
	return fmt.Errorf("store: %s has %d bytes free, below min_free_bytes (%d): writes are refused until space returns: %w",
		s.cfg.Dir, free, s.cfg.MinFreeBytes, ErrDiskFull)
}

// classify turns Badger errors that mean "disk full" or "corrupt table" into the store's
// sentinels, recording corruption, and returns err unchanged otherwise.
func (s *Store) classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC):
		s.measureFree()
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	case errors.Is(err, y.ErrChecksumMismatch) || strings.Contains(err.Error(), "checksum"):
		s.noteCorruption(err)
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// verify checks the checksums of every table once, in the background after Open, and
// records each damaged one. Badger's own DB.VerifyChecksum panics on a damaged block (it
// formats the nil block's offset into its error) and stops at the first table, so each table
// file is opened on its own, read-only, and checked under recover.
func (s *Store) verify() {
	defer close(s.verified)
	if s.cfg.InMemory {
		return
	}
	start := time.Now()
	files, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "*.sst"))
	bad := 0
	for _, f := range files {
		select {
		case <-s.done:
			return
		default:
		}
		if err := verifyTable(f); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // compacted away meanwhile
			}
			bad++
			s.noteCorruption(fmt.Errorf("%s: %w", filepath.Base(f), err))
		}
	}
	s.log.Debug("store: table checksums verified", "tables", len(files), "corrupt", bad, "took", time.Since(start))
	if bad > 0 {
		s.findLost()
	}
}

// findLost reads back every record the class index lists and records those that fail: the
// dead letters the damaged tables took with them (as far as the index still knows them).
func (s *Store) findLost() {
	if err := s.enter(); err != nil {
		return
	}
	defer s.life.RUnlock()
	var lost []string
	set := map[string]bool{}
	n := 0
	stopped := false
	_ = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte("i/c/")
		it := txn.NewIterator(opts)
		defer it.Close()
		seen := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if seen++; seen%1000 == 0 && s.isClosing() {
				stopped = true
				return nil
			}
			k := it.Item().Key()
			if len(k) < idLen {
				continue
			}
			id := string(k[len(k)-idLen:])
			if _, err := getRecord(txn, id); err != nil {
				n++
				set[id] = true
				if len(lost) < maxLostIDs {
					lost = append(lost, id)
				}
			}
		}
		return nil
	})
	if stopped {
		return // closing: the count would be partial
	}
	s.h.mu.Lock()
	s.h.lost, s.h.lostIDs, s.h.lostSet = n, lost, set
	s.h.mu.Unlock()
	if n > 0 {
		s.log.Error("store: DATA CORRUPTION: dead-lettered records lost (indexed but unreadable)", "records", n, "first_ids", lost[:min(len(lost), 10)])
	}
}

// verifyTable reads every block of one table file and checks its checksum.
func verifyTable(path string) (err error) {
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return fmt.Errorf("opening: %w", err)
	}
	// Never Table.DecrRef: at zero references it deletes the file.
	defer mf.Close(-1)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("checksum verification failed: block unreadable (%v): %w", r, y.ErrChecksumMismatch)
		}
	}()
	t, err := table.OpenTable(mf, table.Options{ChkMode: options.NoVerification, BlockSize: blockSize, Compression: options.Snappy})
	if err != nil {
		return fmt.Errorf("index unreadable: %v: %w", err, y.ErrChecksumMismatch)
	}
	if err := t.VerifyChecksum(); err != nil {
		return fmt.Errorf("%v: %w", err, y.ErrChecksumMismatch)
	}
	return nil
}

// noteCorruption records the table named in a Badger checksum error, with the key range it
// held, and logs it at ERROR once per table.
func (s *Store) noteCorruption(err error) {
	msg := err.Error()
	c := Corruption{Table: tableName(msg), Err: msg, DetectedAt: time.Now()}
	if c.Table == "" {
		c.Table = "unknown table"
	}
	if id, ok := tableID(c.Table); ok {
		for _, ti := range s.db.Tables() {
			if ti.ID != id {
				continue
			}
			c.FirstKey, c.LastKey = string(keyOf(ti.Left)), string(keyOf(ti.Right))
		}
	}
	s.h.mu.Lock()
	if s.h.seen == nil {
		s.h.seen = map[string]bool{}
	}
	if s.h.seen[c.Table] {
		s.h.mu.Unlock()
		return
	}
	s.h.seen[c.Table] = true
	s.h.corrupt = append(s.h.corrupt, c)
	s.h.mu.Unlock()
	s.log.Error("store: DATA CORRUPTION: "+c.String(), "dir", s.cfg.Dir)
}

// isClosing reports whether Close has begun.
func (s *Store) isClosing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// lostErr is the error for reading a record that a damaged table took with it (Badger
// reports such a key as not found), nil for any other record.
func (s *Store) lostErr(id string) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if !s.h.lostSet[id] {
		return nil
	}
	tables := make([]string, 0, len(s.h.corrupt))
	for _, c := range s.h.corrupt {
		tables = append(tables, c.Table)
	}
	return fmt.Errorf("record %s was in a damaged table (%s) and is lost: %w", id, strings.Join(tables, ", "), ErrCorrupt)
}

// tableName finds "NNNNNN.sst" in a Badger error message.
func tableName(msg string) string {
	i := strings.Index(msg, ".sst")
	if i < 0 {
		return ""
	}
	j := i
	for j > 0 && msg[j-1] >= '0' && msg[j-1] <= '9' {
		j--
	}
	return msg[j : i+len(".sst")]
}

func tableID(name string) (uint64, bool) {
	id, err := strconv.ParseUint(strings.TrimSuffix(name, ".sst"), 10, 64)
	return id, err == nil
}

// keyOf strips the 8-byte version Badger appends to keys in tables.
func keyOf(k []byte) []byte {
	if len(k) > 8 {
		return k[:len(k)-8]
	}
	return k
}
